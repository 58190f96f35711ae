"""
Tests for L{pxed.dhcp.ping}: the echo request's wire form, a real probe
of 127.0.0.1 over a real ICMP socket, and the timeout over a L{Clock}.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial import unittest

from pxed.dhcp.ping import ICMPProber, checksum, echo_request, open_prober


class WireTests(unittest.TestCase):
    def test_checksum_of_packet_is_zero(self) -> None:
        packet = echo_request(0x1234, 7, b"odd")
        self.assertEqual(packet[:2], b"\x08\x00")
        self.assertEqual(checksum(packet), 0)
        self.assertEqual(packet[4:8], b"\x12\x34\x00\x07")


class SilentSocket:
    """
    A socket nobody answers on.
    """

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any]] = []

    def setblocking(self, flag: bool) -> None:
        pass

    def fileno(self) -> int:
        return 99

    def sendto(self, data: bytes, addr: Any) -> None:
        self.sent.append((data, addr))

    def close(self) -> None:
        pass


class ClockReactor(Clock):
    def addReader(self, reader: Any) -> None:
        pass

    def removeReader(self, reader: Any) -> None:
        pass


class TimeoutTests(unittest.TestCase):
    def test_no_answer_after_timeout(self) -> None:
        clock = ClockReactor()
        sock = SilentSocket()
        prober = ICMPProber(sock, True, clock, timeout=0.5)  # type: ignore[arg-type]
        d = prober.probe("192.168.77.5")
        self.assertEqual(sock.sent[0][1], ("192.168.77.5", 0))
        clock.advance(0.4)
        self.assertNoResult(d)
        clock.advance(0.1)
        self.assertFalse(self.successResultOf(d))

    def test_close_answers_pending(self) -> None:
        clock = ClockReactor()
        prober = ICMPProber(SilentSocket(), True, clock)  # type: ignore[arg-type]
        d = prober.probe("192.168.77.5")
        prober.socket = socket.socket()  # closable for real
        prober.close()
        self.assertFalse(self.successResultOf(d))


class RealProbeTests(unittest.TestCase):
    timeout = 10

    def test_loopback_answers(self) -> Deferred[None]:
        """
        pxed's tests run as root (scripts/setup), so the raw socket opens.
        """
        prober = open_prober(reactor, timeout=2.0)
        assert prober is not None, "no ICMP socket: the tests must run as root"
        self.addCleanup(prober.close)
        self.assertTrue(prober.raw)
        d = prober.probe("127.0.0.1")
        d.addCallback(self.assertTrue)
        return d
