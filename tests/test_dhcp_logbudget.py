"""
Tests for L{pxed.dhcp.logbudget} and its use by the protocols: one info
line per answer until a storm, then a count of what was left out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet.task import Clock
from twisted.internet.testing import FakeDatagramTransport
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial import unittest

from pxed.dhcp.logbudget import LogBudget
from pxed.dhcp.packet import DHCPPacket, Option, encode
from pxed.dhcp.protocol import ProxyDHCPProtocol
from pxed.dhcp.responder import BootResponder
from pxed.policy import BootSpec, StaticPolicy
from pxed.state import MemoryBootLog


class LogBudgetTests(unittest.TestCase):
    def test_burst_then_refill(self) -> None:
        clock = Clock()
        budget = LogBudget(clock, rate=2, burst=3)
        self.assertEqual([budget.spend() for _ in range(5)], [0, 0, 0, None, None])
        clock.advance(0.5)  # one token back
        self.assertEqual(budget.spend(), 2)
        self.assertIsNone(budget.spend())
        clock.advance(10)  # refills to the burst, no more
        self.assertEqual([budget.spend() for _ in range(4)], [1, 0, 0, None])

    def test_no_time_no_tokens(self) -> None:
        budget = LogBudget(Clock(), rate=100, burst=1)
        self.assertEqual(budget.spend(), 0)
        self.assertEqual([budget.spend() for _ in range(10)], [None] * 10)


class AnnounceTests(unittest.TestCase):
    def setUp(self) -> None:
        base = Path(self.mktemp()).absolute()
        base.mkdir()
        (base / "vmlinuz").write_bytes(b"k")
        (base / "undionly.kpxe").write_bytes(b"x")
        policy = StaticPolicy({}, default=BootSpec(kernel=str(base / "vmlinuz")))
        responder = BootResponder(policy, {"x86-bios": base / "undionly.kpxe"}, 80,
                                  MemoryBootLog())
        self.clock = Clock()
        self.proxy = ProxyDHCPProtocol(responder, "10.0.0.1", clock=self.clock)
        self.proxy.budget = LogBudget(self.clock, rate=1, burst=2)
        self.proxy.makeConnection(FakeDatagramTransport())
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def discover(self, i: int) -> bytes:
        return encode(DHCPPacket(xid=i, chaddr=bytes((2, 0, 0, 0, 0, i)) + b"\0" * 10, options={
            Option.MESSAGE_TYPE: b"\x01", Option.VENDOR_CLASS: b"PXEClient:Arch:00000",
            Option.CLIENT_ARCH: b"\x00\x00"}))

    def answers(self, level: LogLevel) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("log_level") == level and "bootfile" in e
                and e.get("log_namespace") == "pxed.dhcp.protocol"]

    def test_storm(self) -> None:
        self.proxy.log_packets = True
        for i in range(5):
            self.proxy.datagramReceived(self.discover(i), ("0.0.0.0", 68))
        info = self.answers(LogLevel.info)
        self.assertEqual([e["mac"] for e in info], ["02:00:00:00:00:00", "02:00:00:00:00:01"])
        self.assertEqual(info[0]["bootfile"], "undionly.kpxe")
        self.assertEqual(info[0]["kind"], "bootloader")
        self.assertEqual(len(self.answers(LogLevel.debug)), 3)
        self.clock.advance(1)
        self.proxy.datagramReceived(self.discover(9), ("0.0.0.0", 68))
        last = self.answers(LogLevel.info)[-1]
        self.assertEqual((last["mac"], last["left_out"]), ("02:00:00:00:00:09", 3))

    def test_quiet_by_default(self) -> None:
        """
        Without log_packets, nothing per packet is logged at all: not the
        answers over budget, not the datagrams ignored.
        """
        for i in range(5):
            self.proxy.datagramReceived(self.discover(i), ("0.0.0.0", 68))
        self.proxy.datagramReceived(b"garbage", ("0.0.0.0", 68))
        self.assertEqual(len(self.answers(LogLevel.info)), 2)
        self.assertEqual([e for e in self.events if e.get("log_level") == LogLevel.debug
                          and e.get("log_namespace") == "pxed.dhcp.protocol"], [])

    def test_ignored_logged_when_asked(self) -> None:
        self.proxy.log_packets = True
        self.proxy.datagramReceived(b"garbage", ("10.0.0.9", 68))
        [event] = [e for e in self.events if e.get("log_namespace") == "pxed.dhcp.protocol"]
        self.assertEqual(event["log_level"], LogLevel.debug)
        self.assertIn("too short", event["why"])
        self.assertEqual(event["peer"], ("10.0.0.9", 68))
