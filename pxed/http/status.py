# -*- test-case-name: tests.test_status -*-
"""
What an operator looks at: the live status page, the JSON API behind it
(C{/_/machines}, C{/_/machines/<mac>}) and C{/metrics}.

Read-only views of the boot log (L{pxed.state.IBootLog}, summed up by
L{pxed.timeline}) and of the metrics; nothing here changes state.  The
page's HTML, CSS and JavaScript are files of this package (no CDN: a boot
network is often cut off from the Internet) and it polls the JSON API,
which answers "304 Not Modified" while the boot log has not changed, so a
page left open on a phone costs next to nothing.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import unquote_to_bytes

from twisted.internet.interfaces import IReactorTime
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource

from pxed import timeline
from pxed.http.leases import LEASES_PATH, LeasesResource
from pxed.http.readonly import ReadOnlyLeaf
from pxed.leasestore import ILeaseStore
from pxed.metrics import CONTENT_TYPE, Metrics
from pxed.state import BootEvent, IBootLog

__all__ = ["StatusPages", "Mount", "API_PATH", "METRICS_PATH"]

API_PATH = "/_/machines"
METRICS_PATH = "/metrics"

#: Seconds after which the JSON API answers in full even when no event
#: was recorded.
STATUS_REFRESH = 15

_ASSET_TYPES = {
    "html": b"text/html; charset=utf-8",
    "css": b"text/css; charset=utf-8",
    "js": b"text/javascript; charset=utf-8",
    "svg": b"image/svg+xml",
}

#: The API's location, put into the page so it works below any path.
_API_PLACEHOLDER = "@API@"


@dataclass(frozen=True)
class _Asset:
    body: bytes
    content_type: bytes
    etag: bytes


def _asset(body: bytes, name: str) -> _Asset:
    kind = _ASSET_TYPES.get(name.rsplit(".", 1)[-1], b"application/octet-stream")
    return _Asset(body, kind, b'"' + hashlib.sha256(body).hexdigest()[:16].encode() + b'"')


def load_assets(api_path: str = API_PATH) -> dict[str, _Asset]:
    """
    The status page's files, from the package (read once, at start-up).
    """
    assets = {}
    folder = resources.files("pxed.http") / "static"
    for entry in folder.iterdir():
        name = entry.name
        if name.startswith(".") or name.rsplit(".", 1)[-1] not in _ASSET_TYPES:
            continue
        body = entry.read_bytes()
        if name == "index.html":
            body = body.replace(_API_PLACEHOLDER.encode(),
                                html.escape(api_path, quote=True).encode())
        assets[name] = _asset(body, name)
    return assets


def _mac_from_path(raw: bytes) -> str | None:
    try:
        text = unquote_to_bytes(raw).decode("ascii").lower().replace("-", ":")
    except UnicodeDecodeError:
        return None
    parts = text.split(":")
    if len(parts) != 6 or not all(len(p) == 2 and all(c in "0123456789abcdef" for c in p)
                                  for p in parts):
        return None
    return text


#: The tokens that let their holder act as the machine (a script URL's
#: signed context, a beacon's boot and 'once' tokens): never published.
_AUTHORITY = re.compile(r"\b(ctx|boot|once)=[^&\s\"']+")
#: A signed file ID in a URL path.
_FILE_ID = re.compile(r"/_/file/[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+/")


def redact(value: Any, file_urls: bool = True) -> Any:
    """
    C{value} (an event's fields) without the tokens in it that would let a
    reader of the API act as a machine, and without signed file IDs
    unless C{file_urls}.
    """
    if isinstance(value, str):
        value = _AUTHORITY.sub(r"\1=-", value)
        return value if file_urls else _FILE_ID.sub("/_/file/-/", value)
    if isinstance(value, dict):
        return {redact(k, file_urls): redact(v, file_urls) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v, file_urls) for v in value]
    return value


def event_json(event: BootEvent, file_urls: bool = True) -> dict[str, Any]:
    return {"stage": event.stage, "label": timeline.label(event), "when": event.when,
            "fields": redact(event.fields, file_urls)}


def view_json(view: timeline.BootView) -> dict[str, Any]:
    return {
        "mac": view.mac,
        "status": view.status,
        "stage": view.stage,
        "label": view.label,
        "progress": view.progress,
        "started": view.started,
        "last_seen": view.last_seen,
        "arch": view.arch,
        "address": view.address,
        "loops": view.loops,
        "files": {"expected": view.files_expected, "served": view.files_served},
    }


class StatusPages:
    """
    The status page, the JSON API and C{/metrics}, each optional.

    @param page: the page's path (C{None}: no page).
    @param api: serve C{/_/machines}.
    @param file_urls: show the signed file URLs in events (whoever reads
        the API can then fetch those files); tokens that act as a machine
        (script contexts, beacon tokens) are never shown.
    @param metrics: serve C{/metrics} from these metrics (C{None}: not).
    @param leases: serve C{/_/leases} from this store (with C{api}).
    """

    def __init__(
        self,
        boot_log: IBootLog,
        clock: IReactorTime,
        *,
        page: str | None = "/_/status",
        api: bool = True,
        metrics: Metrics | None = None,
        leases: ILeaseStore | None = None,
        file_urls: bool = True,
    ) -> None:
        self.boot_log = boot_log
        self.leases = leases
        self.clock = clock
        self.page = page.rstrip("/") if page else None
        self.api = api
        self.file_urls = file_urls
        self.metrics = metrics
        self.assets = load_assets() if self.page else {}

    def routes(self) -> dict[str, IResource]:
        """
        Path prefix to resource, for L{Mount}.
        """
        routes: dict[str, IResource] = {}
        if self.page:
            routes[self.page] = _Leaf(self.render_page)
        if self.api:
            routes[API_PATH] = _Leaf(self.render_api)
        if self.metrics is not None:
            routes[METRICS_PATH] = _Leaf(self.render_metrics)
        if self.api and self.leases is not None:
            routes[LEASES_PATH] = LeasesResource(self.leases, self.clock)
        return routes

    def mount(self, inner: IResource) -> IResource:
        """
        C{inner} (pxed's boot routes) with these pages in front of it.
        """
        return Mount(inner, self.routes())

    # -- the page -------------------------------------------------------------

    def render_page(self, request: IRequest) -> bytes:
        assert self.page is not None
        rest = request.path[len(self.page):]
        if rest == b"":
            # Relative asset URLs need the trailing slash.
            request.setResponseCode(301)
            request.setHeader(b"Location", self.page.encode() + b"/")
            return b""
        name = rest.lstrip(b"/").decode("ascii", "replace") or "index.html"
        asset = self.assets.get(name)
        if asset is None or name.startswith("."):
            return _not_found(request)
        request.setHeader(b"Content-Type", asset.content_type)
        request.setHeader(b"ETag", asset.etag)
        request.setHeader(b"Cache-Control", b"no-cache")
        request.setHeader(b"X-Content-Type-Options", b"nosniff")
        if name == "index.html":
            request.setHeader(b"Content-Security-Policy",
                              b"default-src 'self'; connect-src 'self'; img-src 'self' data:")
        if request.setETag(asset.etag) is not None:  # the client has it already
            return b""
        return asset.body

    # -- the JSON API ---------------------------------------------------------

    def render_api(self, request: IRequest) -> bytes:
        rest = request.path[len(API_PATH):]
        request.setHeader(b"Cache-Control", b"no-cache")
        # A machine's status also changes with time alone (it stalls), so
        # the tag moves on every STATUS_REFRESH seconds even when nothing
        # was recorded.
        etag = b'"%d-%d"' % (self.boot_log.version(),
                             int(self.clock.seconds() // STATUS_REFRESH))
        if rest in (b"", b"/"):
            if request.setETag(etag) is not None:
                return b""
            return self._json(request, self.machines())
        mac = _mac_from_path(rest.lstrip(b"/"))
        detail = self.machine(mac) if mac is not None else None
        if detail is None:
            request.setResponseCode(404)
            return self._json(request, {"error": "no such machine"})
        if request.setETag(etag) is not None:
            return b""
        return self._json(request, detail)

    @staticmethod
    def _json(request: IRequest, body: Mapping[str, Any]) -> bytes:
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps(body, separators=(",", ":")).encode() + b"\n"

    def machines(self) -> dict[str, Any]:
        """
        Every machine's latest boot, the most recently active first.
        """
        now = self.clock.seconds()
        views = []
        for mac in reversed(self.boot_log.machines()):
            found = timeline.view(mac, self.boot_log.events(mac), now)
            if found is not None:
                views.append(view_json(found))
        return {"now": now, "version": self.boot_log.version(), "machines": views}

    def machine(self, mac: str) -> dict[str, Any] | None:
        """
        One machine's latest boot with its timeline, and all its events
        kept (earlier boots too).
        """
        events = self.boot_log.events(mac)
        now = self.clock.seconds()
        found = timeline.view(mac, events, now)
        if found is None:
            return None
        body = view_json(found)
        body["now"] = now
        body["timeline"] = [event_json(e, self.file_urls) for e in found.events]
        body["events"] = [event_json(e, self.file_urls) for e in events]
        return body

    # -- /metrics -------------------------------------------------------------

    def render_metrics(self, request: IRequest) -> bytes:
        assert self.metrics is not None
        if request.path != METRICS_PATH.encode():
            return _not_found(request)
        request.setHeader(b"Content-Type", CONTENT_TYPE.encode())
        return self.metrics.exposition()


def _not_found(request: IRequest) -> bytes:
    request.setResponseCode(404)
    request.setHeader(b"Content-Type", b"text/plain")
    return b"not found\n"


class _Leaf(ReadOnlyLeaf):
    """
    A read-only view rendered by a function.
    """

    def __init__(self, render: Any) -> None:
        super().__init__()
        self._render = render

    def render_read(self, request: IRequest) -> bytes:
        return bytes(self._render(request))


#: Admin actions on a machine live below its API path but are pxed's
#: routes (the views here are read-only).
_ADMIN_ACTION = re.compile(rb"^/_/machines/[^/]+/reinstall$")


class Mount(Resource):
    """
    Hands a request to the resource mounted on its path (the path itself
    or below it), and everything else to C{inner}.
    """

    isLeaf = True

    def __init__(self, inner: IResource, routes: Mapping[str, IResource]) -> None:
        super().__init__()
        self.inner = inner
        # Longest first, so a path mounted below another wins.
        self.routes = sorted(((p.encode(), r) for p, r in routes.items()),
                             key=lambda item: -len(item[0]))

    def render(self, request: IRequest) -> Any:  # type: ignore[override]
        path = request.path
        if request.method == b"POST" and _ADMIN_ACTION.match(path):
            return self.inner.render(request)
        for prefix, resource in self.routes:
            if path == prefix or path.startswith(prefix + b"/"):
                return resource.render(request)
        return self.inner.render(request)
