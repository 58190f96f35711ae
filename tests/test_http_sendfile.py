"""
Tests for L{pxed.http.sendfile}: file bodies sent by sendfile(2) over real
TCP connections are the file's bytes, in order, after the headers, with
the transport's ordinary flow control when the client reads slowly; any
other transport gets the same bytes written the ordinary way.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor, tcp
from twisted.trial import unittest
from twisted.web.resource import Resource
from twisted.web.test.requesthelper import DummyRequest

from pxed.http import sendfile
from pxed.http.files import LocalFile
from pxed.http.guard import GuardedSite, HTTPLimits
from pxed.http.sendfile import SendfileProducer
from tests.server import connect, sleep, within

SIZE = 6 * 1024 * 1024 + 12345


def _content(size: int) -> bytes:
    block = bytes(range(256)) * 4096
    return (block * (size // len(block) + 1))[:size]


_SENDFILE = os.sendfile


class Counting:
    """os.sendfile, counted."""

    def __init__(self) -> None:
        self.calls = 0
        self.sent = 0

    def __call__(self, *args: Any) -> int:
        self.calls += 1
        n: int = _SENDFILE(*args)
        self.sent += n
        return n


def _split(received: bytes) -> tuple[str, bytes]:
    head, _, body = received.partition(b"\r\n\r\n")
    return head.decode("latin-1"), body


class SendfileOverTCPTests(unittest.TestCase):
    def setUp(self) -> None:
        base = Path(self.mktemp())
        base.mkdir()
        self.path = base / "initrd"
        self.content = _content(SIZE)
        self.path.write_bytes(self.content)
        root = Resource()
        root.putChild(b"initrd", LocalFile(self.path))
        self.site = GuardedSite(root, HTTPLimits(send_timeout=3.0))
        port = reactor.listenTCP(0, self.site, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)
        self.port = port.getHost().port
        self.counted = Counting()
        self.patch(sendfile.os, "sendfile", self.counted)

    @defer.inlineCallbacks
    def fetch(self, request: bytes, pause_every: int = 0) -> Any:
        client = yield connect(self.port, receive_buffer=65536 if pause_every else None)
        client.transport.write(request)
        if pause_every:
            # A client that reads in bursts: the server's socket fills again
            # and again, so sendfile and the transport's buffer take turns.
            for _ in range(400):
                if client.closed.called:
                    break
                client.transport.pauseProducing()
                yield sleep(0.01)
                client.transport.resumeProducing()
                yield sleep(0.002)
        yield within(client.closed, 30)
        return _split(bytes(client.received))

    @defer.inlineCallbacks
    def test_whole_file(self) -> None:
        """
        The body is the file; most of it went by sendfile, and the access
        log's byte count includes it.
        """
        logged: list[int] = []
        self.site.log = lambda request: logged.append(request.sentLength)  # type: ignore[method-assign]
        head, body = yield self.fetch(b"GET /initrd HTTP/1.0\r\n\r\n")
        self.assertIn("200 OK", head)
        self.assertIn(f"Content-Length: {SIZE}", head)
        self.assertEqual(len(body), SIZE)
        self.assertEqual(zlib.crc32(body), zlib.crc32(self.content))
        self.assertGreater(self.counted.sent, SIZE // 2)
        self.assertEqual(logged, [SIZE])

    @defer.inlineCallbacks
    def test_slow_reader(self) -> None:
        """
        A client that stops reading now and then still gets every byte in
        order: the socket fills, the rest waits in the transport, sendfile
        resumes once it has drained.
        """
        head, body = yield self.fetch(b"GET /initrd HTTP/1.0\r\n\r\n", pause_every=1)
        self.assertIn("200 OK", head)
        self.assertEqual(zlib.crc32(body), zlib.crc32(self.content))
        self.assertGreater(self.counted.calls, 2)

    @defer.inlineCallbacks
    def test_range(self) -> None:
        """
        One range is sent by sendfile too, from its offset.
        """
        start, end = 1_000_003, 5_500_000
        head, body = yield self.fetch(
            f"GET /initrd HTTP/1.0\r\nRange: bytes={start}-{end}\r\n\r\n".encode())
        self.assertIn("206 Partial Content", head)
        self.assertEqual(body, self.content[start:end + 1])
        self.assertGreater(self.counted.sent, 0)

    @defer.inlineCallbacks
    def test_keep_alive(self) -> None:
        """
        Two responses on one connection, each whole, none overtaking the
        other's headers.
        """
        client = yield connect(self.port)
        client.transport.write(b"GET /initrd HTTP/1.1\r\nHost: x\r\n\r\n"
                               b"GET /initrd HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9\r\n"
                               b"Connection: close\r\n\r\n")
        yield within(client.closed, 30)
        first, rest = _split(bytes(client.received))
        self.assertIn("200 OK", first)
        self.assertEqual(zlib.crc32(rest[:SIZE]), zlib.crc32(self.content))
        second, body = _split(rest[SIZE:])
        self.assertIn("206 Partial Content", second)
        self.assertEqual(body, self.content[:10])

    @defer.inlineCallbacks
    def test_client_leaves(self) -> None:
        """
        A client that goes away mid-body costs nothing: the file is
        closed, nothing is logged as an error.
        """
        client = yield connect(self.port, receive_buffer=65536)
        client.transport.pauseProducing()
        client.transport.write(b"GET /initrd HTTP/1.0\r\n\r\n")
        yield sleep(0.2)
        client.transport.abortConnection()
        yield sleep(0.2)
        self.assertEqual(self.flushLoggedErrors(), [])


class FallbackTests(unittest.TestCase):
    def test_not_a_socket(self) -> None:
        """
        A transport that is not a TCP socket (here a test double) gets the
        file written through the request, whole, and finished.
        """
        base = Path(self.mktemp())
        base.mkdir()
        path = base / "f"
        content = _content(300_000)
        path.write_bytes(content)
        request = DummyRequest([b""])
        producer = SendfileProducer(request, open(path, "rb"), 1000, 200_000)  # noqa: SIM115
        producer.start()  # (DummyRequest resumes its producer until it unregisters)
        self.assertEqual(b"".join(request.written), content[1000:201_000])
        self.assertEqual(request.finished, 1)
        self.assertTrue(producer.fileObject.closed)

    def test_file_shrank(self) -> None:
        """
        A file cut short while it is sent ends the response where it ends,
        rather than waiting for bytes that will never come.
        """
        base = Path(self.mktemp())
        base.mkdir()
        path = base / "f"
        path.write_bytes(_content(100_000))
        request = DummyRequest([b""])
        producer = SendfileProducer(request, open(path, "rb"), 0, 500_000)  # noqa: SIM115
        producer.start()
        for _ in range(20):
            if request.finished:
                break
            producer.resumeProducing()
        self.assertEqual(len(b"".join(request.written)), 100_000)
        self.assertEqual(request.finished, 1)

    def test_unknown_transport_internals(self) -> None:
        """
        A TCP transport without the buffer attributes this Twisted has
        gets the buffered writes (sendfile only when the transport's own
        buffer is known to be empty).
        """
        transport = tcp.Connection.__new__(tcp.Connection)
        transport.connected, transport.disconnecting = True, False

        class Channel:
            pass

        channel = Channel()
        channel.transport = transport  # type: ignore[attr-defined]
        request = DummyRequest([b""])
        request.channel = channel  # type: ignore[assignment]
        request.startedWriting = True
        producer = SendfileProducer(request, None, 0, 10)
        self.assertIsNone(producer._socket())

