# -*- test-case-name: tests.test_http -*-
"""
pxed's HTTP server (Klein): iPXE scripts, the files they name, and the
"booting" beacon.

Only files the policy names are reachable, through opaque IDs: there is no
path from a URL to the filesystem, so no traversal to guard against.
Files are served by C{twisted.web.static.File}, which streams them with
Content-Length and Range support (iPXE is very slow without the length).
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote

from klein import Klein
from twisted.internet.defer import ensureDeferred
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from twisted.web.static import File

from pxed import ipxe
from pxed.machine import Machine, architecture
from pxed.policy import IBootPolicy, is_url
from pxed.responder import http_base
from pxed.state import IBootLog

__all__ = ["BootHTTP", "FileCatalog"]

log = Logger()


class FileCatalog:
    """
    The local files the policy names, each under a stable opaque ID (a
    hash of its path, so URLs survive restarts and reloads).
    """

    def __init__(self, paths: Iterable[str] = ()) -> None:
        self._by_id: dict[str, Path] = {}
        for path in paths:
            self.add(path)

    @staticmethod
    def file_id(path: str) -> str:
        return hashlib.sha256(path.encode("utf-8")).hexdigest()[:20]

    def add(self, path: str) -> str:
        fid = self.file_id(path)
        self._by_id[fid] = Path(path)
        return fid

    def get(self, fid: str) -> Path | None:
        return self._by_id.get(fid)

    def url(self, base: str, location: str) -> str:
        """
        The URL a client fetches C{location} from: remote URLs as they are,
        local files through pxed.
        """
        if is_url(location):
            return location
        fid = self.add(location)
        return f"{base}/_/file/{fid}/{quote(posixpath.basename(location))}"


class BootHTTP:
    """
    The Klein application.  C{resource()} gives the root resource to serve
    or to mount inside an embedding program's own site.
    """

    app = Klein()

    def __init__(
        self,
        policy: IBootPolicy,
        catalog: FileCatalog,
        boot_log: IBootLog,
        address: str | None = None,
    ) -> None:
        self.policy = policy
        self.catalog = catalog
        self.boot_log = boot_log
        self.address = address

    def resource(self) -> IResource:
        return self.app.resource()

    def _base(self, request: IRequest) -> str:
        host = request.getHost()
        return http_base(self.address or host.host, host.port)

    @staticmethod
    def _arg(request: IRequest, name: str) -> str | None:
        values = request.args.get(name.encode()) if request.args else None
        if not values:
            return None
        return values[0].decode("utf-8", "replace")

    @app.route("/_/ipxe", methods=["GET"])
    def script(self, request: IRequest):  # type: ignore[no-untyped-def]
        """
        The per-machine iPXE script.  The ProxyDHCP offer to iPXE names this
        URL with the machine's MAC and architecture.
        """
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        mac = (self._arg(request, "mac") or "").lower()
        try:
            code = int(self._arg(request, "arch") or "0")
        except ValueError:
            code = 0
        machine = Machine(mac=mac, arch=architecture(code), uuid=self._arg(request, "uuid"),
                          ipxe=True)
        return ensureDeferred(self._script(request, machine))

    async def _script(self, request: IRequest, machine: Machine) -> bytes:
        spec = await self.policy.boot_spec(machine)
        if spec is None:
            log.info("{mac}: asked for a script but has no boot entry", mac=machine.mac)
            return ipxe.no_boot_script("no boot entry for this machine").encode()
        base = self._base(request)
        text = ipxe.linux_script(
            spec,
            file_url=lambda location: self.catalog.url(base, location),
            beacon_url=f"{base}/_/booting?mac={quote(machine.mac)}",
        )
        self.boot_log.record(machine.mac, "script", arch=machine.arch.slug)
        log.info("{mac}: served iPXE script", mac=machine.mac)
        return text.encode("utf-8")

    @app.route("/_/file/<string:fid>/<string:name>", methods=["GET", "HEAD"])
    def file(self, request: IRequest, fid: str, name: str):  # type: ignore[no-untyped-def]
        path = self.catalog.get(fid)
        if path is None or posixpath.basename(str(path)) != name:
            request.setResponseCode(404)
            return b"not found\n"
        peer = request.getClientAddress()
        log.info("{peer}: serving {path}", peer=getattr(peer, "host", peer), path=str(path))
        resource = File(str(path), defaultType="application/octet-stream")
        resource.isLeaf = True
        return resource

    @app.route("/_/booting", methods=["GET", "HEAD"])
    def beacon(self, request: IRequest) -> bytes:
        """
        The script fetches this just before C{boot}: the last moment pxed can
        see, so "booting" means "the kernel and initrds were all loaded".
        """
        mac = (self._arg(request, "mac") or "").lower()
        request.setHeader(b"Content-Type", b"text/plain")
        if mac:
            self.boot_log.record(mac, "booting")
            log.info("{mac}: booting", mac=mac)
        return b"ok\n"
