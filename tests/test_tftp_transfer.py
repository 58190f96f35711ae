"""
Tests for L{pxed.tftp.transfer}: the per-transfer port the server opens,
over real UDP on 127.0.0.1.
"""

from __future__ import annotations

import errno
import os
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import deferLater
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase

from pxed.testing.tftp import LOCAL, FakeReactor, RawClient, ServerTestCase
from pxed.tftp import packet as P
from pxed.tftp.transfer import TransferPort, listen_transfer


class QuietTransferTests(ServerTestCase):
    server_kw = {"max_blksize": 65464, "max_windowsize": 64}

    def setUp(self) -> None:
        super().setUp()
        self.files["huge.bin"] = os.urandom(2_000_000)
        (self.root / "huge.bin").write_bytes(self.files["huge.bin"])

    @defer.inlineCallbacks
    def fetchRaw(self, raw: RawClient, name: str, windowsize: int) -> Any:
        """Fetch C{name} at blksize 1468 by hand, ACKing each window."""
        options = {"blksize": "1468", "windowsize": str(windowsize)}
        raw.send(P.ReadRequest(name, "octet", options), self.addr)
        pkt, tid = yield raw.next()
        self.assertEqual(pkt, P.OptionAck(options))
        raw.send(P.Ack(0), tid)
        chunks = []
        for _ in range(10_000):
            pkt, _ = yield raw.next()
            assert isinstance(pkt, P.Data)
            chunks.append(pkt.payload)
            if len(pkt.payload) < 1468 or pkt.block % windowsize == 0:
                raw.send(P.Ack(pkt.block), tid)
            if len(pkt.payload) < 1468:
                return b"".join(chunks)
        raise AssertionError("the transfer did not end")

    @defer.inlineCallbacks
    def test_no_port_noise(self) -> Any:
        """
        Transfers log one line each, at the end (and one debug line as each
        starts): no "starting on" or "(UDP Port N Closed)" per transfer
        port, nothing per packet.
        """
        raw = self.rawClient()
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        for windowsize in (1, 16):
            data = yield self.fetchRaw(raw, "big.bin", windowsize)
            self.assertEqual(data, self.files["big.bin"])
        yield self.waitForEnds(2)
        texts = [e.get("log_format") for e in events]
        self.assertEqual(
            [(e["log_namespace"], e["log_level"].name) for e in events],
            [("pxed.tftp.protocol", "debug"), ("pxed.tftp.protocol", "info")] * 2, texts)

    @defer.inlineCallbacks
    def test_largest_blocks(self) -> Any:
        """65464-byte blocks (over loopback, whose MTU fits them) arrive whole."""
        result = yield self.get("huge.bin", blksize=65464, windowsize=8, tsize=True)
        self.assertEqual(result.data, self.files["huge.bin"])
        self.assertEqual(result.options,
                         {"blksize": "65464", "tsize": "2000000", "windowsize": "8"})
        yield self.waitForEnds(1)
        self.assertEqual(self.ends[0][2].outcome, "complete")

    @defer.inlineCallbacks
    def test_transfer_uses_quiet_port(self) -> Any:
        raw = self.rawClient()
        raw.send(P.ReadRequest("exact.bin"), self.addr)
        _, tid = yield raw.next()
        ((port, transfer),) = self.server._ports.values()
        self.assertIsInstance(port, TransferPort)
        self.assertEqual((port.getHost().host, port.getHost().port), tid)
        raw.send(P.Error(0, "enough"), tid)
        yield self.waitForEnds(1)
        self.assertIsNone(port.socket)
        self.assertIsNone(transfer.transport)


class Recorder(DatagramProtocol):
    def __init__(self) -> None:
        self.got: list[tuple[bytes, Any]] = []
        self.stopped = 0

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.got.append((datagram, addr))

    def stopProtocol(self) -> None:
        self.stopped += 1


