# -*- test-case-name: tests.test_grub_source -*-
"""
The TFTP side of GRUB clients: the configurations of L{pxed.grub.config},
the files they name and their beacon, as an L{IFileSource}.

Names served (GRUB sends them with a leading slash):

  - C{grub/grub.cfg}: the loader, the same for every machine;
  - C{_/grub/PLATFORM/MAC.cfg}: a machine's configuration, decided by the
    policy when it is asked for (so a reload or a 'once' flag applies at
    once); asking for it also tells the boot log which machine is behind
    the address, as an iPXE script URL does;
  - C{_/file/ID/NAME}: a local file a configuration named, by the same
    signed ID as over HTTP (L{pxed.http.files.FileCatalog}): nothing maps
    a client's path onto the disk;
  - C{_/booting/MAC[/ONCE]}: the beacon, read just before C{boot}.

One is made for each set of parts (L{pxed.runtime.build_parts}, with
their policy, catalog, store, hostnames and exports), so a reload
replaces it whole.
"""

from __future__ import annotations

import os
import posixpath
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote as url_quote

from twisted.internet.defer import Deferred, ensureDeferred, fail, succeed
from twisted.logger import Logger
from zope.interface import implementer

from pxed.config.boot import normal_mac
from pxed.dhcp.responder import http_base
from pxed.grub.config import (
    LOADER_NAME,
    PLATFORMS,
    GrubConfigError,
    GrubEnv,
    beacon_name,
    loader_config,
    no_boot_config,
    parse_machine_config_name,
)
from pxed.http.files import FileCatalog, export_url
from pxed.machine import Machine, architecture, is_mac
from pxed.net import route_source
from pxed.policy import BootRequest, IBootAction, IBootPolicy, RulePolicy, is_url
from pxed.policy.request import once_rule, once_token
from pxed.signing import Signer
from pxed.state import IBootLog
from pxed.store import IStateStore, MemoryStateStore
from pxed.templates import RenderError, ScriptEnv
from pxed.tftp.source import (
    AccessViolation,
    BytesReadable,
    FileNotFound,
    IFileSource,
    MappingSource,
    name_parts,
)

__all__ = ["GrubSource", "config_files"]

log = Logger()

_BEACON = b"# pxed: this boot has been recorded\n"

#: GRUB commands that load a file, and what the file is.
_LOADS: Mapping[str, str] = {"linux": "kernel", "initrd": "initrd", "chainloader": "chain"}


def config_files(text: str) -> dict[str, str]:
    """
    The files a generated configuration loads from pxed (C{/_/file/...}
    paths), with what each is (C{kernel}, C{initrd}, C{chain}): they show
    on the machine's timeline by that name when fetched.
    """
    files: dict[str, str] = {}
    for line in text.splitlines():
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue
        if words[:1] == ["if"]:
            words = words[1:]
        kind = _LOADS.get(words[0]) if words else None
        if kind is None:
            continue
        for word in words[1:]:
            word = word.removesuffix(";")
            if word.startswith("/_/file/"):
                files.setdefault(word, kind)
    return files


