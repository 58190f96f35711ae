# -*- test-case-name: tests.test_http -*-
"""
How pxed's HTTP server reads a request and refuses one: query arguments,
the client's MAC and address, the plain-text 400 and 404 answers, and the
guard that keeps non-UTF-8 paths away from the router.

Why a module of its own: these are the same for every route of
L{pxed.http.app.BootHTTP} (scripts, files, exports, programs, the beacon)
and hold no state, so the app keeps only its routes.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_to_bytes

from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource

from pxed.config.boot import normal_mac
from pxed.machine import is_mac

__all__ = ["NOT_FOUND", "TextPaths", "arg", "bad_request", "not_found", "peer", "query_mac"]

NOT_FOUND = b"not found\n"

#: A MAC address once normalised (L{normal_mac}): anything else in a query
#: is refused, so nobody can fill the boot log with invented machines.


class TextPaths(Resource):
    """
    Answers 404 to a path that is not UTF-8 (which the router would fail
    on with an error page), and hands every other request to the router.
    """

    isLeaf = True

    def __init__(self, inner: IResource) -> None:
        super().__init__()
        self.inner = inner

    def render(self, request: IRequest) -> Any:  # type: ignore[override]
        try:
            unquote_to_bytes(request.path).decode("utf-8")
            request.path.decode("utf-8")
        except UnicodeDecodeError:
            request.setResponseCode(404)
            request.setHeader(b"Content-Type", b"text/plain")
            return NOT_FOUND
        return self.inner.render(request)


def arg(request: IRequest, name: str) -> str | None:
    values = request.args.get(name.encode()) if request.args else None
    if not values:
        return None
    return values[0].decode("utf-8", "replace")


def query_mac(request: IRequest) -> str | None:
    """
    The query's C{mac} in the form pxed uses everywhere (lower case,
    colons), or C{None} if it is missing or not a MAC address.
    """
    mac = normal_mac(arg(request, "mac") or "")
    return mac if is_mac(mac) else None


def bad_request(request: IRequest, why: str) -> bytes:
    request.setResponseCode(400)
    request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
    return f"bad request: {why}\n".encode()


def peer(request: IRequest) -> str | None:
    return getattr(request.getClientAddress(), "host", None)


def not_found(request: IRequest) -> bytes:
    request.setResponseCode(404)
    request.setHeader(b"Content-Type", b"text/plain")
    return NOT_FOUND
