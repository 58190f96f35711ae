"""
Tests for L{pxed.tftp.session}: the transfer state machine, driven with a
fake clock and a list standing in for the network.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pxed.tftp import packet as P
from pxed.tftp.deadline import Deadline
from pxed.tftp.session import (
    Negotiated,
    ReadSession,
    SessionLimits,
    TransferResult,
    negotiate,
)
from pxed.tftp.source import READ_AHEAD, BytesReadable


class RecordingReadable(BytesReadable):
    """In-memory content that records reads and closing."""

    def __init__(self, content: bytes, size: int | None = -1, fail_at: int | None = None) -> None:
        super().__init__(content)
        if size != -1:
            self.size = size
        self.reads: list[tuple[int, int]] = []
        self.closed = 0
        self.fail_at = fail_at

    def read(self, offset: int, length: int) -> bytes:
        self.reads.append((offset, length))
        if self.fail_at is not None and offset + length > self.fail_at:
            raise OSError("disk on fire")
        return super().read(offset, length)

    def close(self) -> None:
        self.closed += 1


class Harness:
    """A session plus everything it talks to."""

    def __init__(
        self,
        content: bytes,
        options: dict[str, str] | None = None,
        limits: SessionLimits | None = None,
        **readable_kw: object,
    ) -> None:
        self.content = content
        self.clock = Clock()
        self.wire: list[bytes] = []
        self.readable = RecordingReadable(content, **readable_kw)  # type: ignore[arg-type]
        request = P.ReadRequest("file", "octet", options or {})
        self.session = ReadSession(
            request, self.readable, self.wire.append, self.clock, limits, peer=("127.0.0.1", 9)
        )
        self.results: list[TransferResult] = []
        self.session.done.addCallback(self.results.append)
        self.session.start()

    def take(self) -> list[P.Packet]:
        """The packets sent since the last call."""
        packets = [P.decode(d) for d in self.wire]
        del self.wire[:]
        return packets

    def ack(self, block: int) -> list[P.Packet]:
        self.session.datagramReceived(P.encode(P.Ack(block & 0xFFFF)))
        return self.take()

    @property
    def result(self) -> TransferResult:
        assert len(self.results) == 1, self.results
        return self.results[0]

    def run(self) -> bytes:
        """
        Act as a perfect client: ACK each window's last block until the
        short block.  Returns the payload received.
        """
        received = []
        pending = self.take()
        if pending and isinstance(pending[0], P.OptionAck):
            pending = self.ack(0)
        while pending:
            for pkt in pending:
                assert isinstance(pkt, P.Data), pkt
                received.append(pkt.payload)
            last = pending[-1]
            assert isinstance(last, P.Data)
            pending = self.ack(last.block)
        return b"".join(received)


def data(block: int, payload: bytes) -> P.Data:
    return P.Data(block, payload)


class NegotiateTests(SynchronousTestCase):
    """Option negotiation as a pure function."""

    limits = SessionLimits()

    def test_none(self) -> None:
        self.assertEqual(negotiate({}, 100, self.limits), Negotiated(512, 1, 1.0, None, {}))

    def test_all(self) -> None:
        n = negotiate(
            {"blksize": "1468", "tsize": "0", "windowsize": "4", "timeout": "3", "foo": "x"},
            850528,
            self.limits,
        )
        self.assertEqual(
            n.oack, {"blksize": "1468", "tsize": "850528", "windowsize": "4", "timeout": "3"}
        )
        self.assertEqual((n.blksize, n.windowsize, n.timeout, n.tsize), (1468, 4, 3.0, 850528))

    def test_blksizeClamp(self) -> None:
        for requested, granted in [
            ("8", 8),
            ("1456", 1456),
            ("1468", 1468),
            ("1469", 1468),
            ("65464", 1468),
            ("99999", 1468),
        ]:
            self.assertEqual(negotiate({"blksize": requested}, 1, self.limits).blksize, granted)
        big = SessionLimits(max_blksize=100000)
        self.assertEqual(negotiate({"blksize": "70000"}, 1, big).oack, {"blksize": "65464"})

    def test_invalidIgnored(self) -> None:
        """Invalid values are left out of the OACK rather than refused."""
        for options in [
            {"blksize": "7"},
            {"blksize": "0"},
            {"blksize": "abc"},
            {"blksize": "-1"},
            {"blksize": ""},
            {"timeout": "0"},
            {"timeout": "256"},
            {"windowsize": "0"},
            {"windowsize": "65536"},
            {"tsize": "x"},
            {"multicast": ""},
        ]:
            self.assertEqual(negotiate(options, 10, self.limits).oack, {}, options)

    def test_tsizeUnknownSize(self) -> None:
        self.assertEqual(negotiate({"tsize": "0"}, None, self.limits).oack, {})

    def test_windowsizeCap(self) -> None:
        self.assertEqual(negotiate({"windowsize": "64"}, 1, self.limits).oack, {"windowsize": "16"})
        one = SessionLimits(max_windowsize=1)
        self.assertEqual(negotiate({"windowsize": "8"}, 1, one).windowsize, 1)


class ReadSessionTests(SynchronousTestCase):
    def test_noOptions(self) -> None:
        """Without options the transfer starts with DATA 1 in 512-byte blocks."""
        h = Harness(bytes(range(256)) * 5)
        self.assertEqual(h.take(), [data(1, h.content[:512])])
        self.assertEqual(h.ack(1), [data(2, h.content[512:1024])])
        self.assertEqual(h.ack(2), [data(3, h.content[1024:])])
        self.assertEqual(h.ack(3), [])
        self.assertEqual(h.result.outcome, "complete")
        self.assertEqual(h.result.bytes_sent, 1280)
        self.assertEqual(h.result.blocks, 3)
        self.assertEqual(h.readable.closed, 1)
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_oack(self) -> None:
        """Accepted options are acknowledged; DATA waits for ACK 0."""
        h = Harness(b"x" * 5000, {"blksize": "1468", "tsize": "0", "windowsize": "4", "x": "y"})
        self.assertEqual(
            h.take(), [P.OptionAck({"blksize": "1468", "tsize": "5000", "windowsize": "4"})]
        )
        self.assertEqual(h.ack(1), [])  # not what the OACK asks for
        self.assertEqual(
            h.ack(0),
            [data(1, b"x" * 1468), data(2, b"x" * 1468), data(3, b"x" * 1468), data(4, b"x" * 596)],
        )
        self.assertEqual(h.ack(4), [])
        self.assertEqual(h.result.outcome, "complete")
        self.assertEqual((h.result.blksize, h.result.windowsize, h.result.tsize), (1468, 4, 5000))

    def test_onlyInvalidOptions(self) -> None:
        """When no option is accepted there is no OACK (RFC 2347)."""
        h = Harness(b"abc", {"blksize": "2", "foo": "bar"})
        self.assertEqual(h.take(), [data(1, b"abc")])

    def test_blksizeClamped(self) -> None:
        h = Harness(b"z" * 3000, {"blksize": "65464"})
        self.assertEqual(h.take(), [P.OptionAck({"blksize": "1468"})])
        self.assertEqual(h.ack(0), [data(1, b"z" * 1468)])
        self.assertEqual(h.ack(1), [data(2, b"z" * 1468)])
        self.assertEqual(h.ack(2), [data(3, b"z" * 64)])

    def test_exactMultiple(self) -> None:
        """A file that is a multiple of blksize ends with an empty block."""
        h = Harness(b"a" * 1024)
        self.assertEqual(h.take(), [data(1, b"a" * 512)])
        self.assertEqual(h.ack(1), [data(2, b"a" * 512)])
        self.assertEqual(h.ack(2), [data(3, b"")])
        self.assertEqual(h.ack(3), [])
        self.assertEqual(h.result.outcome, "complete")
        self.assertEqual(h.result.bytes_sent, 1024)

    def test_exactMultipleWindowed(self) -> None:
        h = Harness(b"a" * 64, {"blksize": "16", "windowsize": "8"})
        h.take()
        self.assertEqual(h.ack(0), [data(i, b"a" * 16) for i in range(1, 5)] + [data(5, b"")])

    def test_emptyFile(self) -> None:
        h = Harness(b"")
        self.assertEqual(h.take(), [data(1, b"")])
        h.ack(1)
        self.assertEqual(h.result.outcome, "complete")

    def test_rollover(self) -> None:
        """Block numbers wrap from 65535 to 0 on files over 65535 blocks."""
        content = bytes(range(256)) * (70001 * 8 // 256) + b"tail"
        h = Harness(content, {"blksize": "8", "windowsize": "16"})
        self.assertEqual(h.run(), content)
        self.assertEqual(h.result.outcome, "complete")
        self.assertEqual(h.result.blocks, len(content) // 8 + 1)
        self.assertEqual(h.result.bytes_sent, len(content))

    def test_rolloverLockstep(self) -> None:
        content = b"r" * (8 * 65536 + 3)
        h = Harness(content, {"blksize": "8"})
        h.take()
        numbers = []
        pending = h.ack(0)
        while pending:
            (pkt,) = pending
            assert isinstance(pkt, P.Data)
            numbers.append(pkt.block)
            pending = h.ack(pkt.block)
        self.assertEqual(numbers[65533:], [65534, 65535, 0, 1])
        self.assertEqual(h.result.outcome, "complete")

    def test_retransmitOnTimeout(self) -> None:
        h = Harness(b"q" * 600)
        self.assertEqual(h.take(), [data(1, b"q" * 512)])
        h.clock.advance(0.9)
        self.assertEqual(h.take(), [])
        h.clock.advance(0.1)
        self.assertEqual(h.take(), [data(1, b"q" * 512)])
        self.assertEqual(h.ack(1), [data(2, b"q" * 88)])
        h.ack(2)
        self.assertEqual(h.result.retransmits, 1)
        self.assertEqual(h.result.bytes_retransmitted, 512)

    def test_retransmitWindow(self) -> None:
        """A timeout resends the whole unacknowledged window."""
        h = Harness(b"w" * 100, {"blksize": "10", "windowsize": "4"})
        h.take()
        first = h.ack(0)
        self.assertEqual([p.block for p in first], [1, 2, 3, 4])  # type: ignore[union-attr]
        h.clock.advance(1)
        # After a loss the window goes out in smaller bursts (see Pacing).
        self.assertEqual(h.take(), first[:2])
        h.clock.advance(h.session.pacing.gap)
        self.assertEqual(h.take(), first[2:])

    def test_negotiatedTimeout(self) -> None:
        h = Harness(b"t", {"timeout": "3"})
        h.take()
        h.clock.advance(2.5)
        self.assertEqual(h.take(), [])
        h.clock.advance(0.5)
        self.assertEqual(h.take(), [P.OptionAck({"timeout": "3"})])

    def test_oackRetransmitted(self) -> None:
        h = Harness(b"t", {"tsize": "0"})
        oack = h.take()
        h.clock.advance(1)
        self.assertEqual(h.take(), oack)

    def test_retryLimit(self) -> None:
        """After the retry limit the session gives up and says so."""
        h = Harness(b"x" * 2000, limits=SessionLimits(retries=3, patience=0))
        h.take()
        h.ack(1)
        for _ in range(3):
            h.clock.advance(1)
            self.assertEqual(h.take(), [data(2, b"x" * 512)])
        self.assertEqual(h.results, [])
        h.clock.advance(1)
        self.assertEqual(h.take(), [P.Error(P.ERR_UNDEFINED, "Timeout")])
        self.assertEqual(h.result.outcome, "timeout")
        self.assertEqual(h.result.retransmits, 3)
        self.assertEqual(h.readable.closed, 1)
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_neverAckedGetsOneRetransmission(self) -> None:
        """
        A client that acknowledges nothing (perhaps a spoofed request) gets
        its first packet twice, then nothing at all: no more DATA, no ERROR.
        """
        for options, first in (({}, data(1, b"x" * 512)),
                               ({"blksize": "1024"}, P.OptionAck({"blksize": "1024"}))):
            h = Harness(b"x" * 5000, options, limits=SessionLimits(retries=5, patience=30))
            self.assertEqual(h.take(), [first])
            h.clock.pump([0.5] * 100)
            self.assertEqual(h.take(), [first])
            self.assertEqual(h.result.outcome, "timeout")
            self.assertLessEqual(h.clock.seconds(), 50.0)
            self.assertEqual(h.result.error, "client never answered")
            self.assertEqual(h.result.retransmits, 1)
            self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_lateFirstAckStillServed(self) -> None:
        """
        After its two first answers, a client's late ACK (within the quiet
        time) still gets the transfer going, as does a repeated request.
        """
        h = Harness(b"x" * 5000, limits=SessionLimits(retries=5, patience=30))
        h.take()
        h.clock.pump([1, 1, 1])
        self.assertEqual(h.take(), [data(1, b"x" * 512)])
        self.assertEqual(h.results, [])
        self.assertEqual(h.ack(1), [data(2, b"x" * 512)])
        again = Harness(b"x" * 5000, limits=SessionLimits(retries=5, patience=30))
        again.take()
        again.clock.pump([1, 1, 1])
        again.take()
        again.session.request_again()
        self.assertEqual(again.take(), [data(1, b"x" * 512)])
        again.clock.pump([1, 1])
        self.assertEqual(again.take(), [data(1, b"x" * 512)])  # its one retransmission
        again.clock.pump([1] * 10)
        self.assertEqual(again.take(), [])
        self.assertEqual(again.result.error, "client never answered")

    def test_ackAfterClientRetransmitTimerServed(self) -> None:
        """
        A client whose ACKs of both copies of DATA 1 were lost resends it on
        its own 5 s timer, restarted by the second copy: that ACK, 5.5 s
        after the copy, still gets the transfer going (tftp-hpa under loss).
        """
        h = Harness(b"x" * 5000, limits=SessionLimits(timeout=1.0, retries=5, patience=30))
        self.assertEqual(h.take(), [data(1, b"x" * 512)])
        h.clock.advance(1)
        self.assertEqual(h.take(), [data(1, b"x" * 512)])
        h.clock.pump([0.5] * 11)
        self.assertEqual(h.take(), [])
        self.assertEqual(h.results, [])
        self.assertEqual(h.ack(1), [data(2, b"x" * 512)])

    def test_progressResetsRetries(self) -> None:
        h = Harness(b"x" * 2000, limits=SessionLimits(retries=1))
        h.take()
        h.clock.advance(1)
        h.ack(1)
        h.clock.advance(1)
        self.assertEqual(h.results, [])
        self.assertEqual(h.take(), [data(2, b"x" * 512)])

    def test_duplicateAckIgnored(self) -> None:
        """No Sorcerer's Apprentice: a repeated ACK does not resend."""
        h = Harness(b"d" * 2000)
        h.take()
        self.assertEqual(h.ack(1), [data(2, b"d" * 512)])
        for _ in range(3):
            self.assertEqual(h.ack(1), [])
        self.assertEqual(h.ack(2), [data(3, b"d" * 512)])

    def test_duplicateAckWindowIgnored(self) -> None:
        h = Harness(b"d" * 200, {"blksize": "10", "windowsize": "4"})
        h.take()
        h.ack(0)
        self.assertEqual(len(h.ack(4)), 4)
        for _ in range(3):
            self.assertEqual(h.ack(4), [])
            self.assertEqual(h.ack(0), [])
        self.assertEqual(h.session.retransmits, 0)

    def test_staleAndFutureAcksIgnored(self) -> None:
        h = Harness(b"d" * 2000)
        h.take()
        h.ack(1)
        h.ack(2)
        self.assertEqual(h.ack(1), [])  # older
        self.assertEqual(h.ack(9), [])  # never sent
        self.assertEqual(h.ack(3), [data(4, b"d" * 464)])

    def test_partialWindowAck(self) -> None:
        """An ACK inside the window resumes right after it (RFC 7440)."""
        h = Harness(b"p" * 100, {"blksize": "10", "windowsize": "4"})
        h.take()
        h.ack(0)
        self.assertEqual([p.block for p in h.ack(2)], [3, 4])  # type: ignore[union-attr]
        h.clock.advance(h.session.pacing.gap)
        self.assertEqual([p.block for p in h.take()], [5, 6])  # type: ignore[union-attr]
        self.assertEqual(h.session.retransmits, 2)

    def test_clientError(self) -> None:
        """An ERROR from the client ends the transfer without a reply."""
        h = Harness(b"x" * 2000)
        h.take()
        h.session.datagramReceived(P.encode(P.Error(P.ERR_UNDEFINED, "cancelled")))
        self.assertEqual(h.take(), [])
        self.assertEqual(h.result.outcome, "aborted")
        self.assertEqual(h.result.error, "client error 0: cancelled")
        self.assertEqual(h.readable.closed, 1)
        h.clock.advance(10)
        self.assertEqual(h.take(), [])

    def test_uefiTsizeProbe(self) -> None:
        """OVMF asks for tsize, then aborts with ERROR 8 (capture)."""
        h = Harness(b"e" * 850528, {"tsize": "0", "blksize": "1468", "windowsize": "4"})
        self.assertEqual(
            h.take(), [P.OptionAck({"blksize": "1468", "tsize": "850528", "windowsize": "4"})]
        )
        h.session.datagramReceived(
            P.encode(P.Error(P.ERR_OPTION_NEGOTIATION, "User aborted the transfer"))
        )
        self.assertEqual(h.take(), [])
        self.assertEqual(h.result.outcome, "aborted")
        self.assertEqual(h.result.bytes_sent, 0)
        self.assertEqual(h.readable.reads, [])

    def test_abort(self) -> None:
        h = Harness(b"x" * 2000)
        h.take()
        h.session.abort("Server shutting down")
        self.assertEqual(h.take(), [P.Error(0, "Server shutting down")])
        self.assertEqual(h.result.outcome, "aborted")
        h.session.abort("again")
        self.assertEqual(h.take(), [])

    def test_readError(self) -> None:
        # Blocks 1..32 come from the first read (READ_AHEAD bytes); block
        # 33 needs a second one, which fails.
        h = Harness(b"x" * 20000, fail_at=READ_AHEAD + 1)
        self.assertEqual(h.take(), [data(1, b"x" * 512)])
        for block in range(1, 32):
            self.assertEqual(h.ack(block), [data(block + 1, b"x" * 512)])
        self.assertEqual(h.ack(32), [P.Error(0, "Read error")])
        self.assertEqual(h.result.outcome, "error")
        self.assertEqual(h.readable.closed, 1)
        self.flushLoggedErrors(OSError)

    def test_ignoresJunk(self) -> None:
        """Malformed and unexpected packets from the client are ignored."""
        h = Harness(b"x" * 2000)
        h.take()
        for junk in [
            b"",
            b"\x00",
            b"\x00\x09",
            P.encode(P.Data(1, b"x")),
            P.encode(P.ReadRequest("f")),
        ]:
            h.session.datagramReceived(junk)
        self.assertEqual(h.take(), [])
        self.assertEqual(h.ack(1), [data(2, b"x" * 512)])

    def test_sendMany(self) -> None:
        """
        Given a burst sender, each window goes out as one list, in order;
        a single packet (the OACK, a lone last block) goes through send.
        """
        clock = Clock()
        single: list[bytes] = []
        bursts: list[list[bytes]] = []
        content = bytes(range(95))
        session = ReadSession(P.ReadRequest("f", "octet", {"blksize": "10", "windowsize": "4"}),
                              RecordingReadable(content), single.append, clock,
                              send_many=bursts.append)
        session.start()
        for block in (0, 4, 8):
            session.datagramReceived(P.encode(P.Ack(block)))
        self.assertEqual([P.decode(d) for d in single],
                         [P.OptionAck({"blksize": "10", "windowsize": "4"})])
        self.assertEqual([[P.decode(d) for d in burst] for burst in bursts], [
            [data(n, content[(n - 1) * 10 : n * 10]) for n in range(1, 5)],
            [data(n, content[(n - 1) * 10 : n * 10]) for n in range(5, 9)],
            [data(9, content[80:90]), data(10, content[90:])],
        ])
        session.datagramReceived(P.encode(P.Ack(10)))
        self.assertEqual(self.successResultOf(session.done).outcome, "complete")

    def test_sendFailure(self) -> None:
        """A send that raises is treated like a lost packet."""
        clock = Clock()
        calls: list[bytes] = []

        def send(datagram: bytes) -> None:
            calls.append(datagram)
            if len(calls) == 1:
                raise OSError("network unreachable")

        session = ReadSession(P.ReadRequest("f"), RecordingReadable(b"abc"), send, clock)
        session.start()
        clock.advance(1)
        self.assertEqual(calls, [P.encode(data(1, b"abc"))] * 2)
        self.flushLoggedErrors(OSError)

    def test_duration(self) -> None:
        h = Harness(b"x" * 600)
        h.take()
        h.clock.advance(0.25)
        h.ack(1)
        h.clock.advance(0.25)
        h.ack(2)
        self.assertEqual(h.result.duration, 0.5)

    def test_chunkedReads(self) -> None:
        """
        Content is read a window at a time (at least READ_AHEAD bytes),
        not block by block or whole.
        """
        h = Harness(b"c" * 100_000, {"blksize": "1000", "windowsize": "32"},
                    SessionLimits(max_windowsize=32))
        self.assertEqual(h.run(), b"c" * 100_000)
        self.assertTrue(all(length == 32_000 for _, length in h.readable.reads))
        self.assertEqual(len(h.readable.reads), 4)
        lockstep = Harness(b"c" * 100_000, {"blksize": "1000"})
        self.assertEqual(lockstep.run(), b"c" * 100_000)
        self.assertEqual({length for _, length in lockstep.readable.reads}, {16_000})
        self.assertEqual(len(lockstep.readable.reads), 7)

    def test_unknownSize(self) -> None:
        """Without a size, tsize is not answered, but the transfer works."""
        h = Harness(b"u" * 700, {"tsize": "0", "blksize": "512"}, size=None)
        self.assertEqual(h.take(), [P.OptionAck({"blksize": "512"})])
        h.ack(0)
        self.assertEqual(h.ack(1), [data(2, b"u" * 188)])


