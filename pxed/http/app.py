# -*- test-case-name: tests.test_http -*-
"""
pxed's HTTP server (Klein): iPXE scripts, the files they name, exported
directories, boot programs for HTTP Boot, the "booting" beacon, and an
optional admin endpoint.

Only what the policy names (through IDs that pxed signs) or what the
configuration exports is reachable: see L{pxed.http.files}.  Scripts are
rendered here because only here is the client's view of pxed (its base
URL) known.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from klein import Klein
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource

from pxed import ipxe
from pxed.clienttext import client_uuid
from pxed.config.boot import normal_mac
from pxed.dhcp.logbudget import LogBudget
from pxed.dhcp.responder import http_base
from pxed.grub.image import GrubImageCache
from pxed.http import admin
from pxed.http.files import ExportRefused, FileCatalog, LocalFile, export_path, export_url
from pxed.http.proxy import RemoteFetcher
from pxed.http.query import TextPaths, arg, bad_request, not_found, peer, query_mac
from pxed.machine import Machine, architecture
from pxed.parts import BootParts, LiveParts, part
from pxed.policy import BootRequest, IBootPolicy, is_url
from pxed.policy.request import IPXE_USER_CLASS, once_rule, once_token, open_context
from pxed.reactors import given_or_global
from pxed.state import IBootLog
from pxed.store import IStateStore, MemoryStateStore, StateUnavailable
from pxed.templates import RenderError, ScriptEnv
from pxed.timeline import SCRIPT_ERROR, script_files

__all__ = ["BootHTTP", "FileCatalog"]

log = Logger()

#: The purpose signed into a beacon's 'once' token.
#: The purpose signed into a beacon's proof that its script came from a
#: DHCP answer of pxed's (a signed context): only such a beacon is a boot.
BOOT_PURPOSE = "booted"

class BootHTTP:
    """
    The Klein application.  C{resource()} gives the root resource to serve
    or to mount inside an embedding program's own site.

    Everything a reload may change (the policy, exports, hostnames, the
    catalog, the fetcher, ...) is read from C{parts.current} (see
    L{pxed.parts}) when a request comes in: a reload swaps them all at
    once, between two requests, and requests in flight keep the objects
    they started with.  Built without C{parts}, it makes a fixed set from
    the arguments (tests, and programs that mount it in a site of their
    own).

    @ivar reload: called by the admin endpoint; returns (success, message).
    """

    app = Klein()

    policy = part[IBootPolicy]()
    catalog = part[FileCatalog]()
    programs = part[Mapping[str, Path]]()
    store = part[IStateStore]()
    exports = part[Mapping[str, Path]]()
    hostnames = part[Mapping[str, str]]()
    fetcher = part[RemoteFetcher | None]()
    admin_token = part[str | None]()
    #: The GRUB images pxed builds (ARM64), served by their names too.
    images = part[GrubImageCache | None]()

    def __init__(
        self,
        policy: IBootPolicy | None = None,
        catalog: FileCatalog | None = None,
        boot_log: IBootLog | None = None,
        address: str | None = None,
        programs: Mapping[str, Path] | None = None,
        *,
        store: IStateStore | None = None,
        exports: Mapping[str, Path] | None = None,
        hostnames: Mapping[str, str] | None = None,
        fetcher: RemoteFetcher | None = None,
        admin_token: str | None = None,
        reload: Callable[[], tuple[bool, str]] | None = None,
        images: GrubImageCache | None = None,
        parts: LiveParts | None = None,
        clock: IReactorTime | None = None,
    ) -> None:
        given = (policy, catalog, programs, store, exports, hostnames, fetcher, admin_token,
                 images)
        if parts is None:
            if policy is None or catalog is None:
                raise TypeError("BootHTTP needs a policy and a catalog, or parts")
            parts = LiveParts(BootParts(
                policy=policy, catalog=catalog, programs=dict(programs or {}),
                store=store if store is not None else MemoryStateStore(),
                exports=dict(exports or {}), hostnames=dict(hostnames or {}),
                fetcher=fetcher, admin_token=admin_token, images=images,
            ))
        elif any(value is not None for value in given):
            raise TypeError("give BootHTTP either parts or the parts themselves, not both")
        if boot_log is None:
            raise TypeError("BootHTTP needs a boot log")
        self.parts = parts
        self.boot_log = boot_log
        self.address = address
        self.reload = reload
        #: Beacons that came without a valid boot token (see L{beacon}).
        self.unverified_beacons = 0
        clock = given_or_global(clock)
        # Missing files and bad requests are logged within a budget.
        self.budget = LogBudget(clock)

    def resource(self) -> IResource:
        return TextPaths(self.app.resource())

    def _base(self, request: IRequest) -> str:
        host = request.getHost()
        return http_base(self.address or host.host, host.port)

    # The request helpers (pxed.http.query), under the names the routes use.
    _arg = staticmethod(arg)
    _mac = staticmethod(query_mac)
    _bad_request = staticmethod(bad_request)
    _peer = staticmethod(peer)
    _not_found = staticmethod(not_found)

    # -- the iPXE script ------------------------------------------------------

    @app.route("/_/ipxe", methods=["GET"])
    def script(self, request: IRequest):  # type: ignore[no-untyped-def]
        """
        The per-machine iPXE script.  The ProxyDHCP offer to iPXE names this
        URL with the machine's MAC and architecture (and, signed, where on
        the network its DHCP request came from).
        """
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        mac = self._mac(request)
        if mac is None:
            return self._bad_request(request, "mac must be a MAC address like 52:54:00:12:34:56")
        try:
            code = int(self._arg(request, "arch") or "0")
        except ValueError:
            code = 0
        token = self._arg(request, "ctx")
        context = open_context(self.catalog.signer, token)
        if token and context is None:
            log.debug("{mac}: ignoring a script URL context not signed by this key", mac=mac)
        if context is not None and normal_mac(context.mac) != mac:
            # A genuine context copied onto another MAC: someone probing.
            log.info("{peer}: refused a script for {mac} with the context of {owner}",
                     peer=self._peer(request), mac=mac, owner=context.mac)
            return self._bad_request(request, "ctx was made for another machine")
        # The user class the DHCP request sent, so user_class rules decide
        # the same way for the script; iPXE's own without a context.
        user_class = context.user_class if context is not None else IPXE_USER_CLASS
        machine = Machine(mac=mac, arch=architecture(code),
                          uuid=client_uuid(self._arg(request, "uuid")),
                          ipxe=True, user_class=user_class)
        network = context.network() if context is not None else {}
        boot_request = BootRequest(machine, "script", client_address=self._peer(request),
                                   **network)
        return ensureDeferred(self._script(request, boot_request, signed=context is not None))

    def _beacon_url(self, base: str, mac: str, once: str | None, signed: bool) -> str:
        """
        The beacon a script fetches.  Only a script whose URL pxed signed in
        a DHCP answer gets the tokens that make its beacon a boot (and end
        a 'once' rule): one fetched by hand (or chained to from another
        iPXE) boots the same, but its beacon is only counted.
        """
        beacon = f"{base}/_/booting?mac={quote(mac)}"
        if not signed:
            return beacon
        signer = self.catalog.signer
        beacon += f"&boot={signer.sign(BOOT_PURPOSE, mac)}"
        if once:
            beacon += f"&once={once_token(signer, mac, once)}"
        return beacon

    async def _script(self, request: IRequest, boot: BootRequest, signed: bool = True) -> bytes:
        mac = boot.mac
        parts = self.parts.current  # one set for the whole script
        action = await parts.policy.boot_spec(boot)
        if action is None:
            log.info("{mac}: asked for a script but has no boot entry", mac=mac)
            return ipxe.no_boot_script("no boot entry for this machine").encode()
        base = self._base(request)
        catalog = parts.catalog
        beacon = self._beacon_url(base, mac, action.once, signed)
        if action.once and not signed:
            self.budget.info(log, "{mac}: script fetched without a signed context: this boot "
                              "cannot end 'once' rule {rule}", mac=mac, rule=action.rule)
        env = ScriptEnv(
            request=boot,
            server=self.address or request.getHost().host,
            base_url=base,
            beacon_url=beacon,
            file_url=lambda location: catalog.url(base, location),
            export_url=lambda name, path: self._export_url(base, name, path),
            hostname=parts.hostnames.get(mac, ""),
            allow_local=not action.remote_only,
            local_files=action.local_files,
        )
        try:
            text = action.ipxe_script(env)
        except RenderError as e:
            # On the timeline (and counted there); one info line within
            # the budget, since a machine may ask again and again.
            self.boot_log.record(mac, SCRIPT_ERROR, rule=action.rule, error=str(e),
                                 peer=boot.client_address)
            self.budget.info(log, "{mac}: cannot render the script of rule {rule}: {why}",
                             mac=mac, rule=action.rule, why=str(e), stage=SCRIPT_ERROR)
            return ipxe.no_boot_script(f"cannot render the boot script: {e}").encode()
        # The files the script loads, so their downloads show as the
        # kernel and initrds on the machine's timeline.  Unsigned fetches
        # only for machines pxed has seen: anyone can name any MAC, and new
        # ones would push real machines out of the history.
        if signed or self.boot_log.last(mac) is not None:
            self.boot_log.record(mac, "script", arch=boot.arch.slug, peer=boot.client_address,
                                 action=type(action).__name__, files=script_files(text, base),
                                 signed=signed)
        log.info("{mac}: served iPXE script ({action} from {rule})", mac=mac,
                 action=type(action).__name__, rule=action.rule or "the policy",
                 stage="script", arch=boot.arch.slug, peer=boot.client_address)
        return text.encode("utf-8")

    def _export_url(self, base: str, name: str, path: str) -> str:
        if name not in self.exports:
            raise RenderError(f"export(): no export named {name!r}")
        return export_url(base, name, path)

    # -- files ----------------------------------------------------------------

    @app.route("/_/file/<string:token>/<string:name>", methods=["GET", "HEAD"])
    def file(self, request: IRequest, token: str, name: str):  # type: ignore[no-untyped-def]
        """
        A file the policy named, by the signed ID its script carried.
        """
        location = self.catalog.resolve(token, name)
        if location is None:
            log.debug("{peer}: refused file ID {token}", peer=self._peer(request), token=token)
            return self._not_found(request)
        if is_url(location):
            fetcher = self.fetcher
            if fetcher is None:
                return self._not_found(request)
            log.info("{peer}: proxying {url}", peer=self._peer(request), url=location)
            return fetcher.resource(location)
        # Its info line comes when it is served (pxed.observe), with the size.
        log.debug("{peer}: serving {path}", peer=self._peer(request), path=location)
        return LocalFile(location)

    @app.route("/_/export/", branch=True, methods=["GET", "HEAD"])
    def export(self, request: IRequest):  # type: ignore[no-untyped-def]
        """
        A file below an exported directory.
        """
        marker = b"/_/export/"
        raw = request.path[request.path.index(marker) + len(marker):]
        try:
            path = export_path(self.exports, raw)
        except ExportRefused as e:
            log.info("{peer}: refused export path {path!r}: {why}", peer=self._peer(request),
                     path=raw, why=str(e))
            return self._not_found(request)
        log.debug("{peer}: serving {path}", peer=self._peer(request), path=str(path))
        return LocalFile(path)

    @app.route("/_/boot/<string:name>", methods=["GET", "HEAD"])
    def program(self, request: IRequest, name: str):  # type: ignore[no-untyped-def]
        """
        A network bootstrap program for UEFI HTTP Boot clients, by the file
        name the ProxyDHCP offer gave them.  EDK2 decides what it fetched
        from the Content-Type, so EFI binaries say application/efi.
        """
        path = self.programs.get(name)
        if path is None:
            images = self.images
            address = images.address_of(name) if images is not None else None
            if images is None or address is None or not images.servable(address):
                request.setResponseCode(404)
                return b"not found\n"
            d = images.image(address)
            d.addCallback(lambda built: self._program(request, name, built))
            d.addErrback(self._unbuilt, request)
            return d
        return self._program(request, name, path)

    @staticmethod
    def _unbuilt(failure: Any, request: IRequest) -> bytes:
        log.error("cannot serve a built boot program: {error}", error=failure.getErrorMessage())
        request.setResponseCode(503)
        request.setHeader(b"Content-Type", b"text/plain")
        return b"boot program unavailable\n"

    def _program(self, request: IRequest, name: str, path: Path) -> Any:
        peer = request.getClientAddress()
        # Debug only: the boot recorder logs the one line of this stage
        # when the download ends (with the MAC and the bytes).
        log.debug("{peer}: serving boot program {path}", peer=getattr(peer, "host", peer),
                  path=str(path))
        kind = "application/efi" if name.lower().endswith(".efi") else "application/octet-stream"
        return LocalFile(path, kind)

    @app.route("/_/booting", methods=["GET", "HEAD"])
    def beacon(self, request: IRequest) -> bytes | Deferred[bytes]:
        """
        The script fetches this just before C{boot}: the last moment pxed can
        see, so "booting" means "the kernel and initrds were all loaded".
        A 'once' rule's token makes this boot its last from that rule: the
        answer waits until the store has recorded it (a 503 if it cannot).
        """
        request.setHeader(b"Content-Type", b"text/plain")
        if not self._arg(request, "mac"):
            return b"ok\n"
        mac = self._mac(request)
        if mac is None:
            return self._bad_request(request, "mac must be a MAC address like 52:54:00:12:34:56")
        token = self._arg(request, "boot")
        if not token or self.catalog.signer.verify(BOOT_PURPOSE, token) != mac:
            # A script fetched without a signed context, or a forgery: the
            # boot goes on (a beacon never stops one), but it is counted
            # only (pxed_http_requests_total{kind="beacon-unverified"}).
            request.pxed_kind = "beacon-unverified"  # type: ignore[attr-defined]
            self.unverified_beacons += 1
            self.budget.info(log, "{mac}: beacon without a valid boot token from {peer}: "
                              "counted, not recorded as a boot", mac=mac,
                              peer=self._peer(request))
            return b"ok\n"
        self.boot_log.record(mac, "booting", peer=self._peer(request))
        log.info("{mac}: booting", mac=mac, stage="booting", peer=self._peer(request))
        rule = self._once_rule(mac, self._arg(request, "once"))
        if rule is None:
            return b"ok\n"
        d = self.store.mark_once(mac, rule)

        def recorded(_: object) -> bytes:
            log.info("{mac}: booted once-rule {rule}; its next boot falls through", mac=mac,
                     rule=rule)
            return b"ok\n"

        def failed(failure: Failure) -> bytes:
            if failure.check(StateUnavailable):
                log.warn("{mac}: cannot record once-rule {rule} now ({why}); retrying until "
                         "the state store answers", mac=mac, rule=rule,
                         why=failure.getErrorMessage())
            else:
                log.failure("{mac}: cannot record once-rule {rule}", failure, mac=mac,
                            rule=rule)
            request.setResponseCode(503)
            return b"once flag not recorded\n"

        return d.addCallbacks(recorded, failed)

    def _once_rule(self, mac: str, token: str | None) -> str | None:
        """
        The 'once' rule a beacon's token names for C{mac}, if it is genuine.
        """
        if not token:
            return None
        rule, problem = once_rule(self.catalog.signer, mac, token)
        if problem is not None:
            self.budget.info(log, "{mac}: ignoring a beacon with {problem}", mac=mac,
                             problem=problem)
        return rule

    # -- administration (pxed.http.admin) -------------------------------------

    @app.route("/_/admin/reload", methods=["POST"])
    def admin_reload(self, request: IRequest) -> bytes:
        return admin.reload(self, request)

    @app.route("/_/machines/<string:mac>/reinstall", methods=["POST"])
    def admin_reinstall(self, request: IRequest, mac: str):  # type: ignore[no-untyped-def]
        return admin.reinstall(self, request, mac)
