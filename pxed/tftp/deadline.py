# -*- test-case-name: tests.test_tftp_session -*-
"""
A timer for a time that moves on nearly every packet, nearly always later;
and how long a transfer waits for a client that has said nothing since
its request.

A transfer's retransmission timeout is pushed back by every ACK.
Cancelling the reactor's delayed call and making a new one each time costs
more than handling the ACK itself; L{Deadline} records the new time
instead, and its pending call, when it fires early, waits again for what
is left.  Only a move sooner touches the reactor.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

__all__ = ["Deadline", "QUIET_TIMEOUTS", "CLIENT_RETRANSMIT", "quiet_end"]

#: How many timeouts after its first answer a client that has said nothing
#: since its request is waited for (it had that answer twice) before the
#: transfer ends, without an ERROR (the request may have been spoofed).
QUIET_TIMEOUTS = 4

#: Seconds such a client is also waited for after the last copy of its
#: first answer: a real client whose reply was lost sends it again on its
#: own timer, 5 s in tftp-hpa and atftp (restarted by each copy it
#: receives), and one more second covers a busy machine.  Fixed, not the
#: client's C{timeout} option: a spoofed request must not be able to hold
#: its port longer by asking.
CLIENT_RETRANSMIT = 6.0


def quiet_end(first_sent: float, last_sent: float, timeout: float) -> float:
    """
    When a transfer whose client has said nothing since its request ends:
    its first answer went out at C{first_sent}, the last copy of it at
    C{last_sent}, with the server's C{timeout}.
    """
    return max(first_sent + QUIET_TIMEOUTS * timeout, last_sent + CLIENT_RETRANSMIT)


class Deadline:
    """Call C{callback} once, when the time last L{set} has come."""

    def __init__(self, clock: IReactorTime, callback: Callable[[], object]) -> None:
        self._clock = clock
        self._callback = callback
        self._call: IDelayedCall | None = None
        self._call_at = 0.0
        #: When the callback is due, or C{None} for never.
        self.when: float | None = None

    @property
    def pending(self) -> bool:
        """Whether a reactor call is pending (possibly with nothing due)."""
        return self._call is not None

    def set(self, when: float, now: float) -> None:
        """Be due at C{when} (C{now} is the clock's time, already read)."""
        self.when = when
        if self._call is None:
            self._call = self._clock.callLater(max(0.0, when - now), self._fire)
            self._call_at = when
        elif self._call_at > when:
            self._call.reset(max(0.0, when - now))
            self._call_at = when

    def clear(self) -> None:
        """Nothing is due for now; a pending call will find nothing to do."""
        self.when = None

    def cancel(self) -> None:
        """Nothing is due, and no call is left pending."""
        self.when = None
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()

    def _fire(self) -> None:
        self._call = None
        when = self.when
        if when is None:
            return
        now = self._clock.seconds()
        if now < when:
            self._call = self._clock.callLater(when - now, self._fire)
            self._call_at = when
            return
        self.when = None
        self._callback()
