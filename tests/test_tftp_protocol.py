"""
Tests for L{pxed.tftp.protocol} and L{pxed.tftp.client} over real UDP on
127.0.0.1.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase

from pxed.testing.tftp import LOCAL, FakeReactor, FakeTransport, Info, ServerTestCase
from pxed.tftp import packet as P
from pxed.tftp.client import TFTPError, TFTPTimeout, fetch
from pxed.tftp.protocol import TFTPServerProtocol
from pxed.tftp.source import BytesSource, ChainSource


class TransferTests(ServerTestCase):
    @defer.inlineCallbacks
    def test_one_info_line_with_fields(self) -> Any:
        """Each transfer ends with one info line, with the fields log shippers index."""
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        yield self.get("small.txt", blksize=1024)
        yield self.waitForEnds(1)
        [line] = [e for e in events if e.get("log_namespace") == "pxed.tftp.protocol"
                  and e["log_level"] == LogLevel.info]
        self.assertEqual((line["stage"], line["peer"], line["filename"], line["outcome"]),
                         ("tftp-end", LOCAL, "small.txt", "complete"))
        self.assertIn("TFTP complete: small.txt to 127.0.0.1:", formatEvent(line))

    @defer.inlineCallbacks
    def test_plain(self) -> Any:
        """A transfer without options, in 512-byte blocks."""
        for name in ("small.txt", "exact.bin", "big.bin"):
            result = yield self.get(name)
            self.assertEqual(result.data, self.files[name])
            self.assertEqual(result.options, {})
        yield self.waitForEnds(3)
        self.assertEqual([e[2].outcome for e in self.ends], ["complete"] * 3)
        self.assertEqual(self.ends[1][2].blocks, 5)
        self.assertEqual(self.server.active_transfers, 0)

    @defer.inlineCallbacks
    def test_options(self) -> Any:
        """blksize, tsize and windowsize as EDK2 asks for them."""
        result = yield self.get("big.bin", blksize=1468, tsize=True, windowsize=4)
        self.assertEqual(result.data, self.files["big.bin"])
        self.assertEqual(result.options, {"blksize": "1468", "tsize": "300000", "windowsize": "4"})
        yield self.waitForEnds(1)
        peer, filename, end = self.ends[0]
        self.assertEqual(filename, "big.bin")
        self.assertEqual(
            (end.outcome, end.bytes_sent, end.blksize, end.windowsize),
            ("complete", 300000, 1468, 4),
        )
        self.assertEqual(self.starts[0][0], peer)
        self.assertEqual(self.starts[0][2], {"blksize": "1468", "tsize": "0", "windowsize": "4"})

    @defer.inlineCallbacks
    def test_clamped(self) -> Any:
        """The client gets the server's maximum when it asks for more."""
        result = yield self.get("big.bin", blksize=65464, windowsize=64)
        self.assertEqual(result.options, {"blksize": "1468", "windowsize": "16"})
        self.assertEqual(result.data, self.files["big.bin"])
        yield self.waitForEnds(1)

    @defer.inlineCallbacks
    def test_rollover(self) -> Any:
        """Over 65535 blocks, block numbers wrap."""
        content = os.urandom(8 * 65600)
        (self.root / "huge.bin").write_bytes(content)
        result = yield self.get("huge.bin", blksize=8, windowsize=16)
        self.assertEqual(result.data, content)
        self.assertEqual(result.blocks, 65601)
        yield self.waitForEnds(1)

    @defer.inlineCallbacks
    def test_concurrent(self) -> Any:
        results = yield defer.gatherResults(
            [self.get("big.bin", blksize=1024, windowsize=w) for w in (1, 2, 8)]
            + [self.get("small.txt") for _ in range(5)]
        )
        self.assertEqual(
            [r.data for r in results], [self.files["big.bin"]] * 3 + [self.files["small.txt"]] * 5
        )
        yield self.waitForEnds(8)

    @defer.inlineCallbacks
    def test_fetchBytes(self) -> Any:
        data = yield fetch(reactor, LOCAL, self.addr[1], "small.txt", interface=LOCAL)
        self.assertEqual(data, self.files["small.txt"])
        yield self.waitForEnds(1)

    @defer.inlineCallbacks
    def test_notFound(self) -> Any:
        e = yield self.assertFailure(self.get("missing.txt"), TFTPError)
        self.assertEqual((e.code, e.message), (1, "File not found"))
        self.assertEqual(self.server.active_transfers, 0)
        self.assertEqual(self.starts, [])

    @defer.inlineCallbacks
    def test_accessViolation(self) -> Any:
        e = yield self.assertFailure(self.get("../etc/passwd"), TFTPError)
        self.assertEqual(e.code, P.ERR_ACCESS_VIOLATION)

    @defer.inlineCallbacks
    def test_writeRefused(self) -> Any:
        raw = self.rawClient()
        raw.send(P.WriteRequest("upload.bin", "octet"), self.addr)
        pkt, addr = yield raw.next()
        self.assertIsInstance(pkt, P.Error)
        self.assertEqual(pkt.code, P.ERR_ACCESS_VIOLATION)
        self.assertFalse((self.root / "upload.bin").exists())

    @defer.inlineCallbacks
    def test_junkIsIgnored(self) -> Any:
        """
        Junk on the request port (unknown opcodes, two bytes, packets that
        are not requests) gets no answer; a request after it does.
        """
        raw = self.rawClient()
        for junk in (b"\x00\x09whatever", b"\x00\x07", b"\x00", b"\xff\xff",
                     P.encode(P.Ack(1)), P.encode(P.Error(0, "x")), b"\x00\x01no-nul"):
            raw.send(junk, self.addr)
        yield deferLater(reactor, 0.3, lambda: None)
        self.assertEqual(raw.pending, 0)
        raw.send(P.ReadRequest("nothing-here"), self.addr)
        pkt, _ = yield raw.next()
        self.assertEqual(pkt, P.Error(P.ERR_FILE_NOT_FOUND, "File not found"))

    @defer.inlineCallbacks
    def test_unsupportedMode(self) -> Any:
        raw = self.rawClient()
        raw.send(P.ReadRequest("small.txt", "mail"), self.addr)
        pkt, _ = yield raw.next()
        self.assertIsInstance(pkt, P.Error)
        self.assertEqual(pkt.code, P.ERR_ILLEGAL_OPERATION)

    @defer.inlineCallbacks
    def test_netascii(self) -> Any:
        """netascii is served with network line ends (CR LF)."""
        raw = self.rawClient()
        raw.send(P.ReadRequest("small.txt", "netascii"), self.addr)
        pkt, tid = yield raw.next()
        self.assertEqual(pkt, P.Data(1, self.files["small.txt"].replace(b"\n", b"\r\n")))
        raw.send(P.Ack(1), tid)
        yield self.waitForEnds(1)

    @defer.inlineCallbacks
    def test_garbageIgnored(self) -> Any:
        """Garbage gets no reply, and the service keeps working."""
        raw = self.rawClient()
        for junk in [
            b"",
            b"\x00",
            b"\x00\x01",
            b"\x00\x01x",
            b"\xff" * 600,  # an opcode no TFTP packet could have
            b"GET / HTTP/1.0\r\n\r\n",
            b"\x00\x01\xff\xfe\x00octet\x00",
            P.encode(P.Ack(1)),
            P.encode(P.Data(1, b"x")),
            P.encode(P.Error(0, "x")),
            P.encode(P.OptionAck({})),
        ]:
            raw.send(junk, self.addr)
        yield deferLater(reactor, 0.3, lambda: None)  # type: ignore[arg-type]
        self.assertEqual(raw.pending, 0)
        result = yield self.get("small.txt")
        self.assertEqual(result.data, self.files["small.txt"])
        yield self.waitForEnds(1)

    @defer.inlineCallbacks
    def test_unknownTid(self) -> Any:
        """A stranger writing to a transfer port gets ERROR 5; the transfer goes on."""
        client, stranger = self.rawClient(), self.rawClient()
        client.send(P.ReadRequest("exact.bin"), self.addr)
        pkt, tid = yield client.next()
        self.assertEqual(pkt, P.Data(1, self.files["exact.bin"][:512]))
        self.assertNotEqual(tid, self.addr)
        stranger.send(P.Ack(1), tid)
        pkt, source = yield stranger.next()
        self.assertEqual(source, tid)
        self.assertEqual(pkt, P.Error(P.ERR_UNKNOWN_TID, "Unknown transfer ID"))
        # ERROR from a stranger is not answered and does not end the transfer.
        stranger.send(P.Error(0, "go away"), tid)
        client.send(P.Ack(1), tid)
        pkt, _ = yield client.next()
        self.assertEqual(pkt, P.Data(2, self.files["exact.bin"][512:1024]))
        client.send(P.Error(0, "done"), tid)
        yield self.waitForEnds(1)
        self.assertEqual(stranger.pending, 0)

    @defer.inlineCallbacks
    def test_uefiTsizeProbe(self) -> Any:
        """The probe ends quietly and the real request that follows works."""
        raw = self.rawClient()
        raw.send(
            P.ReadRequest("big.bin", "octet", {"tsize": "0", "blksize": "1468", "windowsize": "4"}),
            self.addr,
        )
        pkt, tid = yield raw.next()
        self.assertEqual(
            pkt, P.OptionAck({"blksize": "1468", "tsize": "300000", "windowsize": "4"})
        )
        raw.send(P.Error(P.ERR_OPTION_NEGOTIATION, "User aborted the transfer"), tid)
        yield self.waitForEnds(1)
        self.assertEqual(self.ends[0][2].outcome, "aborted")
        result = yield self.get("big.bin", blksize=1468, windowsize=4)
        self.assertEqual(result.data, self.files["big.bin"])
        yield self.waitForEnds(2)
        self.assertEqual(raw.pending, 0)

    @defer.inlineCallbacks
    def test_duplicateRequest(self) -> Any:
        """
        A retransmitted RRQ does not start a second transfer: while the
        client has acknowledged nothing, the running one answers it again
        (once: one request, one answer).
        """
        raw = self.rawClient()
        raw.send(P.ReadRequest("small.txt"), self.addr)
        pkt, tid = yield raw.next()
        self.assertEqual(pkt, P.Data(1, self.files["small.txt"]))
        raw.send(P.ReadRequest("small.txt"), self.addr)
        again, same = yield raw.next()
        self.assertEqual((again, same), (pkt, tid))
        yield deferLater(reactor, 0.2, lambda: None)  # type: ignore[arg-type]
        self.assertEqual(raw.pending, 0)
        self.assertEqual(len(self.starts), 1)
        raw.send(P.Ack(1), tid)
        yield self.waitForEnds(1)


