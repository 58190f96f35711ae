"""
Tests for L{pxed.dhcp.exchange} and the routing side of the protocols:
which datagrams are screened out and why, which address each reply
advertises (relays, configured, PKTINFO, routing), which interfaces are
served, and where replies go.
"""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from typing import Any

from twisted.trial import unittest

from pxed.dhcp.exchange import (
    BOOTSERVER,
    BROADCAST,
    PROXYDHCP,
    Ignored,
    advertised_address,
    screen,
)
from pxed.dhcp.packet import DHCPPacket, MessageType, Option, decode, encode
from pxed.dhcp.protocol import BootServerProtocol, ProxyDHCPProtocol
from pxed.dhcp.responder import BootResponder
from pxed.net import PacketInfo
from pxed.policy import BootSpec, StaticPolicy
from pxed.state import MemoryBootLog
from pxed.testing.packets import ViaTransport
from tests.fixtures import write_bootloaders

MAC = "52:54:00:77:00:10"
CHADDR = bytes.fromhex("525400770010") + b"\x00" * 10
ETH0 = PacketInfo(ifindex=2, local="192.168.77.1", destination="255.255.255.255")
ETH1 = PacketInfo(ifindex=3, local="192.168.99.1", destination="255.255.255.255")
NAMES = {2: "eth0", 3: "eth1", 4: "wlan0"}
RELAYS = (
    (ipaddress.IPv4Network("10.2.0.0/24"), "172.16.0.1"),
    (ipaddress.IPv4Network("10.0.0.0/8"), "172.16.0.2"),
)


def request(kind: int = MessageType.DISCOVER, vendor: bytes = b"PXEClient:Arch:00000:UNDI:002001",
            arch: int = 0, **fields: Any) -> DHCPPacket:
    options = {Option.MESSAGE_TYPE: bytes((kind,)), Option.VENDOR_CLASS: vendor,
               Option.CLIENT_ARCH: arch.to_bytes(2, "big")}
    fields.setdefault("xid", 7)
    return DHCPPacket(chaddr=CHADDR, options=options, **fields)


class ScreenTests(unittest.TestCase):
    def test_accepted(self) -> None:
        packet, machine = screen(encode(request()), PROXYDHCP)
        self.assertEqual((packet.xid, machine.mac, machine.arch.code), (7, MAC, 0))
        packet, machine = screen(encode(request(MessageType.REQUEST, arch=7)), BOOTSERVER)
        self.assertEqual(machine.arch.slug, "x64-uefi")

    def assertIgnored(self, data: bytes, stage: Any, *words: str) -> None:
        error = self.assertRaises(Ignored, screen, data, stage)
        for word in words:
            self.assertIn(word, str(error))

    def test_reasons(self) -> None:
        self.assertIgnored(b"junk", PROXYDHCP, "malformed", "too short")
        reply = request()
        reply.op = 2
        self.assertIgnored(encode(reply), PROXYDHCP, "BOOTREPLY")
        self.assertIgnored(encode(request(MessageType.REQUEST)), PROXYDHCP, "REQUEST",
                           "proxydhcp")
        self.assertIgnored(encode(request(MessageType.DISCOVER)), BOOTSERVER, "DISCOVER",
                           "bootserver")
        untyped = request()
        del untyped.options[Option.MESSAGE_TYPE]
        self.assertIgnored(encode(untyped), PROXYDHCP, "no message type")
        self.assertIgnored(encode(request(vendor=b"MSFT 5.0")), PROXYDHCP, "MSFT 5.0")


