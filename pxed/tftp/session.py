# -*- test-case-name: tests.test_tftp_session -*-
"""
The server side of one TFTP read transfer, as a state machine.

L{ReadSession} knows nothing about sockets: it is given the request, the
opened content, a C{send} callable and a clock, and is fed the packets the
client sends.  That is what lets the tests drive every corner (timeouts,
lost and duplicated ACKs, block-number rollover) deterministically with a
L{twisted.internet.task.Clock} and a list standing in for the network.

Block numbers are tracked internally as unbounded integers and only reduced
to 16 bits on the wire, so files with more than 65535 blocks simply wrap
(block 65536 is sent as 0, the convention tftp-hpa and EDK2 accept).

Retransmission follows the measured round trip (L{Pacing}), doubling at
each consecutive timeout up to the configured timeout; after C{retries}
retransmissions at that ceiling the session waits silently for the
client's own retransmission, and gives up after C{patience} seconds
without progress.  How windows are sent and timed lives in
L{pxed.tftp.retransmit}; this module handles the client's packets.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from . import packet as P
from .deadline import Deadline
from .options import (
    DEFAULT_BLKSIZE,
    MAX_BLKSIZE,
    MIN_BLKSIZE,
    Negotiated,
    SessionLimits,
    TransferResult,
    negotiate,
)
from .pacing import Pacing
from .retransmit import RetransmittingWindow
from .source import BlockReader, IReadable

__all__ = ["SessionLimits", "Negotiated", "TransferResult", "negotiate", "ReadSession",
           "MIN_BLKSIZE", "MAX_BLKSIZE", "DEFAULT_BLKSIZE"]

log = Logger()


class ReadSession(RetransmittingWindow):
    """
    Serve one read request.

    The session owns C{readable} once started and closes it when it ends.
    C{done} fires (never errbacks) with a L{TransferResult} exactly once.

    Duplicate and stale ACKs are ignored: only a timeout causes a
    retransmission.  Answering every duplicate ACK with a new DATA packet is
    the "Sorcerer's Apprentice" bug of RFC 1350, where one delayed packet
    doubles the traffic for the rest of the transfer (and EDK2 sends one
    duplicate ACK per out-of-order block).  An ACK for a block in the
    middle of the window in flight means the client saw a gap there
    (RFC 7440), so sending resumes right after it.  How a window is spread
    over time after losses is L{Pacing}'s business.

    Invariant: until the session ends, either the retransmission timer or
    the next-burst timer is pending, so no session can be left behind.

    C{send_many}, if given, sends a burst of DATA packets (all of one size
    but the last) at once, which a transport can do in one system call
    (see L{pxed.tftp.transfer.TransferPort.burst_sender}); otherwise each
    packet goes through C{send}.
    """

    def __init__(
        self,
        request: P.ReadRequest,
        readable: IReadable,
        send: Callable[[bytes], object],
        clock: IReactorTime,
        limits: SessionLimits | None = None,
        *,
        peer: tuple[str, int] | None = None,
        send_many: Callable[[list[bytes]], object] | None = None,
    ) -> None:
        self.request = request
        self.peer = peer
        self.limits = limits or SessionLimits()
        self.done: Deferred[TransferResult] = Deferred()
        self._readable = readable
        self._send = send
        self._send_many = send_many
        self._clock = clock
        self.negotiated = negotiate(request.options, readable.size, self.limits)
        self.blksize = self.negotiated.blksize
        self.windowsize = self.negotiated.windowsize
        self.pacing = Pacing(self.windowsize)
        self._timeout = self.negotiated.timeout
        # A timeout the client negotiated is used as is (RFC 2349); otherwise
        # the retransmission timeout adapts to the measured round trip.
        self._adaptive = "timeout" not in self.negotiated.oack
        self._progress_at = 0.0
        self._oack_sent_at: float | None = None
        # Absolute (unwrapped) block numbers.
        self._acked = 0
        self._highest_sent = 0
        self._last: int | None = None
        self._last_len = 0
        # The window being sent ends at _window_end; the blocks before
        # _next_send have gone out.
        self._window_end = 0
        self._next_send = 1
        # When each unacknowledged block was sent, or None once it has been
        # sent twice (Karn: its ACK cannot be matched to one transmission).
        self._sent_at: dict[int, float | None] = {}
        self._oack_pending = False
        self._retries = 0
        self._full_retries = 0
        # When to retransmit (nothing is due while a window is being sent).
        self._rto = Deadline(clock, self._timedOut)
        self._max_retries = self.limits.retries
        self._patience = max(self.limits.patience, (self.limits.retries + 1) * self._timeout)
        self._send_failed = False
        self._burst_timer: IDelayedCall | None = None
        self._finished = False
        self._started_at = 0.0
        self.retransmits = 0
        self.bytes_retransmitted = 0
        # The first answer, while the client has acknowledged nothing: how
        # often it went out (at most twice per request), when first and last.
        self._first_sends = 0
        self._first_sent_at = self._first_last_at = 0.0
        self._blocks = BlockReader(readable, self.blksize, self.windowsize)

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def pending(self) -> bool:
        """Whether a timer is pending (always, until the session ends)."""
        burst = self._burst_timer
        return self._rto.pending or (burst is not None and burst.active())

    def start(self) -> None:
        """Send the OACK, or DATA 1 when no option was accepted."""
        now = self._started_at = self._progress_at = self._clock.seconds()
        self._first_sends, self._first_sent_at = 1, now
        self._first_last_at = now
        if self.negotiated.oack:
            self._oack_pending = True
            self._send_oack()
            self._oack_sent_at = now
            self._arm(now)
        else:
            self._send_window(1, now)
        self._quiet_cap(now)

    # Incoming packets.  Nothing here logs per packet: twistd writes debug
    # lines too, and a client could fill the log (and slow every transfer).

    def datagramReceived(self, datagram: bytes) -> None:
        """Handle a datagram from the client's transfer ID."""
        # Nearly every datagram is an ACK: read it without a packet object.
        if len(datagram) >= 4 and datagram[1] == P.OP_ACK and datagram[0] == 0:
            if not self._finished:
                self._ackReceived(datagram[2] << 8 | datagram[3])
            return
        try:
            pkt = P.decode(datagram)
        except P.MalformedPacket:
            return
        self.packetReceived(pkt)

    def packetReceived(self, pkt: P.Packet) -> None:
        if self._finished:
            return
        if isinstance(pkt, P.Ack):
            self._ackReceived(pkt.block)
        elif isinstance(pkt, P.Error):
            log.debug("client {peer} ended the transfer of {filename}: error {code} {message}",
                      peer=self.peer, filename=self.request.filename, code=pkt.code,
                      message=pkt.message)
            self._finish("aborted", f"client error {pkt.code}: {pkt.message}")

    def _ackReceived(self, wire: int) -> None:
        now = self._clock.seconds()
        if self._oack_pending:
            if wire != 0:
                return  # a stray ACK while waiting for ACK 0
            self._oack_pending = False
            if self._oack_sent_at is not None:
                self._sample(self._oack_sent_at, now)
            self._progress(now)
            self._send_window(1, now)
            return
        # Map the 16-bit number onto the blocks in flight.  At most
        # windowsize (< 65536) blocks are outstanding, so this is unambiguous.
        acked = self._acked
        n = acked + ((wire - acked) & 0xFFFF)
        highest = self._highest_sent
        if (n == highest and n == self._window_end and self._next_send > n
                and n != self._last and self.pacing.burst == self.windowsize):
            # The common case by far: the whole window just sent, each of
            # its blocks once, is acknowledged at its end, and the next
            # goes out at once.  It is the general path below, folded.
            self._cleanWindow(n, now)
            return
        if n == acked or n > highest:
            return  # duplicate or stale: only a timeout retransmits
        window_end = self._window_end
        clean = n >= window_end and self._next_send > window_end
        sent_at = self._sent_at
        when = sent_at.get(n)
        if when is not None:
            # A gap ACK waits for a later block to arrive, so it measures
            # the round trip plus some pacing: it may only lower the
            # estimate (useful when no window has been clean yet).
            srtt = self.pacing.srtt
            if clean or srtt is None or now - when < srtt:
                self._sample(when, now)
        if n == highest:
            sent_at.clear()
        else:
            for block in range(acked + 1, n + 1):
                sent_at.pop(block, None)
        self._acked = n
        self._progress(now)
        if n == self._last:
            self._finish("complete")
            return
        if clean:
            self.pacing.clean()
        else:
            # The client saw a gap after block n (RFC 7440).
            self.pacing.loss()
        self._send_window(n + 1, now)

    def _cleanWindow(self, n: int, now: float) -> None:
        """
        The window ending at block C{n} was acknowledged whole and nothing
        else is in flight: take the round trip, send the next window and
        arm the timer.  This is L{_ackReceived}, L{_send_window},
        L{_send_burst} and L{_arm} for exactly that case, in one call: it
        runs once per block in lock-step, which is what BIOS ROMs and
        GRUB load kernels with, so every call and branch saved shows.
        """
        pacing = self.pacing
        sent_at = self._sent_at
        when = sent_at.get(n)
        if when is not None:
            rtt = now - when
            if rtt < 0.75 * (pacing.rto(self._timeout, self._retries) if self._adaptive
                             else self._timeout):
                pacing.sample(rtt)
        sent_at.clear()
        self._acked = n
        self._retries = self._full_retries = 0
        self._progress_at = now
        burst = self._burst_timer
        if burst is not None:  # cannot be pending once the window is out; kept safe
            _cancel(burst)
            self._burst_timer = None
        first = n + 1
        end = n + self.windowsize
        datagram, blksize = self._blocks.datagram, self.blksize
        try:
            if first == end:
                packet = datagram(first)
                sent_at[first] = now
                packets = None
                if len(packet) - 4 < blksize:
                    self._last = first
                    self._last_len = len(packet) - 4
            else:
                packets = []
                for block in range(first, end + 1):
                    packet = datagram(block)
                    sent_at[block] = now
                    packets.append(packet)
                    if len(packet) - 4 < blksize:
                        self._last = end = block
                        self._last_len = len(packet) - 4
                        break
        except Exception as e:
            # As _send_burst: what was read before the failure counts as sent.
            self._highest_sent = max(sent_at, default=n)
            self._window_end = end
            log.failure("reading {filename} failed", filename=self.request.filename)
            self._send_error(P.ERR_UNDEFINED, "Read error")
            self._finish("error", f"read error: {e}")
            return
        self._window_end = self._highest_sent = end
        self._next_send = end + 1
        if packets is None:
            try:
                self._send(packet)
            except Exception:
                self._sendFailed()
        else:
            self._transmit(packets)
        # _arm(now), with no timeout since progress:
        delay = pacing.rto(self._timeout, 0) if self._adaptive else self._timeout
        patience = self._patience
        self._rto.set(now + (min(patience, delay) if self._max_retries > 0 else patience), now)

    def abort(self, reason: str) -> None:
        """End the transfer from the server side, telling the client why."""
        if self._finished:
            return
        self._send_error(P.ERR_UNDEFINED, reason)
        self._finish("aborted", reason)

    # Ending

    def _acked_bytes(self) -> int:
        if self._last is not None and self._acked >= self._last:
            return (self._last - 1) * self.blksize + self._last_len
        return self._acked * self.blksize

    def _finish(self, outcome: str, error: str | None = None) -> None:
        if self._finished:
            return
        self._finished = True
        self._rto.cancel()
        _cancel(self._burst_timer)
        self._burst_timer = None
        try:
            self._readable.close()
        except Exception:
            log.failure("closing {filename} failed", filename=self.request.filename)
        self._blocks.release()
        result = TransferResult(
            outcome=outcome, bytes_sent=self._acked_bytes(), blocks=self._acked,
            retransmits=self.retransmits, bytes_retransmitted=self.bytes_retransmitted,
            blksize=self.blksize, windowsize=self.windowsize, tsize=self.negotiated.tsize,
            duration=self._clock.seconds() - self._started_at, error=error)
        self.done.callback(result)


def _cancel(call: IDelayedCall | None) -> None:
    if call is not None and call.active():
        call.cancel()
