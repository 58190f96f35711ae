"""
Tests for L{pxed.reactors}.
"""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.trial import unittest

from pxed.reactors import given_or_global


class GivenOrGlobalTests(unittest.SynchronousTestCase):
    def test_given(self) -> None:
        clock = Clock()
        self.assertIs(given_or_global(clock), clock)

    def test_global(self) -> None:
        self.assertIs(given_or_global(None), reactor)