class LimitTests(ServerTestCase):
    server_kw = {"timeout": 0.1, "retries": 2, "patience": 0, "max_transfers": 1}

    @defer.inlineCallbacks
    def test_timeout(self) -> Any:
        """
        A client that never answers (a spoofed request, say) gets its first
        packet twice, no ERROR, and its transfer ends.
        """
        raw = self.rawClient()
        raw.send(P.ReadRequest("small.txt"), self.addr)
        yield self.waitForEnds(1)
        self.assertEqual(self.ends[0][2].outcome, "timeout")
        packets = []
        for _ in range(2):
            pkt, _ = yield raw.next()
            packets.append(pkt)
        self.assertEqual(packets, [P.Data(1, self.files["small.txt"])] * 2)
        yield deferLater(reactor, 0.2, lambda: None)
        self.assertEqual(raw.pending, 0)
        self.assertEqual(self.server.active_transfers, 0)

    @defer.inlineCallbacks
    def test_busy(self) -> Any:
        first, second = self.rawClient(), self.rawClient()
        first.send(P.ReadRequest("small.txt"), self.addr)
        _, tid = yield first.next()
        second.send(P.ReadRequest("small.txt"), self.addr)
        pkt, _ = yield second.next()
        self.assertEqual(pkt, P.Error(P.ERR_UNDEFINED, "Server busy"))
        first.send(P.Ack(1), tid)
        yield self.waitForEnds(1)
        result = yield self.get("small.txt")
        self.assertEqual(result.data, self.files["small.txt"])
        yield self.waitForEnds(2)

    @defer.inlineCallbacks
    def test_clientTimeout(self) -> Any:
        """The client gives up on a server that does not answer."""
        silent = self.rawClient()
        port = silent.transport.getHost().port  # type: ignore[union-attr]
        d = fetch(reactor, LOCAL, port, "x", timeout=0.05, retries=2, interface=LOCAL)
        yield self.assertFailure(d, TFTPTimeout)
        self.assertEqual(silent.pending, 3)


