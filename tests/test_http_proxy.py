"""
Tests for L{pxed.http.proxy}: remote files fetched through pxed and
streamed, against real upstream servers on 127.0.0.1; the timeouts run on
an injected clock.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import treq
from twisted.internet import defer, reactor, task
from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest
from twisted.web.client import HTTPConnectionPool, ResponseFailed
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from twisted.web.static import File
from twisted.web.util import Redirect

from pxed.http.app import BootHTTP
from pxed.http.files import FileCatalog
from pxed.http.proxy import CLIENT_STALL, RemoteFetcher, _Relay
from pxed.policy import StaticPolicy
from pxed.signing import Signer
from pxed.state import MemoryBootLog

IDLE = 30.0


class Stalling(Resource):
    """
    Upstream behaviours a proxy must survive: no headers at all, or
    headers and part of the body, then silence.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.arrived: defer.Deferred[Request] = defer.Deferred()
        self.gone: defer.Deferred[None] = defer.Deferred()

    def render_GET(self, request: Request) -> Any:
        request.notifyFinish().addBoth(lambda _: self.gone.callback(None))
        if request.path.endswith(b"/body"):
            request.setHeader(b"content-length", b"1000")
            request.write(b"x" * 100)
        self.arrived.callback(request)
        return NOT_DONE_YET