class AdvertisedAddressTests(unittest.TestCase):
    def test_plain_order(self) -> None:
        packet = request()
        self.assertEqual(advertised_address(packet, ETH1, "10.9.9.9"), "10.9.9.9")
        self.assertEqual(advertised_address(packet, ETH1, None), "192.168.99.1")
        self.assertEqual(advertised_address(packet, ETH0, None), "192.168.77.1")
        self.assertIsNone(advertised_address(packet, None, None))
        self.assertIsNone(advertised_address(packet, PacketInfo(2, "0.0.0.0", "x"), None))

    def test_relay_subnets(self) -> None:
        self.assertEqual(advertised_address(request(giaddr="10.2.0.1"), ETH0, "9.9.9.9", RELAYS),
                         "172.16.0.1")
        self.assertEqual(advertised_address(request(giaddr="10.3.0.1"), ETH0, None, RELAYS),
                         "172.16.0.2")
        # Not a listed relay: the usual order.
        self.assertEqual(advertised_address(request(giaddr="192.0.2.1"), ETH0, None, RELAYS),
                         "192.168.77.1")
        # The relay table is for relayed requests only ...
        self.assertEqual(advertised_address(request(), ETH0, None, RELAYS), "192.168.77.1")
        # ... but a client that sends its port-4011 request straight to a
        # relay subnet's address (as its relayed offer told it) hears that
        # address again, not the configured one.
        to_relay_address = PacketInfo(2, "192.168.77.1", "172.16.0.1")
        self.assertEqual(advertised_address(request(MessageType.REQUEST), to_relay_address,
                                            "9.9.9.9", RELAYS), "172.16.0.1")
        self.assertEqual(advertised_address(request(MessageType.REQUEST), to_relay_address,
                                            "9.9.9.9", ()), "9.9.9.9")

    def test_routed_towards_relay(self) -> None:
        asked: list[str] = []

        def route(destination: str) -> str:
            asked.append(destination)
            return "172.31.0.9"

        relayed = request(giaddr="10.2.0.1")
        self.assertEqual(advertised_address(relayed, None, None, (), route), "172.31.0.9")
        self.assertEqual(asked, ["10.2.0.1"])
        # Only when nothing better is known, and only for relayed requests.
        self.assertEqual(advertised_address(relayed, ETH0, None, (), route), "192.168.77.1")
        self.assertIsNone(advertised_address(request(), None, None, (), route))
        self.assertEqual(asked, ["10.2.0.1"])


