"""
TFTP against a hostile sender, on the real server (L{pxed.service}) on
127.0.0.1: floods of requests with huge names write a bounded log, and a
flood of tiny datagrams on one port does not hold the reactor
(L{pxed.net.PacketInfoPort} reads a bounded number per event).
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import LogLevel, formatEventAsClassicLogText, globalLogPublisher
from twisted.trial import unittest

from pxed.net import PacketInfoPort
from pxed.tftp import packet as P
from tests.server import RunningPxed, sleep, udp_client

#: The most a flood of 500 requests may add to the log, in bytes (unbounded,
#: its not-found lines alone were 500 x 8 KB).
LOG_BOUND = 100_000


class LogBudgetTests(unittest.TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).absolute()
        self.dir.mkdir()
        self.pxed = RunningPxed(self.dir)
        self.addCleanup(self.pxed.stop)
        self.lines: list[str] = []

        def observe(event: dict[str, Any]) -> None:
            # What twistd writes at its default level.
            if event.get("log_level", LogLevel.info) >= LogLevel.info:
                self.lines.append(formatEventAsClassicLogText(event) or "")

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)

    @defer.inlineCallbacks
    def test_flood_of_long_names(self) -> Any:
        client = udp_client(self)
        server = ("127.0.0.1", self.pxed.port("tftp"))
        for n in range(500):
            name = f"{n:04d}-" + "x" * 8000
            client.transport.write(P.encode(P.ReadRequest(name)), server)
            if n % 50 == 49:
                yield sleep(0.01)
        for _ in range(100):
            if len(client.replies) >= 500:
                break
            yield sleep(0.05)
        # Each well-formed request that cannot be served gets its ERROR ...
        self.assertEqual(len(client.replies), 500)
        self.assertEqual({P.decode(data) for data, _ in client.replies},
                         {P.Error(P.ERR_FILE_NOT_FOUND, "File not found")})
        # ... and the log stays small.
        written = sum(len(line) + 1 for line in self.lines)
        self.assertLess(written, LOG_BOUND, self.lines[:3])
        self.assertTrue(any("similar lines left out" in line or "not found" in line
                            for line in self.lines))


class Counter(DatagramProtocol):
    def __init__(self) -> None:
        self.count = 0

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        self.count += 1


class ReadLoopTests(unittest.TestCase):
    def test_bounded_reads_per_event(self) -> None:
        """
        One read event takes at most maxDatagrams datagrams, however small:
        the rest wait for the next turn, after the other ports had theirs.
        """
        counter = Counter()
        port = PacketInfoPort(0, counter, "127.0.0.1")
        port.startListening()
        self.addCleanup(port.stopListening)
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(sender.close)
        address = ("127.0.0.1", port.getHost().port)
        for _ in range(200):
            sender.sendto(b"\x00\x07", address)
        port.doRead()
        self.assertEqual(counter.count, PacketInfoPort.maxDatagrams)
        port.doRead()
        self.assertEqual(counter.count, 2 * PacketInfoPort.maxDatagrams)