class RobustnessTests(ServerTestCase):
    @defer.inlineCallbacks
    def test_sourceFailure(self) -> Any:
        """A source that fails unexpectedly yields ERROR 0, and logs."""

        class Broken:
            def open(self, filename: str, peer: Any) -> Any:
                raise RuntimeError("boom")

        server = self.makeServer(ChainSource([BytesSource({"ok": b"ok"}), Broken()]))  # type: ignore[list-item]
        port = reactor.listenUDP(0, server, interface=LOCAL)  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)
        e = yield self.assertFailure(
            fetch(reactor, LOCAL, port.getHost().port, "x", interface=LOCAL), TFTPError
        )
        self.assertEqual((e.code, e.message), (0, "Internal error"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(server.active_transfers, 0)
        data = yield fetch(reactor, LOCAL, port.getHost().port, "ok", interface=LOCAL)
        self.assertEqual(data, b"ok")
        yield self.waitForEnds(1)

    @defer.inlineCallbacks
    def test_observerFailure(self) -> Any:
        """An observer that raises does not break the transfer."""

        def bad(*args: Any) -> None:
            raise ValueError("observer bug")

        self.server.on_transfer_start = bad
        result = yield self.get("small.txt")
        self.assertEqual(result.data, self.files["small.txt"])
        yield self.waitForEnds(1)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    @defer.inlineCallbacks
    def test_stopAbortsTransfers(self) -> Any:
        raw = self.rawClient()
        raw.send(P.ReadRequest("big.bin"), self.addr)
        _, tid = yield raw.next()
        yield self.port.stopListening()
        pkt, _ = yield raw.next()
        self.assertEqual(pkt, P.Error(0, "Server shutting down"))
        yield self.waitForEnds(1)
        self.assertEqual(self.ends[0][2].outcome, "aborted")


class FakeNetworkTests(TestCase):
    """Protocol behaviour that needs no real socket."""

    def server(self, host: str = "0.0.0.0", source: Any = None, **kw: Any) -> Any:
        reactor = FakeReactor()
        server = TFTPServerProtocol(source or BytesSource({"f": b"x" * 2000}), reactor, **kw)
        transport = FakeTransport(host, 69)
        server.makeConnection(transport)  # type: ignore[arg-type]
        return server, reactor, transport

    def rrq(self, name: str = "f") -> bytes:
        return P.encode(P.ReadRequest(name))

    def test_bindsToRequestedAddress(self) -> None:
        """With packet info, the transfer port binds to the address the client used."""
        server, reactor, _ = self.server()
        server.datagramReceivedWithInfo(
            self.rrq(), ("10.0.0.9", 2000), Info("10.0.0.5", "10.0.0.5")
        )
        server.datagramReceivedWithInfo(
            self.rrq(), ("10.0.0.9", 2001), Info("255.255.255.255", "10.0.1.5")
        )
        server.datagramReceivedWithInfo(self.rrq(), ("10.0.0.9", 2002), None)
        server.datagramReceived(self.rrq(), ("10.0.0.9", 2003))
        self.assertEqual([b[0] for b in reactor.bound], ["10.0.0.5", "10.0.1.5", "", ""])
        _, transport, _ = reactor.bound[0]
        self.assertEqual(transport.written, [(P.Data(1, b"x" * 512), ("10.0.0.9", 2000))])

    def test_bindsToListeningAddress(self) -> None:
        server, reactor, _ = self.server(host="192.0.2.1")
        server.datagramReceived(self.rrq(), ("10.0.0.9", 2000))
        self.assertEqual(reactor.bound[0][0], "192.0.2.1")

    def test_perClientCap(self) -> None:
        server, reactor, transport = self.server(max_per_client=2)
        for port in (1, 2, 3):
            server.datagramReceived(self.rrq(), ("10.0.0.9", port))
        server.datagramReceived(self.rrq(), ("10.0.0.10", 1))
        self.assertEqual(len(reactor.bound), 3)
        self.assertEqual(transport.written, [(P.Error(0, "Too many transfers"), ("10.0.0.9", 3))])
        self.assertEqual(server.active_transfers, 3)

    def test_openTimeout(self) -> None:
        """A source that never answers does not hold a slot forever."""

        class Stuck:
            def open(self, filename: str, peer: Any) -> defer.Deferred[Any]:
                return defer.Deferred()

        server, reactor, transport = self.server(source=Stuck(), open_timeout=5)
        server.datagramReceived(self.rrq(), ("10.0.0.9", 2000))
        self.assertEqual(server.active_transfers, 1)
        reactor.advance(5)
        self.assertEqual(server.active_transfers, 0)
        self.assertEqual(
            transport.written, [(P.Error(0, "Timed out opening the file"), ("10.0.0.9", 2000))]
        )

    def test_abandonedTransferReaped(self) -> None:
        """
        A client that never answers is dropped when its own retransmitted
        ACK would have come (six seconds after the second copy of its first
        answer), and its port closed.
        """
        ends: list[Any] = []
        server, reactor, _ = self.server(
            retries=2, patience=10, on_transfer_end=lambda *a: ends.append(a)
        )
        server.datagramReceived(self.rrq(), ("10.0.0.9", 2000))
        reactor.pump([0.5] * 13)  # the copy at 1 s (the timeout), then 6 s
        self.assertEqual(ends, [])
        reactor.pump([0.5] * 2)
        self.assertEqual(ends[0][2].outcome, "timeout")
        self.assertEqual(ends[0][2].error, "client never answered")
        self.assertTrue(reactor.bound[0][1].stopped)
        self.assertEqual(server.active_transfers, 0)
        self.assertEqual(reactor.getDelayedCalls(), [])