class DeadlineTests(SynchronousTestCase):
    """The retransmission timer: moved on every ACK, fired once when due."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.fired: list[float] = []
        self.deadline = Deadline(self.clock, lambda: self.fired.append(self.clock.seconds()))

    def test_later_is_cheap(self) -> None:
        """Moving the time later keeps the one reactor call, which waits again."""
        self.deadline.set(1.0, 0.0)
        (call,) = self.clock.getDelayedCalls()
        for now in (0.2, 0.4, 0.6):
            self.clock.advance(0.2)
            self.deadline.set(now + 1.0, now)
        self.assertEqual(self.clock.getDelayedCalls(), [call])
        self.clock.advance(0.4)  # t = 1.0: the call finds 0.6 s left
        self.assertEqual(self.fired, [])
        self.clock.advance(0.6)
        self.assertEqual(self.fired, [1.6])
        self.assertFalse(self.deadline.pending)

    def test_sooner_moves_the_call(self) -> None:
        self.deadline.set(1.0, 0.0)
        self.deadline.set(0.02, 0.0)
        self.clock.advance(0.02)
        self.assertEqual(self.fired, [0.02])
        self.clock.advance(2)
        self.assertEqual(self.fired, [0.02])

    def test_clear_and_cancel(self) -> None:
        self.deadline.set(1.0, 0.0)
        self.deadline.clear()
        self.assertTrue(self.deadline.pending)
        self.clock.advance(1)
        self.assertEqual((self.fired, self.deadline.pending), ([], False))
        self.deadline.set(2.0, 1.0)
        self.deadline.cancel()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(5)
        self.assertEqual(self.fired, [])


class AdaptiveTimeoutTests(SynchronousTestCase):
    """The retransmission timeout follows the measured round trip."""

    def test_shortAfterSample(self) -> None:
        h = Harness(b"x" * 5000)
        h.take()
        h.clock.advance(0.01)
        self.assertEqual(h.ack(1), [data(2, b"x" * 512)])
        # srtt 0.01, rttvar 0.005: RTO 0.01 + 4 * 0.005 = 0.03
        h.clock.advance(0.029)
        self.assertEqual(h.take(), [])
        h.clock.advance(0.001)
        self.assertEqual(h.take(), [data(2, b"x" * 512)])

    def test_backoffAndGiveUp(self) -> None:
        """
        Consecutive timeouts double up to the ceiling; after `retries` at the
        ceiling the server waits silently until its patience runs out.
        """
        h = Harness(b"x" * 5000, limits=SessionLimits(retries=5))
        h.take()
        h.ack(1)
        h.take()
        times = []
        while not h.results:
            h.clock.advance(min(c.getTime() for c in h.clock.getDelayedCalls()) - h.clock.seconds())
            if h.take():
                times.append(round(h.clock.seconds(), 6))
        # From MIN_RTO (0.02) doubling to the 1 s ceiling, five at the
        # ceiling, then silence until 30 s.
        self.assertEqual(
            times, [0.02, 0.06, 0.14, 0.3, 0.62, 1.26, 2.26, 3.26, 4.26, 5.26, 6.26, 30.0]
        )
        self.assertEqual(h.result.outcome, "timeout")
        self.assertEqual(h.result.duration, 30.0)

    def test_lateAckAfterSilence(self) -> None:
        """A client that repeats its ACK only on its own slow timer is not dropped."""
        h = Harness(b"x" * 5000, limits=SessionLimits(retries=2))
        h.take()
        self.assertEqual(h.ack(1), [data(2, b"x" * 512)])
        h.clock.pump([1] * 10)
        # Quick retransmissions at the measured round trip, two at the full
        # timeout, then silence until the client's own timer.
        self.assertGreaterEqual(len(h.take()), 2)
        h.clock.pump([1] * 10)
        self.assertEqual(h.take(), [])
        self.assertEqual(h.results, [])
        self.assertEqual(h.ack(2), [data(3, b"x" * 512)])

    def test_negotiatedTimeoutIsFixed(self) -> None:
        h = Harness(b"x" * 5000, {"timeout": "2"})
        h.take()
        h.ack(0)
        h.clock.advance(1.99)
        self.assertEqual(h.take(), [])
        h.clock.advance(0.01)
        self.assertEqual(h.take(), [data(1, b"x" * 512)])

    def test_oackRoundTrip(self) -> None:
        """The OACK/ACK 0 exchange gives the first sample."""
        h = Harness(b"x" * 5000, {"blksize": "512"})
        h.take()
        h.clock.advance(0.002)
        h.ack(0)
        self.assertEqual(h.session.pacing.srtt, 0.002)
        h.clock.advance(0.05)
        self.assertEqual(h.take(), [data(1, b"x" * 512)])

    def test_lateAckNotSampled(self) -> None:
        """An ACK arriving when the timer would fire is the client's timer, not the path."""
        h = Harness(b"x" * 5000, {"blksize": "512"})
        h.take()
        h.clock.advance(0.999)
        h.ack(0)
        self.assertIsNone(h.session.pacing.srtt)

    def test_gapAckOnlyLowers(self) -> None:
        """A gap ACK may lower the round-trip estimate, never raise it."""
        h = Harness(b"x" * 50000, {"blksize": "512", "windowsize": "8"})
        h.take()
        h.clock.advance(0.3)
        h.ack(0)
        self.assertEqual(h.session.pacing.srtt, 0.3)
        h.take()
        h.clock.advance(0.01)
        h.ack(3)  # gap after block 3, 10 ms after it was sent
        self.assertAlmostEqual(h.session.pacing.srtt, 0.01)
        h.clock.advance(h.session.pacing.gap * 8)
        h.take()
        h.clock.advance(0.2)
        h.ack(5)  # a slow gap ACK does not raise it
        self.assertAlmostEqual(h.session.pacing.srtt, 0.01)
