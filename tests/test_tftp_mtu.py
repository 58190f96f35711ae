"""
Tests for L{pxed.tftp.mtu} and the block-size clamp it gives the server:
the arithmetic, the interface lookup (on the real loopback), the cache, the
protocol's use of packet info, and a real server in a private network
namespace whose loopback has a small MTU.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SynchronousTestCase, TestCase

from pxed.testing.tftp import FakeReactor, FakeTransport, Info
from pxed.tftp import packet as P
from pxed.tftp.mtu import HEADERS, MTUCache, blksize_for_mtu, interface_mtu
from pxed.tftp.protocol import TFTPServerProtocol
from pxed.tftp.source import BytesSource


class ArithmeticTests(SynchronousTestCase):
    def test_ethernet(self) -> None:
        self.assertEqual(HEADERS, 32)
        self.assertEqual(blksize_for_mtu(1500), 1468)
        self.assertEqual(blksize_for_mtu(9000), 8968)

    def test_bounds(self) -> None:
        self.assertEqual(blksize_for_mtu(65536), 65464)
        self.assertEqual(blksize_for_mtu(20), 8)


class LookupTests(SynchronousTestCase):
    def test_loopback(self) -> None:
        """The ioctl answers what the kernel reports for lo."""
        index = socket.if_nametoindex("lo")
        expected = int(Path("/sys/class/net/lo/mtu").read_text())
        self.assertEqual(interface_mtu(index), expected)

    def test_gone(self) -> None:
        self.assertIsNone(interface_mtu(2**31 - 1))


class CacheTests(SynchronousTestCase):
    def test_remembers_for_ttl(self) -> None:
        clock = Clock()
        asked: list[int] = []
        mtus = {3: 1500}

        def lookup(index: int) -> int | None:
            asked.append(index)
            return mtus.get(index)

        cache = MTUCache(clock, ttl=60, lookup=lookup)
        self.assertEqual(cache.max_blksize(3), 1468)
        clock.advance(59)
        mtus[3] = 9000
        self.assertEqual(cache.max_blksize(3), 1468)
        clock.advance(1)
        self.assertEqual(cache.max_blksize(3), 8968)
        self.assertIsNone(cache.max_blksize(4))
        self.assertIsNone(cache.max_blksize(0))
        self.assertEqual(asked, [3, 3, 4])


class ProtocolClampTests(SynchronousTestCase):
    """The server grants no more than the receiving interface fits."""

    def oack(self, mtu: int | None, asked: str = "65464", **kw: Any) -> dict[str, str]:
        fake = FakeReactor()
        server = TFTPServerProtocol(BytesSource({"f": b"x" * 100_000}), fake, **kw)
        server.mtus = MTUCache(fake, lookup=lambda index: mtu if index == 2 else None)
        server.makeConnection(FakeTransport("0.0.0.0", 69))  # type: ignore[arg-type]
        rrq = P.encode(P.ReadRequest("f", "octet", {"blksize": asked}))
        server.datagramReceivedWithInfo(rrq, ("10.0.0.9", 2000), Info("10.0.0.5", "10.0.0.5"))
        (_, transport, _), = fake.bound
        (packet, _), = transport.written
        assert isinstance(packet, P.OptionAck)
        return packet.options

    def test_small_mtu_lowers(self) -> None:
        self.assertEqual(self.oack(1400, "1468"), {"blksize": "1368"})

    def test_configured_maximum_still_applies(self) -> None:
        self.assertEqual(self.oack(9000), {"blksize": "1468"})
        self.assertEqual(self.oack(9000, max_blksize=65464), {"blksize": "8968"})

    def test_unknown_interface(self) -> None:
        self.assertEqual(self.oack(None, max_blksize=4000), {"blksize": "4000"})


NETNS_HELPER = r"""
import json, subprocess, sys
sys.path.insert(0, sys.argv[1])
mtu = int(sys.argv[3])
subprocess.run(["ip", "link", "set", "lo", "mtu", str(mtu), "up"], check=True)

from pathlib import Path
from twisted.internet import defer, task
from pxed.tftp.client import fetch_result
from pxed.tftp.protocol import TFTPServerProtocol
from pxed.tftp.source import FilesystemSource
from pxed.ports import UDPService

@defer.inlineCallbacks
def main(reactor):
    protocol = TFTPServerProtocol(FilesystemSource(Path(sys.argv[2])), reactor, max_blksize=65464)
    service = UDPService(0, protocol, "127.0.0.1", reactor=reactor)
    service.startService()
    port = service.port.getHost().port
    result = yield fetch_result(reactor, "127.0.0.1", port, "file", blksize=65464, timeout=2)
    expected = (Path(sys.argv[2]) / "file").read_bytes()
    yield service.stopService()
    # Without packet info there is no clamp: 4000-byte blocks exceed the
    # MTU, segmentation offload refuses them, and the window goes out as
    # IP fragments instead.
    plain = TFTPServerProtocol(FilesystemSource(Path(sys.argv[2])), reactor, max_blksize=4000)
    listening = reactor.listenUDP(0, plain, interface="127.0.0.1")
    big = yield fetch_result(reactor, "127.0.0.1", listening.getHost().port, "file",
                             blksize=65464, windowsize=8, timeout=2)
    yield listening.stopListening()
    print(json.dumps({"options": result.options, "ok": result.data == expected,
                      "fragmented": [big.options, big.data == expected]}))

task.react(main)
"""


class NamespaceTests(TestCase):
    """
    A real server behind a packet-info port, in a private network
    namespace whose loopback has a small MTU (needs root and unshare).
    """

    timeout = 60

    @defer.inlineCallbacks
    def test_loopback_mtu(self) -> Any:
        for tool in ("unshare", "ip", "timeout"):
            self.assertIsNotNone(shutil.which(tool), f"{tool} is missing")
        self.assertEqual(os.geteuid(), 0, "a network namespace needs root")
        base = Path(self.mktemp()).absolute()
        base.mkdir()
        (base / "file").write_bytes(os.urandom(50_000))
        helper = base / "helper.py"
        helper.write_text(NETNS_HELPER)
        project = str(Path(__file__).resolve().parent.parent)
        for mtu, granted in ((1300, "1268"), (9000, "8968")):
            out, err, code = yield getProcessOutputAndValue(
                "timeout", ["50", "unshare", "-n", sys.executable, str(helper), project,
                            str(base), str(mtu)],
                env=dict(os.environ), reactor=reactor)
            self.assertEqual(code, 0, err)
            report = json.loads(out.strip().splitlines()[-1])
            self.assertEqual(report, {"options": {"blksize": granted}, "ok": True, "fragmented":
                                      [{"blksize": "4000", "windowsize": "8"}, True]})
