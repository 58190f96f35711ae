"""
Tests for L{pxed.state}: the bounded in-memory boot log.
"""

from __future__ import annotations

from twisted.trial import unittest
from zope.interface.verify import verifyObject

from pxed.state import BootEvent, IBootLog, MemoryBootLog


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 1
        return self.now


class MemoryBootLogTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = Clock()

    def test_interface(self) -> None:
        self.assertTrue(verifyObject(IBootLog, MemoryBootLog()))

    def test_record(self) -> None:
        log = MemoryBootLog(clock=self.clock)
        log.record("m1", "proxydhcp", arch="x64-uefi", bootfile="snponly.efi")
        log.record("m1", "booting")
        self.assertEqual(log.events("m1"), [
            BootEvent("m1", "proxydhcp", 1001.0, {"arch": "x64-uefi", "bootfile": "snponly.efi"}),
            BootEvent("m1", "booting", 1002.0, {}),
        ])
        self.assertEqual(log.machines(), ["m1"])

    def test_unknown_machine(self) -> None:
        log = MemoryBootLog()
        self.assertEqual(log.events("nobody"), [])
        self.assertEqual(log.machines(), [])
        # Asking does not create an entry.
        self.assertEqual(log.machines(), [])

    def test_events_is_a_copy(self) -> None:
        log = MemoryBootLog()
        log.record("m1", "a")
        log.events("m1").clear()
        self.assertEqual(len(log.events("m1")), 1)

    def test_events_per_machine_bounded(self) -> None:
        log = MemoryBootLog(max_events=3, clock=self.clock)
        for i in range(10):
            log.record("m1", f"stage{i}")
        log.record("m2", "only")
        self.assertEqual([e.stage for e in log.events("m1")], ["stage7", "stage8", "stage9"])
        self.assertEqual([e.stage for e in log.events("m2")], ["only"])

    def test_machines_bounded(self) -> None:
        log = MemoryBootLog(max_machines=3)
        for i in range(100):
            log.record(f"m{i}", "proxydhcp")
        self.assertEqual(log.machines(), ["m97", "m98", "m99"])
        self.assertEqual(log.events("m0"), [])

    def test_least_recently_active_evicted(self) -> None:
        log = MemoryBootLog(max_machines=3)
        for mac in ("a", "b", "c"):
            log.record(mac, "proxydhcp")
        log.record("a", "booting")  # a is now the most recently active
        self.assertEqual(log.machines(), ["b", "c", "a"])
        log.record("d", "proxydhcp")
        self.assertEqual(log.machines(), ["c", "a", "d"])
        self.assertEqual([e.stage for e in log.events("a")], ["proxydhcp", "booting"])
        self.assertEqual(log.events("b"), [])

    def test_evicted_machine_starts_afresh(self) -> None:
        log = MemoryBootLog(max_machines=1)
        log.record("a", "one")
        log.record("b", "two")
        log.record("a", "three")
        self.assertEqual([e.stage for e in log.events("a")], ["three"])
        self.assertEqual(log.machines(), ["a"])

    def test_defaults(self) -> None:
        log = MemoryBootLog()
        self.assertEqual((log.max_machines, log.max_events), (4096, 256))
        for i in range(300):
            log.record("m", str(i))
        self.assertEqual(len(log.events("m")), 256)

    def test_last(self) -> None:
        """
        C{last} is the newest event of that machine only, without copying
        its history.
        """
        log = MemoryBootLog(clock=self.clock)
        self.assertIsNone(log.last("m1"))
        log.record("m1", "proxydhcp")
        log.record("m2", "script")
        log.record("m1", "booting")
        self.assertEqual(log.last("m1"), BootEvent("m1", "booting", 1003.0, {}))
        self.assertEqual(log.last("m2"), BootEvent("m2", "script", 1002.0, {}))
        self.assertEqual(log.machines(), ["m2", "m1"])  # asking moved nothing

    def test_version_moves_with_each_event(self) -> None:
        """
        The version changes on every event recorded (even one that evicts
        another), and only then: it is what pollers are told "nothing new"
        by.
        """
        log = MemoryBootLog(max_machines=1, max_events=1)
        seen = [log.version()]
        for mac, stage in (("a", "one"), ("a", "two"), ("b", "three")):
            log.record(mac, stage)
            seen.append(log.version())
        self.assertEqual(len(set(seen)), len(seen), seen)
        log.events("b")
        log.machines()
        log.last("b")
        self.assertEqual(log.version(), seen[-1])
