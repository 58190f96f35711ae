# -*- test-case-name: tests.test_testing -*-
"""
pxed's web resources without a socket: L{treq.testing.StubTreq} runs
requests against a resource in memory, and L{MemoryHTTP} adds what pxed's
tests need on top (a base URL, one call for status and body, and the
flushing StubTreq needs for responses that finish later).

It suits the routes that answer with a body of their own (iPXE scripts,
the JSON API, the status page, the admin actions); file downloads stream
through a producer StubTreq does not drive, so tests of those use a real
listening port on 127.0.0.1.
"""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

from treq.testing import StubTreq
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.web.resource import IResource, Resource

__all__ = ["MemoryHTTP", "StatusRows", "Inner"]


class MemoryHTTP:
    """
    An in-memory HTTP client for C{resource} (for instance
    C{BootHTTP(...).resource()}, or the status pages mounted in front).

    @ivar treq: the L{StubTreq}, for anything C{fetch} does not cover.
    """

    def __init__(self, resource: IResource, base: str = "http://192.0.2.1") -> None:
        self.treq: Any = StubTreq(resource)  # (its methods are made at run time)
        self.base = base

    def _settle(self, d: Deferred[Any], rounds: int = 1000) -> Deferred[Any]:
        """
        Pump the in-memory connection until C{d} has its result: a file
        is written a chunk per round, as its producer is asked for more.
        """
        for _ in range(rounds):
            if d.called:
                return d
            self.treq.flush()
        if not d.called:
            raise AssertionError(f"no response after {rounds} rounds")
        return d

    @inlineCallbacks
    def fetch(self, path: str, method: str = "GET", **kwargs: Any) -> Any:
        """
        Request C{path} (or a full URL); fires with (response, body bytes).
        """
        url = path if path.startswith("http") else self.base + path
        response = yield self._settle(self.treq.request(method, url, **kwargs))
        body = yield self._settle(self.treq.content(response))
        return response, body

    def get(self, path: str, **kwargs: Any) -> Deferred[Any]:
        return self.fetch(path, "GET", **kwargs)

    def post(self, path: str, **kwargs: Any) -> Deferred[Any]:
        return self.fetch(path, "POST", **kwargs)


class StatusRows(HTMLParser):
    """
    The machines table of the status page's DOM (as a browser rendered
    it): MAC to the text of its status badge, in C{status}.
    """

    def __init__(self) -> None:
        super().__init__()
        self.status: dict[str, str] = {}
        self._mac: str | None = None
        self._in_badge = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "tr":
            self._mac = found.get("data-mac")
        elif tag == "span" and "badge" in (found.get("class") or "").split():
            self._in_badge = self._mac is not None

    def handle_endtag(self, tag: str) -> None:
        if tag == "span":
            self._in_badge = False

    def handle_data(self, data: str) -> None:
        if self._in_badge and self._mac is not None:
            self.status[self._mac] = self.status.get(self._mac, "") + data.strip()


class Inner(Resource):
    """
    Stands in for pxed's own routes behind the status pages' mount: 404
    for everything, remembering the paths that reached it.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.paths: list[bytes] = []

    def render(self, request: Any) -> bytes:
        self.paths.append(request.path)
        request.setResponseCode(404)
        return b"inner\n"