class ProxyTests(unittest.TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).absolute()
        self.dir.mkdir()
        self.data = os.urandom(3 << 20)
        (self.dir / "kernel").write_bytes(self.data)
        upstream = File(str(self.dir))
        self.stalling = Stalling()
        upstream.putChild(b"stall", self.stalling)
        self.upstream_root = upstream
        port = reactor.listenTCP(0, Site(upstream), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.upstream = f"http://127.0.0.1:{port.getHost().port}"
        self.clock = task.Clock()
        self.fetcher = RemoteFetcher(reactor, connect_timeout=5, idle_timeout=IDLE,
                                     clock=self.clock)
        self.addCleanup(self.fetcher.close)
        self.catalog = FileCatalog(Signer(b"p" * 32), proxy_remote=True)
        app = BootHTTP(StaticPolicy({}), self.catalog, MemoryBootLog(), fetcher=self.fetcher)
        pxed = reactor.listenTCP(0, Site(app.resource()), interface="127.0.0.1")
        self.addCleanup(pxed.stopListening)
        self.base = f"http://127.0.0.1:{pxed.getHost().port}"
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(self.pool.closeCachedConnections)

    def url(self, remote: str) -> str:
        return self.catalog.url(self.base, remote)

    def get(self, url: str, **kwargs: Any) -> Any:
        return treq.request(kwargs.pop("method", "GET"), url, pool=self.pool, timeout=20,
                            **kwargs)

    @defer.inlineCallbacks
    def test_streams_with_length(self) -> Any:
        url = self.url(self.upstream + "/kernel")
        self.assertTrue(url.startswith(self.base + "/_/file/"), url)
        response = yield self.get(url)
        self.assertEqual(response.code, 200)
        self.assertEqual(response.length, len(self.data))
        body = yield treq.content(response)
        self.assertEqual(body, self.data)

    @defer.inlineCallbacks
    def test_range_head_etag(self) -> Any:
        url = self.url(self.upstream + "/kernel")
        response = yield self.get(url, headers={b"Range": [b"bytes=10-19"]})
        body = yield treq.content(response)
        self.assertEqual((response.code, body), (206, self.data[10:20]))
        self.assertEqual(response.headers.getRawHeaders(b"content-range"),
                         [f"bytes 10-19/{len(self.data)}".encode()])
        response = yield self.get(url, method="HEAD")
        body = yield treq.content(response)
        self.assertEqual((response.code, body), (200, b""))
        self.assertEqual(response.headers.getRawHeaders(b"content-length"),
                         [str(len(self.data)).encode()])

    @defer.inlineCallbacks
    def test_redirect_not_followed(self) -> Any:
        """
        An upstream redirect (here to another origin) is a 502: pxed serves
        only the URL it signed.
        """
        other = File(str(self.dir))
        port = reactor.listenTCP(0, Site(other), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        target = f"http://127.0.0.1:{port.getHost().port}/kernel".encode()
        self.upstream_root.putChild(b"moved", Redirect(target))
        response = yield self.get(self.url(self.upstream + "/moved"))
        body = yield treq.content(response)
        self.assertEqual(response.code, 502)
        self.assertNotIn(self.data[:64], body)

    @defer.inlineCallbacks
    def test_several_ranges_get_the_whole_file(self) -> Any:
        url = self.url(self.upstream + "/kernel")
        response = yield self.get(url, headers={b"Range": [b"bytes=0-9,0-65385"]})
        body = yield treq.content(response)
        self.assertEqual((response.code, body), (200, self.data))

    @defer.inlineCallbacks
    def test_upstream_error(self) -> Any:
        response = yield self.get(self.url(self.upstream + "/missing"))
        body = yield treq.content(response)
        self.assertEqual(response.code, 502)
        self.assertIn(b"404", body)

    @defer.inlineCallbacks
    def test_connection_refused(self) -> Any:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
        s.close()
        response = yield self.get(self.url(f"http://127.0.0.1:{closed}/kernel"))
        yield treq.content(response)
        self.assertEqual(response.code, 502)

    @defer.inlineCallbacks
    def test_no_headers_times_out(self) -> Any:
        fetching = self.get(self.url(self.upstream + "/stall/headers"))
        yield self.stalling.arrived
        self.clock.advance(IDLE - 1)
        self.assertNoResult(fetching)
        self.clock.advance(1)
        response = yield fetching
        yield treq.content(response)
        self.assertEqual(response.code, 504)
        yield self.stalling.gone  # the upstream request was abandoned

    @defer.inlineCallbacks
    def test_body_stall_aborts_client(self) -> Any:
        """
        Silence mid-body aborts the client's connection, so a truncated
        file can never pass for a whole one, and drops the upstream.
        """
        response = yield self.get(self.url(self.upstream + "/stall/body"))
        self.assertEqual((response.code, response.length), (200, 1000))
        reading = treq.content(response)
        for _ in range(200):  # wait (bounded) until the relay armed its timer
            if self.clock.getDelayedCalls():
                break
            yield task.deferLater(reactor, 0.01)
        self.assertTrue(self.clock.getDelayedCalls())
        self.clock.advance(IDLE)
        yield self.assertFailure(reading, ResponseFailed)
        yield self.stalling.gone

    def test_connect_timeout_used(self) -> None:
        """
        The connect timeout reaches the connection attempt itself.
        """
        memory = MemoryReactorClock()
        fetcher = RemoteFetcher(memory, connect_timeout=7, idle_timeout=IDLE)
        fetcher.client.get("http://127.0.0.1:8080/x")  # never connects: memory reactor
        self.assertEqual(len(memory.tcpClients), 1)
        host, port, _, timeout, _ = memory.tcpClients[0]
        self.assertEqual((host, port, timeout), ("127.0.0.1", 8080, 7))


class RelayBackpressureTests(unittest.TestCase):
    """
    A slow client pauses the upstream, and a client that leaves stops it.
    """

    class Upstream:
        def __init__(self) -> None:
            self.calls: list[str] = []

        def pauseProducing(self) -> None:
            self.calls.append("pause")

        def resumeProducing(self) -> None:
            self.calls.append("resume")

        def stopProducing(self) -> None:
            self.calls.append("stop")

    class Transport:
        def __init__(self) -> None:
            self.aborted = False

        def abortConnection(self) -> None:
            self.aborted = True

    class Client:
        def __init__(self) -> None:
            self.producer: Any = None
            self.written: list[bytes] = []
            self.channel = SimpleNamespace(transport=RelayBackpressureTests.Transport())

        def registerProducer(self, producer: Any, streaming: bool) -> None:
            self.producer = producer

        def unregisterProducer(self) -> None:
            self.producer = None

        def write(self, data: bytes) -> None:
            self.written.append(data)

    def test_pause_resume_stop(self) -> None:
        clock = task.Clock()
        fetcher = RemoteFetcher(MemoryReactorClock(), idle_timeout=IDLE, clock=clock)
        client, upstream = self.Client(), self.Upstream()
        relay = _Relay(client, fetcher, "http://h/x")  # type: ignore[arg-type]
        relay.makeConnection(upstream)  # type: ignore[arg-type]
        self.assertIs(client.producer, relay)
        relay.dataReceived(b"abc")
        client.producer.pauseProducing()
        client.producer.resumeProducing()
        self.assertEqual(upstream.calls, ["pause", "resume"])
        self.assertEqual(client.written, [b"abc"])
        client.producer.stopProducing()
        self.assertEqual(upstream.calls[-1], "stop")
        self.assertEqual(clock.getDelayedCalls(), [])

    def relay(self) -> tuple[Any, Any, Any, task.Clock]:
        clock = task.Clock()
        fetcher = RemoteFetcher(MemoryReactorClock(), idle_timeout=IDLE, clock=clock)
        client, upstream = self.Client(), self.Upstream()
        relay = _Relay(client, fetcher, "http://h/x")  # type: ignore[arg-type]
        relay.makeConnection(upstream)  # type: ignore[arg-type]
        return relay, client, upstream, clock

    def test_paused_upstream_is_not_idle(self) -> None:
        """
        A client that stops reading for longer than the idle timeout keeps
        its download: the upstream is quiet because we paused it.  Once
        resumed, the upstream has a whole idle timeout to send again.
        """
        relay, client, upstream, clock = self.relay()
        relay.dataReceived(b"abc")
        client.producer.pauseProducing()
        clock.advance(IDLE * 3)
        relay.dataReceived(b"def")  # already on its way when we paused
        clock.advance(IDLE * CLIENT_STALL - 1)
        self.assertEqual(upstream.calls, ["pause"])
        self.assertFalse(client.channel.transport.aborted)
        client.producer.resumeProducing()
        clock.advance(IDLE - 1)
        self.assertEqual(upstream.calls, ["pause", "resume"])
        self.assertEqual(client.written, [b"abc", b"def"])
        clock.advance(1)
        self.assertEqual(upstream.calls, ["pause", "resume", "stop"])
        self.assertTrue(client.channel.transport.aborted)

    def test_client_that_never_reads_again(self) -> None:
        """A stalled client does not hold the upstream for ever."""
        relay, client, upstream, clock = self.relay()
        client.producer.pauseProducing()
        clock.advance(IDLE * CLIENT_STALL)
        self.assertEqual(upstream.calls, ["pause", "stop"])
        self.assertTrue(client.channel.transport.aborted)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_silent_upstream_still_times_out(self) -> None:
        relay, client, upstream, clock = self.relay()
        relay.dataReceived(b"abc")
        clock.advance(IDLE - 1)
        relay.dataReceived(b"def")
        clock.advance(IDLE - 1)
        self.assertFalse(client.channel.transport.aborted)
        clock.advance(1)
        self.assertEqual(upstream.calls, ["stop"])
        self.assertTrue(client.channel.transport.aborted)
        self.assertEqual(clock.getDelayedCalls(), [])
