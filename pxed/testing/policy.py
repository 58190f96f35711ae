# -*- test-case-name: tests.test_testing -*-
"""
Policies for tests: one that answers only when the test says so (to test
what happens while a decision is pending), and network helpers for rules.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from twisted.internet.defer import Deferred

__all__ = ["SlowPolicy", "nets"]


class SlowPolicy:
    """
    An L{pxed.policy.IBootPolicy} that answers only when the test fires
    the Deferred it recorded in C{asked} (with the request).
    """

    def __init__(self) -> None:
        self.asked: list[tuple[Any, Deferred[Any]]] = []

    def boot_spec(self, request: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.asked.append((request, d))
        return d


def nets(*texts: str) -> tuple[ipaddress.IPv4Network, ...]:
    """
    Subnets for C{SubnetMatcher} and C{RelayMatcher}.
    """
    return tuple(ipaddress.IPv4Network(t) for t in texts)