class RoutingProtocolTests(unittest.TestCase):
    """
    The protocols on a multi-homed host behind relays, with a transport
    that can send out of a chosen interface.
    """

    def setUp(self) -> None:
        base = Path(self.mktemp()).absolute()
        base.mkdir()
        (base / "vmlinuz").write_bytes(b"k")
        loaders = write_bootloaders(base)
        policy = StaticPolicy({}, default=BootSpec(kernel=str(base / "vmlinuz")))
        self.responder = BootResponder(policy, loaders, 80, MemoryBootLog())
        self.routes: list[str] = []

    def route(self, destination: str) -> str | None:
        self.routes.append(destination)
        return "172.31.0.9"

    def make(self, cls: Any = ProxyDHCPProtocol, **kwargs: Any) -> tuple[Any, ViaTransport]:
        kwargs.setdefault("ifname", NAMES.get)
        kwargs.setdefault("route", self.route)
        protocol = cls(self.responder, **kwargs)
        transport = ViaTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def test_each_interface_its_own_address(self) -> None:
        proxy, transport = self.make()
        proxy.datagramReceivedWithInfo(encode(request()), ("0.0.0.0", 68), ETH0)
        ipxe = request(xid=8)
        ipxe.options[Option.USER_CLASS] = b"iPXE"
        proxy.datagramReceivedWithInfo(encode(ipxe), ("0.0.0.0", 68), ETH1)
        self.assertEqual(transport.written, [])
        [(first, dest0, via0), (second, dest1, via1)] = transport.via
        self.assertEqual((dest0, via0, decode(first).siaddr), (BROADCAST, ETH0, "192.168.77.1"))
        self.assertEqual((dest1, via1, decode(second).siaddr), (BROADCAST, ETH1, "192.168.99.1"))
        self.assertEqual(decode(second).options[Option.SERVER_ID],
                         socket.inet_aton("192.168.99.1"))
        self.assertTrue(decode(second).file.startswith(b"http://192.168.99.1/_/ipxe?"))

    def test_interface_restriction(self) -> None:
        proxy, transport = self.make(interfaces=["eth1"])
        proxy.datagramReceivedWithInfo(encode(request()), ("0.0.0.0", 68), ETH0)
        proxy.datagramReceivedWithInfo(encode(request()), ("0.0.0.0", 68),
                                       PacketInfo(4, "10.0.0.5", "255.255.255.255"))
        proxy.datagramReceivedWithInfo(encode(request()), ("0.0.0.0", 68),
                                       PacketInfo(99, "10.0.0.5", "255.255.255.255"))
        # Without packet info the interface is unknown: not served.
        proxy.datagramReceived(encode(request()), ("0.0.0.0", 68))
        self.assertEqual(transport.via, [])
        proxy.datagramReceivedWithInfo(encode(request()), ("0.0.0.0", 68), ETH1)
        self.assertEqual(len(transport.via), 1)

    def test_interface_restriction_on_boot_server(self) -> None:
        boot, transport = self.make(BootServerProtocol, interfaces=["eth0", "eth1"])
        info = PacketInfo(4, "10.0.0.5", "10.0.0.5")
        boot.datagramReceivedWithInfo(encode(request(MessageType.REQUEST)), ("10.0.0.7", 4011),
                                      info)
        self.assertEqual(transport.written, [])
        boot.datagramReceivedWithInfo(encode(request(MessageType.REQUEST)), ("10.0.0.7", 4011),
                                      PacketInfo(3, "192.168.99.1", "192.168.99.1"))
        [(data, dest)] = transport.written
        self.assertEqual(dest, ("10.0.0.7", 4011))
        self.assertEqual(decode(data).siaddr, "192.168.99.1")

    def test_relayed_unicast_to_relay(self) -> None:
        """
        A relayed DISCOVER is answered to giaddr:67 by ordinary unicast
        (routing knows the way to the relay; forcing the arrival interface
        would not), advertising the address the relay reached.
        """
        proxy, transport = self.make()
        relayed = PacketInfo(2, "192.168.77.1", "192.168.77.1")
        proxy.datagramReceivedWithInfo(encode(request(giaddr="10.2.0.1", hops=1)),
                                       ("10.2.0.1", 67), relayed)
        self.assertEqual(transport.via, [])
        [(data, dest)] = transport.written
        reply = decode(data)
        self.assertEqual(dest, ("10.2.0.1", 67))
        self.assertEqual(reply.giaddr, "10.2.0.1")
        self.assertEqual(reply.siaddr, "192.168.77.1")
        self.assertTrue(reply.broadcast)
        self.assertEqual(self.routes, [])

    def test_relay_subnet_address(self) -> None:
        """
        A relay subnet's own address, or the usual one for a subnet listed
        without one (true in the configuration); a relay in no listed
        subnet is not answered.
        """
        relays = (*RELAYS, (ipaddress.IPv4Network("192.0.2.0/24"), None))
        proxy, transport = self.make(address="192.168.77.1", relays=relays)
        proxy.datagramReceivedWithInfo(encode(request(giaddr="10.2.0.1")), ("10.2.0.1", 67),
                                       ETH0)
        proxy.datagramReceivedWithInfo(encode(request(giaddr="192.0.2.1", xid=9)),
                                       ("192.0.2.1", 67), ETH0)
        proxy.datagramReceivedWithInfo(encode(request(giaddr="198.51.100.1", xid=10)),
                                       ("198.51.100.1", 67), ETH0)
        [(first, _), (second, _)] = transport.written
        self.assertEqual(decode(first).siaddr, "172.16.0.1")
        self.assertEqual(decode(second).siaddr, "192.168.77.1")

    def test_relayed_without_info_uses_route(self) -> None:
        proxy, transport = self.make()
        proxy.datagramReceived(encode(request(giaddr="10.2.0.1")), ("10.2.0.1", 67))
        [(data, dest)] = transport.written
        self.assertEqual(decode(data).siaddr, "172.31.0.9")
        self.assertEqual(self.routes, ["10.2.0.1"])

    def test_responder_told_interface_and_relay(self) -> None:
        seen: list[dict[str, Any]] = []
        original = self.responder.answer

        def answer(machine: Any, server: str, stage: str, **kwargs: Any) -> Any:
            seen.append(kwargs)
            return original(machine, server, stage, **kwargs)

        self.responder.answer = answer  # type: ignore[method-assign]
        proxy, _ = self.make()
        proxy.datagramReceivedWithInfo(encode(request()), ("0.0.0.0", 68), ETH1)
        proxy.datagramReceivedWithInfo(encode(request(giaddr="10.2.0.1", xid=3)),
                                       ("10.2.0.1", 67), ETH0)
        self.assertEqual(seen, [{"interface": "eth1", "relay": None},
                                {"interface": "eth0", "relay": "10.2.0.1"}])
