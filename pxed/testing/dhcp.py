# -*- test-case-name: tests.test_testing -*-
"""
Fakes for pxed's DHCP server (full mode): an address prober that answers
on a test's clock.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

__all__ = ["FakeProber"]


class FakeProber:
    """
    Answers after C{delay} seconds of the clock, C{True} for the addresses
    in C{busy}; counts what it was asked.
    """

    def __init__(self, clock: Clock, busy: set[str] = frozenset(), delay: float = 0.5) -> None:  # type: ignore[assignment]
        self.clock = clock
        self.busy = set(busy)
        self.delay = delay
        self.asked: list[str] = []

    def probe(self, address: str) -> Deferred[bool]:
        self.asked.append(address)
        d: Deferred[bool] = Deferred()
        self.clock.callLater(self.delay, d.callback, address in self.busy)
        return d