@implementer(IFileSource)
class GrubSource:
    """
    Serves GRUB clients.

    @param boot_log: where the configuration, the files and the beacon
        are recorded (pxed's L{pxed.observe.BootRecorder}).
    @param address: the address pxed advertises (C{server.address});
        C{None}: the local address the routing table uses to reach the
        client, which is the one it sent its request to on all but
        asymmetric networks.
    """

    def __init__(
        self,
        boot_log: IBootLog,
        http_port: int,
        address: str | None = None,
        *,
        policy: IBootPolicy | None = None,
        catalog: FileCatalog | None = None,
        store: IStateStore | None = None,
        hostnames: Mapping[str, str] | None = None,
        exports: Mapping[str, Path] | None = None,
    ) -> None:
        self.boot_log = boot_log
        #: Beacons from an address pxed does not know the MAC at.
        self.unverified_beacons = 0
        self.http_port = http_port
        self.address = address
        self.policy: IBootPolicy = policy if policy is not None else RulePolicy(())
        # Without a catalog, a key of its own: file IDs nobody else can make.
        self.catalog = catalog if catalog is not None else FileCatalog(Signer(os.urandom(32)))
        self.store: IStateStore = store if store is not None else MemoryStateStore()
        self.hostnames = dict(hostnames or {})
        self.exports = dict(exports or {})

    def open(self, filename: str, peer: tuple[str, int]) -> Deferred[Any]:
        try:
            parts = name_parts(filename)
        except AccessViolation:
            return fail(FileNotFound(filename))  # other sources refuse it in their words
        name = "/".join(parts)
        if name == LOADER_NAME:
            return succeed(BytesReadable(loader_config().encode()))
        if parts[0] != "_" or len(parts) < 3:
            return fail(FileNotFound(filename))
        if parts[1] == "grub":
            return ensureDeferred(self._config(name, peer))
        if parts[1] == "file" and len(parts) == 4:
            return self._file(parts[2], parts[3], peer)
        if parts[1] == "booting" and len(parts) <= 4:
            return succeed(self._beacon(parts[2], parts[3] if len(parts) == 4 else None, peer))
        return fail(FileNotFound(filename))

    # -- a machine's configuration --------------------------------------------

    def _server(self, peer: str) -> str:
        return self.address or route_source(peer) or "127.0.0.1"

    async def _config(self, name: str, peer: tuple[str, int]) -> BytesReadable:
        parsed = parse_machine_config_name(name)
        if parsed is None:
            raise FileNotFound(name)
        platform, mac = parsed
        machine = Machine(mac=mac, arch=architecture(PLATFORMS[platform]))
        server = self._server(peer[0])
        request = BootRequest(machine, "grub", client_address=peer[0], local_address=server)
        action = await self.policy.boot_spec(request)
        if action is None:
            log.info("{mac}: asked for a GRUB configuration but has no boot entry", mac=mac,
                     peer=peer[0])
            return BytesReadable(no_boot_config("no boot entry for this machine", mac).encode())
        # GRUB fetches this by TFTP with the MAC in its name, and anyone can
        # ask for anyone's: only the address pxed knows that MAC at (its
        # port-4011 request, the neighbour table) gets the 'once' token,
        # and teaches pxed where the machine is.
        vouched = self._vouched(mac, peer[0])
        text, error = self._render(action, request, server, vouched)
        fields: dict[str, Any] = {"peer": peer[0]} if vouched else {"unverified_peer": peer[0]}
        if error is not None:
            log.error("{mac}: cannot write the GRUB configuration of rule {rule}: {why}",
                      mac=mac, rule=action.rule, why=error)
            fields["error"] = error
        else:
            log.info("{mac}: served GRUB configuration ({action} from {rule})", mac=mac,
                     action=type(action).__name__, rule=action.rule or "the policy",
                     stage="script", arch=machine.arch.slug, peer=peer[0])
        # Stage "script", as an iPXE script: the boot log learns the
        # address, and the files it names become the kernel and initrds.
        self.boot_log.record(mac, "script", arch=machine.arch.slug,
                             action=type(action).__name__, loader="grub",
                             files=config_files(text), **fields)
        return BytesReadable(text.encode("utf-8"))

    def _vouched(self, mac: str, address: str) -> bool:
        """
        Whether pxed knows C{mac} at C{address} (without a table of
        addresses, as for a plain boot log, it cannot tell, and trusts).
        """
        peers = getattr(self.boot_log, "peers", None)
        return peers is None or peers.mac(address) == mac

    def _render(self, action: IBootAction, request: BootRequest,
                server: str, vouched: bool = True) -> tuple[str, str | None]:
        mac = request.mac
        catalog = self.catalog
        base = http_base(server, self.http_port)
        once = None
        if action.once and vouched:
            once = once_token(catalog.signer, mac, action.once)
        http_beacon = f"{base}/_/booting?mac={url_quote(mac)}"

        def export(name: str, path: str) -> str:
            if name not in self.exports:
                raise RenderError(f"export(): no export named {name!r}")
            return export_url(base, name, path)

        def file_path(location: str) -> str:
            if is_url(location):
                raise GrubConfigError(f"{location} is a URL, and GRUB loads files by TFTP: "
                                      "name a local file for GRUB clients")
            if action.remote_only or not location.startswith("/"):
                raise GrubConfigError(f"{location!r} is not a file pxed may serve")
            token = catalog.token(location)
            return f"/_/file/{token}/{posixpath.basename(location)}"

        script = ScriptEnv(
            request=request, server=server, base_url=base, beacon_url=http_beacon,
            file_url=lambda location: catalog.url(base, location), export_url=export,
            hostname=self.hostnames.get(mac, ""), allow_local=not action.remote_only)
        env = GrubEnv(script, file_path, beacon_name(mac, once))
        try:
            render = getattr(action, "grub_config", None)
            if render is None:
                return no_boot_config(f"rule {action.rule} has no GRUB form", mac), (
                    f"{type(action).__name__} has no GRUB form")
            return str(render(env)), None
        except (RenderError, GrubConfigError) as e:
            return no_boot_config(f"cannot write the boot configuration: {e}", mac), str(e)

    # -- files and the beacon --------------------------------------------------

    def _file(self, token: str, name: str, peer: tuple[str, int]) -> Deferred[Any]:
        location = self.catalog.resolve(token, name)
        if location is None or is_url(location):
            log.debug("{peer}: refused TFTP file ID {token}", peer=peer[0], token=token)
            return fail(FileNotFound(name))
        return MappingSource({name: location}).open(name, peer)

    def _beacon(self, raw_mac: str, token: str | None, peer: tuple[str, int]) -> BytesReadable:
        """
        Always served (a beacon never stops a boot); recorded for a MAC.
        """
        mac = normal_mac(raw_mac)
        if not is_mac(mac):
            log.debug("{peer}: beacon for {mac!r}, which is not a MAC address", peer=peer[0],
                      mac=raw_mac)
            return BytesReadable(_BEACON)
        if not self._vouched(mac, peer[0]):
            # Anyone can read anyone's beacon by TFTP: a boot only from the
            # address pxed knows that machine at; otherwise counted only.
            self.unverified_beacons += 1
            log.debug("{peer}: beacon for {mac}, which pxed does not know at that address: "
                      "not recorded as a boot", peer=peer[0], mac=mac)
            return BytesReadable(_BEACON)
        self.boot_log.record(mac, "booting", peer=peer[0])
        log.info("{mac}: booting", mac=mac, stage="booting", peer=peer[0])
        if token:
            self._once(mac, token)
        return BytesReadable(_BEACON)

    def _once(self, mac: str, token: str) -> None:
        rule, problem = once_rule(self.catalog.signer, mac, token)
        if rule is None:
            log.warn("{mac}: ignoring a beacon with {problem}", mac=mac, problem=problem)
            return
        d = self.store.mark_once(mac, rule)
        d.addCallback(lambda _: log.info("{mac}: booted once-rule {rule}; its next boot falls "
                                         "through", mac=mac, rule=rule))
        d.addErrback(lambda f: log.failure("{mac}: cannot record once-rule {rule}", f,
                                           mac=mac, rule=rule))

