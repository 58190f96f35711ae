"""
Tests for L{pxed.net}: the packet-info UDP port, over real loopback
sockets on 127.0.0.1.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial import unittest

from pxed.net import IP_PKTINFO, PacketInfo, PacketInfoPort, _parse_ancillary, interface_address

WAIT = 5  # seconds: every wait for a datagram is bounded by this


class Recorder(DatagramProtocol):
    """
    Records each datagram with its info; C{next()} waits for the next.
    """

    def __init__(self) -> None:
        self.received: list[tuple[bytes, tuple[str, int], PacketInfo | None]] = []
        self.waiting: list[defer.Deferred[None]] = []

    def datagramReceivedWithInfo(
        self, data: bytes, addr: tuple[str, int], info: PacketInfo | None
    ) -> None:
        self.received.append((data, addr, info))
        self._wake()

    def _wake(self) -> None:
        # Wake the test only after the port is done with this datagram.
        waiting, self.waiting = self.waiting, []
        for d in waiting:
            reactor.callLater(0, d.callback, None)

    def next(self) -> defer.Deferred[None]:
        d: defer.Deferred[None] = defer.Deferred()
        self.waiting.append(d)
        d.addTimeout(WAIT, reactor)
        return d


class Exploding(Recorder):
    def datagramReceivedWithInfo(
        self, data: bytes, addr: tuple[str, int], info: PacketInfo | None
    ) -> None:
        super().datagramReceivedWithInfo(data, addr, info)
        if data == b"boom":
            raise ZeroDivisionError("protocol bug")


class Plain(Recorder):
    """
    A protocol that knows nothing of packet info.
    """

    datagramReceivedWithInfo = None  # type: ignore[assignment]

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        self.received.append((data, addr, None))
        self._wake()


class PacketInfoPortTests(unittest.TestCase):
    timeout = 30

    def listen(self, protocol: DatagramProtocol, **kwargs: Any) -> PacketInfoPort:
        port = PacketInfoPort(0, protocol, "127.0.0.1", reactor=reactor, **kwargs)
        port.startListening()
        self.addCleanup(port.stopListening)
        self.address = ("127.0.0.1", port.getHost().port)
        return port

    def client(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(WAIT)
        return sock

    @defer.inlineCallbacks
    def test_packet_info(self) -> Any:
        protocol = Recorder()
        self.listen(protocol)
        sock = self.client()
        arrived = protocol.next()
        sock.sendto(b"hello", self.address)
        yield arrived
        [(data, addr, info)] = protocol.received
        self.assertEqual(data, b"hello")
        self.assertEqual(addr, sock.getsockname())
        assert info is not None
        self.assertEqual(info.local, "127.0.0.1")
        self.assertGreater(info.ifindex, 0)
        self.assertEqual(info.ifindex, socket.if_nametoindex("lo"))
        self.assertEqual(info.destination, "127.0.0.1")

    @defer.inlineCallbacks
    def test_protocol_error_does_not_stop_port(self) -> Any:
        protocol = Exploding()
        self.listen(protocol)
        sock = self.client()
        arrived = protocol.next()
        sock.sendto(b"boom", self.address)
        yield arrived
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        arrived = protocol.next()
        sock.sendto(b"after", self.address)
        yield arrived
        self.assertEqual([data for data, _, _ in protocol.received], [b"boom", b"after"])

    @defer.inlineCallbacks
    def test_plain_protocol(self) -> Any:
        protocol = Plain()
        self.listen(protocol)
        sock = self.client()
        arrived = protocol.next()
        sock.sendto(b"plain", self.address)
        yield arrived
        self.assertEqual(protocol.received, [(b"plain", sock.getsockname(), None)])

    @defer.inlineCallbacks
    def test_burst(self) -> Any:
        """
        Several datagrams queued at once are all read, each with its info.
        """
        protocol = Recorder()
        self.listen(protocol)
        sock = self.client()
        for i in range(20):
            sock.sendto(b"%d" % i, self.address)
        for _ in range(WAIT * 10):
            if len(protocol.received) == 20:
                break
            yield protocol.next()
        self.assertEqual([data for data, _, _ in protocol.received],
                         [b"%d" % i for i in range(20)])
        self.assertTrue(all(info and info.local == "127.0.0.1" for _, _, info in protocol.received))

    @defer.inlineCallbacks
    def test_send_via(self) -> Any:
        """
        A reply sent with the request's info reaches the sender from the
        port's address.
        """
        protocol = Recorder()
        port = self.listen(protocol)
        sock = self.client()
        arrived = protocol.next()
        sock.sendto(b"ping", self.address)
        yield arrived
        _, addr, info = protocol.received[0]
        port.sendVia(b"pong", addr, info)
        self.assertEqual(sock.recvfrom(100), (b"pong", self.address))
        port.sendVia(b"plain", addr, None)
        self.assertEqual(sock.recvfrom(100), (b"plain", self.address))
        port.sendVia(b"no-if", addr, PacketInfo(0, "0.0.0.0", "0.0.0.0"))
        self.assertEqual(sock.recvfrom(100), (b"no-if", self.address))

    def test_send_via_error_logged(self) -> None:
        """
        A send that fails (here: to a bad interface) is logged, not raised.
        """
        port = self.listen(Recorder())
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        port.sendVia(b"x", ("127.0.0.1", 9), PacketInfo(999999, "0.0.0.0", "0.0.0.0"))
        warnings = [e for e in events if e.get("log_level") == LogLevel.warn]
        self.assertEqual(len(warnings), 1)
        self.assertEqual(warnings[0]["peer"], ("127.0.0.1", 9))

    def test_socket_options(self) -> None:
        port = self.listen(Recorder())
        skt = port.socket
        self.assertEqual(skt.getsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST), 1)
        self.assertEqual(skt.getsockopt(socket.IPPROTO_IP, IP_PKTINFO), 1)

    def test_receive_buffer(self) -> None:
        """
        The receive buffer is enlarged for boot storms: to 4 MiB with the
        privilege to (Linux reports twice what was set), else as far as
        net.core.rmem_max allows.
        """
        from pxed.net import RECEIVE_BUFFER

        port = self.listen(Recorder())
        size = port.socket.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        if os.geteuid() == 0:
            self.assertEqual(size, 2 * RECEIVE_BUFFER)
        else:
            with open("/proc/sys/net/core/rmem_max") as f:
                limit = int(f.read())
            self.assertEqual(size, 2 * min(RECEIVE_BUFFER, limit))

    @defer.inlineCallbacks
    def test_bound_to_device(self) -> Any:
        if os.geteuid() != 0:
            raise unittest.SkipTest("SO_BINDTODEVICE needs root")
        protocol = Recorder()
        self.listen(protocol, device="lo")
        sock = self.client()
        arrived = protocol.next()
        sock.sendto(b"lo", self.address)
        yield arrived
        info = protocol.received[0][2]
        assert info is not None
        self.assertEqual(info.ifindex, socket.if_nametoindex("lo"))


class HelperTests(unittest.TestCase):
    def test_interface_address(self) -> None:
        self.assertEqual(interface_address("lo"), "127.0.0.1")

    def test_interface_address_unknown(self) -> None:
        self.assertIsNone(interface_address("pxednosuch0"))

    def test_parse_ancillary(self) -> None:
        payload = (1).to_bytes(4, sys.byteorder) + socket.inet_aton("10.0.0.1") + \
            socket.inet_aton("255.255.255.255")
        self.assertEqual(_parse_ancillary([(socket.IPPROTO_IP, IP_PKTINFO, payload)]),
                         PacketInfo(1, "10.0.0.1", "255.255.255.255"))
        self.assertIsNone(_parse_ancillary([]))
        self.assertIsNone(_parse_ancillary([(socket.IPPROTO_IP, IP_PKTINFO, payload[:8])]))
        self.assertIsNone(_parse_ancillary([(socket.SOL_SOCKET, IP_PKTINFO, payload)]))


class NameAndRouteTests(unittest.TestCase):
    def test_interface_name(self) -> None:
        from pxed.net import interface_name

        self.assertEqual(interface_name(socket.if_nametoindex("lo")), "lo")
        self.assertIsNone(interface_name(2**31 - 1))

    def test_names_cached_for_a_while(self) -> None:
        from twisted.internet.task import Clock

        from pxed.net import InterfaceNames

        asked: list[int] = []
        names = {2: "eth0"}

        def lookup(ifindex: int) -> str | None:
            asked.append(ifindex)
            return names.get(ifindex)

        clock = Clock()
        cache = InterfaceNames(clock, ttl=1.0, lookup=lookup)
        self.assertEqual([cache.name(2), cache.name(2), cache.name(3), cache.name(3)],
                         ["eth0", "eth0", None, None])
        self.assertEqual(asked, [2, 3])
        names[2] = "renamed"
        clock.advance(0.5)
        self.assertEqual(cache.name(2), "eth0")
        clock.advance(0.6)
        self.assertEqual(cache.name(2), "renamed")
        self.assertEqual(asked, [2, 3, 2])

    def test_route_source(self) -> None:
        from pxed.net import route_source

        self.assertEqual(route_source("127.0.0.1"), "127.0.0.1")
        self.assertEqual(route_source("127.5.5.5"), "127.0.0.1")
        self.assertIsNone(route_source("not an address"))
