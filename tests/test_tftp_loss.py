"""
L{pxed.tftp.session} under packet loss: a simulated lossy link and model
clients, driven by a fake clock, so that retransmission behaviour is
measured deterministically.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from pxed.tftp import packet as P
from pxed.tftp.pacing import Pacing
from pxed.tftp.session import ReadSession, SessionLimits, TransferResult
from pxed.tftp.source import BytesReadable


class LossyLink:
    """One direction of a link: fixed latency, random independent loss."""

    def __init__(self, clock: Clock, rng: random.Random, loss: float, latency: float) -> None:
        self.clock = clock
        self.rng = rng
        self.loss = loss
        self.latency = latency
        self.sent = 0
        self.dropped = 0

    def send(self, deliver: Callable[[bytes], object], datagram: bytes) -> None:
        self.sent += 1
        if self.rng.random() < self.loss:
            self.dropped += 1
            return
        self.clock.callLater(self.latency, deliver, datagram)


class ModelClient:
    """
    A receiver modelled on EDK2's MTFTP4 download: it keeps only the next
    expected block; it ACKs when C{windowsize} blocks arrived since its
    last ACK, or at the final block; every out-of-order block makes it ACK
    the last in-order block again (EDK2 does this for each one); on its own
    timeout it repeats its last ACK.  With C{ack_gap_once}, it ACKs a gap
    only once (as L{pxed.tftp.client} does).
    """

    def __init__(
        self,
        clock: Clock,
        send: Callable[[bytes], object],
        options: dict[str, str],
        timeout: float = 3.0,
        ack_gap_once: bool = False,
    ) -> None:
        self.clock = clock
        self.send = send
        self.requested = options
        self.timeout = timeout
        self.ack_gap_once = ack_gap_once
        self.blksize = 512
        self.windowsize = 1
        self.chunks: list[bytes] = []
        self.received = 0
        self.since_ack = 0
        self.gap_acked = False
        self.done = False
        self.done_at: float | None = None
        self.last_ack = 0
        self.timer: Any = None
        self.arm()

    def arm(self) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        if not self.done:
            self.timer = self.clock.callLater(self.timeout, self.timedOut)

    def timedOut(self) -> None:
        self.timer = None
        self.ack(self.last_ack)

    def ack(self, block: int) -> None:
        self.last_ack = block
        self.since_ack = 0
        self.send(P.encode(P.Ack(block & 0xFFFF)))
        self.arm()

    def receive(self, datagram: bytes) -> None:
        if self.done:
            return
        pkt = P.decode(datagram)
        if isinstance(pkt, P.OptionAck):
            if self.received == 0:
                self.blksize = int(pkt.options.get("blksize", 512))
                self.windowsize = int(pkt.options.get("windowsize", 1))
                self.ack(0)
            return
        assert isinstance(pkt, P.Data), pkt
        if pkt.block != (self.received + 1) & 0xFFFF:
            if not (self.ack_gap_once and self.gap_acked):
                self.gap_acked = True
                self.ack(self.received)
            return
        self.gap_acked = False
        self.received += 1
        self.since_ack += 1
        self.chunks.append(pkt.payload)
        if len(pkt.payload) < self.blksize:
            self.ack(self.received)
            self.done = True
            self.done_at = self.clock.seconds()
            if self.timer is not None and self.timer.active():
                self.timer.cancel()
        elif self.since_ack >= self.windowsize:
            self.ack(self.received)
        else:
            self.arm()


def simulate(
    content: bytes,
    options: dict[str, str],
    loss: float,
    seed: int,
    *,
    limits: SessionLimits | None = None,
    latency: float = 0.0005,
    ack_gap_once: bool = False,
) -> tuple[TransferResult, ModelClient, Clock]:
    """Run one transfer over a lossy link until the session ends."""
    clock = Clock()
    rng = random.Random(seed)
    down = LossyLink(clock, rng, loss, latency)
    up = LossyLink(clock, rng, loss, latency)
    results: list[TransferResult] = []
    holder: dict[str, ReadSession] = {}
    client = ModelClient(
        clock,
        lambda d: up.send(holder["s"].datagramReceived, d),
        options,
        ack_gap_once=ack_gap_once,
    )
    session = ReadSession(
        P.ReadRequest("f", "octet", options),
        BytesReadable(content),
        lambda d: down.send(client.receive, d),
        clock,
        limits or SessionLimits(),
    )
    holder["s"] = session
    session.done.addCallback(results.append)
    session.start()
    while not results:
        calls = clock.getDelayedCalls()
        assert calls, "nothing pending: the transfer is stuck"
        clock.advance(max(0.0, min(c.getTime() for c in calls) - clock.seconds()))
    return results[0], client, clock


CONTENT = random.Random(0).randbytes(1_000_000)


class LossTests(SynchronousTestCase):
    def check(self, result: TransferResult, client: ModelClient) -> None:
        self.assertTrue(client.done)
        self.assertEqual(b"".join(client.chunks), CONTENT)
        # The final ACK itself may be lost, after which the server gives up.
        self.assertIn(result.outcome, ("complete", "timeout"))

    def test_clean(self) -> None:
        """Without loss nothing is retransmitted and the window stays whole."""
        result, client, _ = simulate(CONTENT, {"blksize": "1468", "windowsize": "16"}, 0.0, 1)
        self.check(result, client)
        self.assertEqual(result.outcome, "complete")
        self.assertEqual(result.retransmits, 0)

    def test_tenPercentLoss(self) -> None:
        """
        At 10% loss each way, the bytes retransmitted stay within twice the
        file, for windows from lockstep to far beyond the default.
        """
        for window in (1, 4, 16, 64):
            limits = SessionLimits(max_windowsize=64)
            for seed in range(3):
                result, client, clock = simulate(
                    CONTENT,
                    {"blksize": "1468", "windowsize": str(window)},
                    0.10,
                    seed,
                    limits=limits,
                )
                self.check(result, client)
                self.assertLessEqual(
                    result.bytes_retransmitted, 2 * len(CONTENT), (window, seed, result)
                )
                # The adaptive timeout keeps losses cheap: at a 1 ms round
                # trip, a fixed 1 s timeout would take minutes in lock-step.
                assert client.done_at is not None
                self.assertLess(client.done_at, 30 if window == 1 else 10, (window, seed))

    def test_gapAckedOnce(self) -> None:
        """The same with a client that reports each gap once."""
        for seed in range(3):
            result, client, _ = simulate(
                CONTENT, {"blksize": "1468", "windowsize": "16"}, 0.10, seed, ack_gap_once=True
            )
            self.check(result, client)
            self.assertLessEqual(result.bytes_retransmitted, 2 * len(CONTENT))

    def test_burstLoss(self) -> None:
        """
        A receiver that drops everything beyond 4 blocks in a burst (a
        small receive ring) still gets the file, and the server learns to
        send smaller bursts instead of repeating lost windows.
        """
        clock = Clock()
        results: list[TransferResult] = []
        holder: dict[str, Any] = {}
        ring: list[float] = []

        def toClient(datagram: bytes) -> None:
            # A 4-slot ring drained one packet per 1 ms.
            now = clock.seconds()
            ring[:] = [t for t in ring if t > now]
            if len(ring) >= 4:
                return
            ring.append((ring[-1] if ring else now) + 0.001)
            clock.callLater(0.0005, holder["c"].receive, datagram)

        holder["c"] = client = ModelClient(
            clock,
            lambda d: clock.callLater(0.0005, holder["s"].datagramReceived, d),
            {},
        )
        session = ReadSession(
            P.ReadRequest("f", "octet", {"blksize": "1468", "windowsize": "16"}),
            BytesReadable(CONTENT),
            toClient,
            clock,
            SessionLimits(),
        )
        holder["s"] = session
        session.done.addCallback(results.append)
        session.start()
        while not results:
            calls = clock.getDelayedCalls()
            clock.advance(max(0.0, min(c.getTime() for c in calls) - clock.seconds()))
        self.check(results[0], client)
        self.assertLessEqual(results[0].bytes_retransmitted, len(CONTENT))
        self.assertLess(session.pacing.burst, 16)


class PacingTests(SynchronousTestCase):
    def test_shrinkAndGrow(self) -> None:
        p = Pacing(16)
        self.assertEqual(p.burst, 16)
        for expected in (8, 4, 2, 1, 1):
            p.loss()
            self.assertEqual(p.burst, expected)
        for expected in (2, 4, 8, 16, 16):
            p.clean()
            self.assertEqual(p.burst, expected)
        self.assertEqual(p.losses, 5)

    def test_gap(self) -> None:
        p = Pacing(8, initial_rtt=0.002, max_gap=0.05)
        self.assertEqual(p.gap, 0.002)
        p.sample(0.010)
        self.assertEqual(p.gap, 0.010)
        p.sample(0.018)
        self.assertEqual(p.gap, 0.011)
        p.sample(10)  # an outlier moves the estimate only so far
        self.assertLess(p.gap, 0.02)
        for _ in range(20):
            p.sample(10)
        self.assertEqual(p.gap, 0.05)
        q = Pacing(8)
        q.sample(0)
        self.assertEqual(q.gap, 0.0005)

    def test_growsBackWhenClean(self) -> None:
        """In a session: a loss shrinks the burst, clean windows restore it."""
        clock = Clock()
        wire: list[bytes] = []
        s = ReadSession(
            P.ReadRequest("f", "octet", {"blksize": "8", "windowsize": "8"}),
            BytesReadable(b"x" * 8000),
            wire.append,
            clock,
        )
        s.start()
        s.datagramReceived(P.encode(P.Ack(0)))
        s.datagramReceived(P.encode(P.Ack(3)))  # gap after block 3
        self.assertEqual(s.pacing.burst, 4)
        acked = 3
        for _ in range(3):
            acked += 8
            while s.pending and not any(P.decode(d) == P.Data(acked, b"x" * 8) for d in wire):
                clock.advance(s.pacing.gap)
            s.datagramReceived(P.encode(P.Ack(acked)))
        self.assertEqual(s.pacing.burst, 8)


class InvariantTests(SynchronousTestCase):
    """Whatever the client does, a session never hangs around forever."""

    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(
            st.one_of(
                st.tuples(st.just("ack"), st.integers(0, 40)),
                st.tuples(st.just("wait"), st.floats(0, 2)),
                st.tuples(st.just("junk"), st.binary(max_size=8)),
            ),
            max_size=60,
        ),
        st.sampled_from([{}, {"blksize": "8"}, {"blksize": "8", "windowsize": "4", "tsize": "0"}]),
    )
    def test_alwaysPendingThenEnds(
        self, events: list[tuple[str, Any]], options: dict[str, str]
    ) -> None:
        clock = Clock()
        readable = BytesReadable(b"y" * 200)
        s = ReadSession(
            P.ReadRequest("f", "octet", options),
            readable,
            lambda d: None,
            clock,
            SessionLimits(retries=3, patience=0),
        )
        results: list[TransferResult] = []
        s.done.addCallback(results.append)
        s.start()
        for kind, value in events:
            if kind == "ack":
                s.datagramReceived(P.encode(P.Ack(value)))
            elif kind == "wait":
                clock.advance(value)
            else:
                s.datagramReceived(value)
            self.assertEqual(s.finished, bool(results))
            if not s.finished:
                self.assertTrue(s.pending)
        # With no more input, it gives up within (retries + 1) timeouts.
        clock.advance(4.0)
        for _ in range(100):
            if results:
                break
            clock.advance(0.05)
        self.assertEqual(len(results), 1)
        self.assertEqual(clock.getDelayedCalls(), [])