class TransferPortTests(TestCase):
    def test_bind_failure(self) -> None:
        """A port that cannot bind says so as Twisted's ports do."""
        port = TransferPort(Recorder(), "192.0.2.1", reactor)
        self.assertRaises(CannotListenError, port.startListening)

    @defer.inlineCallbacks
    def test_round_trip(self) -> Any:
        recorder = Recorder()
        port = listen_transfer(reactor, recorder, LOCAL)
        self.addCleanup(port.stopListening)
        raw = RawClient()
        raw_port = reactor.listenUDP(0, raw, interface=LOCAL)  # type: ignore[attr-defined]
        self.addCleanup(raw_port.stopListening)
        here = (LOCAL, raw_port.getHost().port)
        raw.send(b"\x00\x04\x00\x01", (LOCAL, port.getHost().port))
        for _ in range(100):
            if recorder.got:
                break
            yield deferLater(reactor, 0.01, lambda: None)  # type: ignore[arg-type]
        self.assertEqual(recorder.got, [(b"\x00\x04\x00\x01", here)])
        send = port.sender(here)
        send(P.encode(P.Ack(7)))
        pkt, source = yield raw.next()
        self.assertEqual((pkt, source), (P.Ack(7), (LOCAL, port.getHost().port)))
        port.stopListening()
        self.assertEqual(recorder.stopped, 1)
        send(b"after close")  # dropped, not an error
        port.write(b"after close", here)
        port.stopListening()  # twice is harmless
        self.assertEqual(recorder.stopped, 1)

    @defer.inlineCallbacks
    def test_burst(self) -> Any:
        """
        A burst arrives as separate datagrams, in order, whether it went
        out segmented (UDP_SEGMENT) or one by one; 70 equal ones and a
        short last one take two segmented calls (at most 64 each).
        """
        raw = RawClient()
        raw_port = reactor.listenUDP(0, raw, interface=LOCAL)  # type: ignore[attr-defined]
        self.addCleanup(raw_port.stopListening)
        here = (LOCAL, raw_port.getHost().port)
        # Small ones, so that the receiver's default buffer holds them all.
        burst = [bytes([0, 3, 0, i]) + os.urandom(512) for i in range(70)]
        burst.append(b"\x00\x03\x00\x46" + b"end")
        for gso in (True, False):
            port = listen_transfer(reactor, Recorder(), LOCAL)
            self.addCleanup(port.stopListening)
            port.gso = gso
            port.burst_sender(here)(burst)
            got = []
            for _ in burst:
                d = raw.queue.get()
                d.addTimeout(5, reactor)  # type: ignore[arg-type]
                datagram, _ = yield d
                got.append(datagram)
            self.assertEqual(got, burst)
            self.assertEqual(port.gso, gso)

    def test_burst_fallback(self) -> None:
        """
        A path that refuses segmentation (EIO: no checksum offload;
        EMSGSIZE: a segment over the MTU; EINVAL, ENOPROTOOPT: an older
        kernel) gets the burst one datagram at a time, and the port stops
        trying; a full buffer drops the burst, like loss.
        """

        class Socket:
            def __init__(self, error: int) -> None:
                self.error = error
                self.sent: list[bytes] = []
                self.segmented = 0

            def sendmsg(self, buffers: Any, ancillary: Any, flags: int, addr: Any) -> int:
                self.segmented += 1
                raise OSError(self.error, os.strerror(self.error))

            def sendto(self, datagram: bytes, addr: Any) -> int:
                self.sent.append(datagram)
                return len(datagram)

        burst = [b"a" * 10, b"b" * 10, b"c" * 3]
        refusals = [(e, burst, False) for e in (errno.EIO, errno.EMSGSIZE, errno.EINVAL,
                                                errno.ENOPROTOOPT)]
        for error, sent, gso in [*refusals, (errno.EAGAIN, [], True)]:
            port = TransferPort(Recorder(), LOCAL, reactor)
            fake = Socket(error)
            port.socket = fake  # type: ignore[assignment]
            send_many = port.burst_sender((LOCAL, 9))
            send_many(burst)
            self.assertEqual((fake.sent, port.gso, fake.segmented), (sent, gso, 1))
            send_many(burst)
            self.assertEqual(fake.segmented, 1 if not gso else 2)

    def test_other_reactors(self) -> None:
        """A reactor without file descriptors gets listenUDP."""
        fake = FakeReactor()
        protocol = Recorder()
        listen_transfer(fake, protocol, "10.0.0.5")
        self.assertEqual([(b[0], b[2]) for b in fake.bound], [("10.0.0.5", protocol)])
