# -*- test-case-name: tests.test_tftp_session -*-
"""
How a read session sends its windows and when it retransmits them.

This is the window and retransmission bookkeeping of L{ReadSession
<pxed.tftp.session.ReadSession>}, kept apart from the packet handling in
L{pxed.tftp.session} so each part reads on its own: sending a window in
bursts spaced by L{Pacing <pxed.tftp.pacing.Pacing>}, feeding measured
round trips to the estimator, the retransmission timer and its back-off,
the give-up deadline, and the short leash of a client that has
acknowledged nothing (it may be a spoofed request).

L{RetransmittingWindow} is a mixin, not a separate object: the one call per
block in lock-step (L{ReadSession._cleanWindow
<pxed.tftp.session.ReadSession._cleanWindow>}) must not pay for an extra
hop, and the state it shares with the packet handling is the session's.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from . import packet as P
from .deadline import Deadline, quiet_end
from .options import Negotiated, SessionLimits
from .pacing import Pacing
from .source import BlockReader

__all__ = ["RetransmittingWindow"]

# The session's namespace: these are the read session's events, and log
# filters written for them keep working.
log = Logger(namespace="pxed.tftp.session")

class RetransmittingWindow:
    """
    Sending, windows and timers of a read session (see the module
    docstring); L{ReadSession <pxed.tftp.session.ReadSession>} sets the
    state below up and handles the client's packets.
    """

    # Set by ReadSession.__init__.
    request: P.ReadRequest
    peer: tuple[str, int] | None
    limits: SessionLimits
    negotiated: Negotiated
    blksize: int
    windowsize: int
    pacing: Pacing
    retransmits: int
    bytes_retransmitted: int
    _send: Callable[[bytes], object]
    _send_many: Callable[[list[bytes]], object] | None
    _clock: IReactorTime
    _blocks: BlockReader
    _rto: Deadline
    _burst_timer: IDelayedCall | None
    _timeout: float
    _adaptive: bool
    _patience: float
    _max_retries: int
    _retries: int
    _full_retries: int
    _progress_at: float
    _oack_pending: bool
    _oack_sent_at: float | None
    _acked: int
    _highest_sent: int
    _last: int | None
    _last_len: int
    _window_end: int
    _next_send: int
    _sent_at: dict[int, float | None]
    _send_failed: bool
    _finished: bool
    _first_sends: int
    _first_sent_at: float
    _first_last_at: float

    def _finish(self, outcome: str, error: str | None = None) -> None:
        raise NotImplementedError  # ReadSession's

    # Sending

    def _send_oack(self) -> None:
        self._transmit([P.encode(P.OptionAck(dict(self.negotiated.oack)))])

    def _send_error(self, code: int, message: str) -> None:
        self._transmit([P.encode(P.Error(code, message))])

    def _transmit(self, packets: list[bytes]) -> None:
        if self._send_many is not None and len(packets) > 1:
            try:
                self._send_many(packets)
            except Exception:
                self._sendFailed()
            return
        send = self._send
        for packet in packets:
            try:
                send(packet)
            except Exception:
                self._sendFailed()

    def _sendFailed(self) -> None:
        """
        A send failure is like a lost packet: the timer recovers.  It is
        logged once per transfer, not once per packet.  (Called from an
        C{except} clause, whose exception the log shows.)
        """
        if not self._send_failed:
            self._send_failed = True
            log.failure("sending to {peer} failed", peer=self.peer)

    def _send_window(self, first: int, now: float) -> None:
        """Start sending the window of blocks beginning at C{first}."""
        burst = self._burst_timer
        if burst is not None:
            if burst.active():
                burst.cancel()
            self._burst_timer = None
        # No retransmission is due until the window has gone out.
        self._rto.clear()
        self._next_send = first
        end = first + self.windowsize - 1
        if self._last is not None and end > self._last:
            end = self._last
        self._window_end = end
        self._send_burst(now)

    def _send_burst(self, now: float | None = None) -> None:
        """Send the next burst of the window, then wait for the next burst or an ACK."""
        self._burst_timer = None
        if now is None:
            now = self._clock.seconds()
        first = n = self._next_send
        stop = min(self._window_end, first + self.pacing.burst - 1)
        datagram, sent_at = self._blocks.datagram, self._sent_at
        highest, blksize = self._highest_sent, self.blksize
        burst: list[bytes] = []
        try:
            for n in range(first, stop + 1):
                packet = datagram(n)
                if n <= highest:
                    self.retransmits += 1
                    self.bytes_retransmitted += len(packet) - 4
                    sent_at[n] = None
                else:
                    highest = n
                    sent_at[n] = now
                burst.append(packet)
                if len(packet) - 4 < blksize:
                    self._last = self._window_end = n
                    self._last_len = len(packet) - 4
                    break
        except Exception as e:
            self._highest_sent = highest
            log.failure("reading {filename} failed", filename=self.request.filename)
            self._send_error(P.ERR_UNDEFINED, "Read error")
            self._finish("error", f"read error: {e}")
            return
        self._highest_sent = highest
        self._next_send = n + 1
        self._transmit(burst)
        if n >= self._window_end:
            self._arm(now)
        else:
            self._burst_timer = self._clock.callLater(self.pacing.gap, self._send_burst)

    # Timing

    def _sample(self, sent_at: float, now: float) -> None:
        """
        Feed a round trip to the estimator, unless the answer came about
        when the retransmission timer would have fired: that is the
        client's own timer answering (its previous packet was lost), not the
        path, and taking it would pin the timeout at its ceiling.
        """
        rtt = now - sent_at
        if rtt < 0.75 * self._delay():
            self.pacing.sample(rtt)

    def _progress(self, now: float) -> None:
        self._retries = self._full_retries = 0
        self._progress_at = now

    def _delay(self) -> float:
        """The retransmission timeout for the next consecutive timeout."""
        if not self._adaptive:
            return self._timeout
        return self.pacing.rto(self._timeout, self._retries)

    def _deadline(self) -> float:
        """When to give up: no progress for the limits' patience."""
        return self._progress_at + self._patience

    def _arm(self, now: float) -> None:
        """
        Set the retransmission timer to the next timeout (or, once
        retransmissions are exhausted, to the deadline, waiting silently
        for the client's own retransmitted ACK).
        """
        remaining = max(0.0, self._progress_at + self._patience - now)
        if self._full_retries < self._max_retries:
            remaining = min(remaining, self._delay())
        self._rto.set(now + remaining, now)

    def _timedOut(self) -> None:
        if self._finished:
            return
        now = self._clock.seconds()
        never_acked = self._never_acked()
        if never_acked:
            # A client that has not acknowledged anything may not exist (a
            # spoofed request): it gets its first answer twice, and nothing
            # more, not even an ERROR.  Its ACK may still come (the client
            # was slow, or its first ACK was lost) until the quiet time
            # ends, by pxed's timeout, not one the request named; a real
            # client that heard nothing asks again.
            if now >= self._quiet_end() - 1e-6:
                self._finish("timeout", "client never answered")
                return
            if self._first_sends >= 2:
                self._rto.set(self._quiet_end(), now)
                return
        if now >= self._deadline() - 1e-6:
            log.debug("giving up on {peer}", peer=self.peer)
            self._send_error(P.ERR_UNDEFINED, "Timeout")
            if self._last is not None and self._highest_sent >= self._last:
                # Typical of a lost final ACK from a client that does not
                # dally: it very probably has the whole file.
                self._finish("timeout", "no ACK for the final block")
            else:
                self._finish("timeout", "client stopped answering")
            return
        if self._delay() >= self._timeout - 1e-9:
            self._full_retries += 1
        self._retries += 1
        if never_acked:
            self._first_sends += 1
            self._first_last_at = now
        if self._oack_pending:
            self.retransmits += 1
            self._oack_sent_at = None
            self._send_oack()
            self._arm(now)
        else:
            self.pacing.loss()
            self._send_window(self._acked + 1, now)
        if never_acked:
            self._quiet_cap(now)

    def _never_acked(self) -> bool:
        """Whether the client has acknowledged nothing yet (not even the OACK)."""
        return self._acked == 0 and (self._oack_pending or not self.negotiated.oack)

    def _quiet_end(self) -> float:
        return quiet_end(self._first_sent_at, self._first_last_at, self.limits.timeout)

    def _quiet_cap(self, now: float) -> None:
        """While nothing is acknowledged, no timer runs past the quiet end."""
        if not self._finished:
            self._rto.set(min(now + self._delay(), self._quiet_end()), now)

    def request_again(self) -> None:
        """
        The client sent its request again while nothing of this transfer
        was acknowledged: answer it as the first time (one packet now, one
        retransmission later), so a lossy client is not left out while a
        spoofed one still gets no more than two packets per request.
        """
        if self._finished or not self._never_acked():
            return
        now = self._clock.seconds()
        self._first_sends = 1
        self._first_sent_at = self._first_last_at = now
        self.retransmits += 1
        if self._oack_pending:
            self._oack_sent_at = None
            self._send_oack()
            self._arm(now)
        else:
            self._send_window(1, now)
        self._quiet_cap(now)
