# -*- test-case-name: tests.test_status -*-
"""
Every HTTP request, counted and timed where it ends.

A wrapper around the site's root resource rather than code in each route:
a download is only over (and its size known) when the last byte left or
the client went away, which is what C{notifyFinish} tells, whichever route
served it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.resource import IResource, Resource

__all__ = ["MeteredResource", "IHTTPObserver", "request_kind"]

log = Logger()

#: (path prefix, kind): the kind of request a path is, first match wins.
_KINDS: Sequence[tuple[bytes, str]] = (
    (b"/_/ipxe", "script"),
    (b"/_/file/", "file"),
    (b"/_/boot/", "program"),
    (b"/_/export/", "export"),
    (b"/_/booting", "beacon"),
    (b"/_/admin/", "admin"),
    (b"/_/machines", "api"),
    (b"/metrics", "metrics"),
)


class IHTTPObserver(Protocol):
    def http_served(self, kind: str, peer: str | None, method: str, path: str, code: int,
                    body_bytes: int, seconds: float) -> None: ...


def request_kind(path: bytes, status_page: bytes | None = None) -> str:
    """
    What a request for C{path} is, as a metric label.
    """
    if status_page is not None and (path == status_page or path.startswith(status_page + b"/")):
        return "status"
    if path.startswith(b"/_/machines/") and path.endswith(b"/reinstall"):
        return "admin"
    for prefix, kind in _KINDS:
        if path.startswith(prefix):
            return kind
    return "other"


class MeteredResource(Resource):
    """
    Serves everything through C{inner}, and tells C{observer} about each
    request once it has ended.

    @param status_page: the status page's path, to label its requests.
    """

    isLeaf = True

    def __init__(self, inner: IResource, observer: IHTTPObserver, clock: IReactorTime,
                 status_page: str | None = None) -> None:
        super().__init__()
        self.inner = inner
        self.observer = observer
        self.clock = clock
        self.status_page = status_page.encode() if status_page else None

    def render(self, request: Any) -> Any:
        # A twisted.web Request: IRequest does not declare notifyFinish.
        started = self.clock.seconds()
        request.notifyFinish().addBoth(self._ended, request, started)
        return self.inner.render(request)

    def _ended(self, _: object, request: Any, started: float) -> None:
        try:
            path = request.path
            peer = getattr(request.getClientAddress(), "host", None)
            self.observer.http_served(
                getattr(request, "pxed_kind", None) or request_kind(path, self.status_page), peer,
                request.method.decode("ascii", "replace"), path.decode("utf-8", "replace"),
                int(request.code), int(getattr(request, "sentLength", 0)),
                self.clock.seconds() - started)
        except Exception:
            log.failure("observing an HTTP request failed")
