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

import os
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

import treq
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial import unittest
from twisted.web.client import HTTPConnectionPool
from twisted.web.resource import IResource, Resource
from twisted.web.server import Site

from pxed.config.boot import normal_mac
from pxed.http.app import BootHTTP
from pxed.http.files import FileCatalog
from pxed.machine import Machine, architecture
from pxed.policy import BootRequest, BootSpec, Rule, RulePolicy, StaticPolicy
from pxed.policy.request import sign_context
from pxed.signing import Signer
from pxed.state import MemoryBootLog
from pxed.store import MemoryStateStore

__all__ = ["MemoryHTTP", "StatusRows", "Inner", "HTTPTestCase", "MAC", "OTHER_MAC", "KEY",
           "listen_on_loopback"]


#: The machine L{HTTPTestCase}'s policy boots, and one it does not know.
MAC = "52:54:00:ab:cd:12"
OTHER_MAC = "52:54:00:99:88:77"
REQUEST_TIMEOUT = 10
#: The test case's signing key.
KEY = b"k" * 32


def listen_on_loopback(case: unittest.TestCase,
                       resource: IResource) -> tuple[str, HTTPConnectionPool]:
    """
    Serve C{resource} on a free port of 127.0.0.1 for the duration of
    C{case}: its base URL, and a connection pool that keeps no connection
    between requests (so none is left open when the test ends).
    """
    from twisted.internet import reactor

    port: Any = cast(Any, reactor).listenTCP(0, Site(resource), interface="127.0.0.1")
    case.addCleanup(port.stopListening)
    pool = HTTPConnectionPool(reactor, persistent=False)
    case.addCleanup(pool.closeCachedConnections)
    return f"http://127.0.0.1:{port.getHost().port}", pool


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


class HTTPTestCase(unittest.TestCase):
    """
    pxed's web application (L{BootHTTP}) on a real port of 127.0.0.1,
    booting C{MAC} with a kernel, an initrd and a remote file from a
    temporary directory; C{fetch} and C{script} ask it as iPXE would.
    """

    timeout = 60

    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).absolute()
        self.dir.mkdir()
        self.kernel_bytes = os.urandom(150_000)
        self.kernel = self.dir / "vmlinuz"
        self.kernel.write_bytes(self.kernel_bytes)
        self.initrd = self.dir / "initrd.img"
        self.initrd.write_bytes(b"initrd contents")
        self.spec = BootSpec(str(self.kernel), (str(self.initrd), "http://mirror.invalid/fw.img"),
                             "console=ttyS0")
        self.policy: Any = StaticPolicy({MAC: self.spec})
        self.signer = Signer(KEY)
        self.catalog = FileCatalog(self.signer)
        self.boot_log = MemoryBootLog()
        self.store = MemoryStateStore()
        self.start(BootHTTP(self.policy, self.catalog, self.boot_log, store=self.store))

    def start(self, app: BootHTTP) -> None:
        self.app = app
        self.base, self.pool = listen_on_loopback(self, app.resource())

    def rules(self, *rules: Rule) -> RulePolicy:
        policy = RulePolicy(rules, self.store)
        self.app.policy = policy
        return policy

    @inlineCallbacks
    def fetch(self, path: str, method: str = "GET", **kwargs: Any) -> Any:
        """
        Fetch C{path} (or a full URL) and return (response, body bytes).
        """
        url = path if path.startswith("http://") else self.base + path
        response = yield treq.request(method, url, pool=self.pool, timeout=REQUEST_TIMEOUT,
                                      **kwargs)
        body = yield treq.content(response)
        return response, body

    def context(self, mac: str = MAC, **network: Any) -> str:
        """
        A script URL's context as the DHCP side signs it.
        """
        machine = Machine(normal_mac(mac), architecture(7), ipxe=True, user_class="iPXE")
        return sign_context(self.signer, BootRequest(machine, "proxydhcp", **network))

    @inlineCallbacks
    def script(self, mac: str = MAC, arch: int = 7, extra: str = "", signed: bool = True) -> Any:
        """
        The script for C{mac}, fetched with a context signed as a DHCP
        answer would (unless C{signed} is false or C{extra} has one).
        """
        if signed and "ctx=" not in extra:
            extra += f"&ctx={self.context(mac)}"
        response, body = yield self.fetch(f"/_/ipxe?mac={quote(mac)}&arch={arch}{extra}")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders(b"content-type"),
                         [b"text/plain; charset=utf-8"])
        return body.decode("utf-8")

    def kernel_url(self, script: str) -> str:
        match = re.search(r"^kernel (\S+)", script, re.MULTILINE)
        assert match is not None, script
        return match.group(1)

    def beacon_url(self, script: str) -> str:
        match = re.search(r"imgfetch --name pxed-beacon (\S+)", script)
        assert match is not None, script
        return match.group(1)
