# -*- test-case-name: tests.test_tftp_session -*-
"""
How much of a TFTP window to send back to back.

A window (RFC 7440) cannot be shrunk once negotiated: the client ACKs only
after C{windowsize} blocks (EDK2 counts blocks since its last ACK), so
sending fewer would stall it until it times out.  What the server can
choose is I{when} to send the blocks of a window.  On a clean network it
sends the whole window at once.  After a loss it sends the window in
smaller bursts spaced about one round trip apart, so that:

  - a receiver whose small receive ring overflowed (the usual cause of loss
    with firmware clients) gets time to drain it;
  - when a block is lost, the client's ACK for the gap (RFC 7440) arrives
    before the rest of the window has been sent, and the server restarts
    from the gap instead of sending blocks the client will discard.

The burst halves at each loss and doubles after each cleanly acknowledged
window, like TCP's multiplicative decrease (with a fast recovery, since
LAN loss is mostly bursty).

The same round-trip measurements give the retransmission timeout, as in
TCP (RFC 6298): a LAN round trip is about a millisecond, so waiting the
configured second after every lost block would make a lossy lock-step
transfer (what BIOS ROMs do) a hundred times slower than it need be.  The
configured timeout stays the ceiling and the measure of when to give up.
"""

from __future__ import annotations

__all__ = ["Pacing"]

MIN_GAP = 0.0005
MIN_RTO = 0.02


class Pacing:
    """Burst size and spacing for one transfer; pure, the session applies it."""

    def __init__(
        self, windowsize: int, *, initial_rtt: float = 0.002, max_gap: float = 0.05
    ) -> None:
        self.windowsize = windowsize
        self.burst = windowsize
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.losses = 0
        self._base = MIN_RTO  # max(MIN_RTO, SRTT + 4 RTTVAR), kept up to date
        self._initial_rtt = initial_rtt
        self._max_gap = max_gap

    def loss(self) -> None:
        """A block or an ACK was lost (gap ACK or retransmission timeout)."""
        self.losses += 1
        self.burst = max(1, self.burst // 2)

    def clean(self) -> None:
        """A whole window was acknowledged at its end."""
        self.burst = min(self.windowsize, self.burst * 2)

    def sample(self, rtt: float) -> None:
        """
        Record the time from a window's last block to its ACK.  Only windows
        sent once are sampled (Karn): an ACK after a retransmission cannot
        be matched to one transmission.
        """
        rtt = max(0.0, rtt)
        if self.srtt is None or rtt < self.srtt / 4:
            # First sample, or the estimate was inflated by a late ACK (see
            # below): on a LAN the smallest recent round trip is the truth.
            self.srtt = rtt
            self.rttvar = rtt / 2
            self._base = max(MIN_RTO, rtt + 2 * rtt)
            return
        # An ACK can come late because the client waited for its own timer
        # (its gap ACK was lost): such outliers are not the path's round
        # trip, so one sample moves the estimate only so far.
        rtt = min(rtt, 4 * self.srtt + MIN_RTO)
        self.rttvar += (abs(self.srtt - rtt) - self.rttvar) / 4
        self.srtt += (rtt - self.srtt) / 8
        self._base = max(MIN_RTO, self.srtt + 4 * self.rttvar)

    @property
    def gap(self) -> float:
        """Seconds between bursts: about one round trip, within bounds."""
        rtt = self._initial_rtt if self.srtt is None else self.srtt
        return min(self._max_gap, max(MIN_GAP, rtt))

    def rto(self, ceiling: float, backoff: int = 0) -> float:
        """
        The retransmission timeout after C{backoff} consecutive timeouts:
        C{ceiling} until a round trip was measured, then SRTT + 4 RTTVAR
        (at least L{MIN_RTO}), doubled at each consecutive timeout, never
        above C{ceiling}.
        """
        if self.srtt is None:
            return ceiling
        if backoff:
            return min(ceiling, self._base * 2 ** min(backoff, 16))
        return min(ceiling, self._base)
