"""
Tests for L{pxed.dhcp.pipeline}: the per-datagram steps the protocols and
C{pxed explain} share, and the relay agent information (option 82, RFC
3046) echoed in every reply to a relayed request that carried it, on port
67, on port 4011 and in full DHCP mode.
"""

from __future__ import annotations

import io
import ipaddress
import textwrap
from pathlib import Path
from typing import Any

from twisted.internet.defer import ensureDeferred
from twisted.internet.task import Clock
from twisted.internet.testing import FakeDatagramTransport
from twisted.trial import unittest

from pxed import cli
from pxed.config import parse_config
from pxed.dhcp.allocator import LeaseKeeper
from pxed.dhcp.exchange import BOOTSERVER, PROXYDHCP
from pxed.dhcp.packet import DHCPPacket, MessageType, Option, decode, encode
from pxed.dhcp.pipeline import (
    Arrival,
    Dropped,
    echo_relay_information,
    receive,
    respond,
)
from pxed.dhcp.protocol import BootServerProtocol, ProxyDHCPProtocol
from pxed.dhcp.responder import BootResponder
from pxed.dhcp.server import DHCPServerProtocol
from pxed.leasestore import MemoryLeaseStore
from pxed.net import PacketInfo
from pxed.policy import BootSpec, StaticPolicy
from pxed.state import MemoryBootLog
from pxed.testing.packets import bootserver_request, pxe_discover
from tests.fixtures import write_bootloaders

SERVER = "192.168.77.1"
RELAY = "10.20.0.1"
MAC = bytes.fromhex("525400770082")
#: Circuit ID "ge-0/0/7.0" and remote ID (a switch's MAC): what a switch inserts.
AGENT = b"\x01\x0age-0/0/7.0\x02\x06\x00\x1b\x21\x0a\x0b\x0c"


def relayed(packet: DHCPPacket, agent: bytes | None = AGENT) -> DHCPPacket:
    packet.giaddr, packet.hops = RELAY, 1
    if agent is not None:
        packet.options[Option.RELAY_AGENT_INFORMATION] = agent
    return packet


class EchoTests(unittest.TestCase):
    """
    L{echo_relay_information} on its own.
    """

    def reply(self) -> DHCPPacket:
        return DHCPPacket(op=2, options={Option.MESSAGE_TYPE: b"\x02"})

    def test_relayed_with_agent_information(self) -> None:
        out = echo_relay_information(relayed(pxe_discover(MAC, 7, 1)), self.reply())
        self.assertEqual(out.options[Option.RELAY_AGENT_INFORMATION], AGENT)
        # Last, as a relay agent writes it, and the same bytes on the wire.
        self.assertEqual(list(out.options)[-1], Option.RELAY_AGENT_INFORMATION)
        self.assertEqual(decode(encode(out)).options[Option.RELAY_AGENT_INFORMATION], AGENT)

    def test_long_agent_information_unchanged(self) -> None:
        """
        Sub-options as long as an option can be survive intact.
        """
        agent = b"\x01\xff" + bytes(range(253)) + b"\x00\x00"  # whatever the relay put there
        out = echo_relay_information(relayed(pxe_discover(MAC, 7, 1), agent[:255]),
                                     self.reply())
        self.assertEqual(decode(encode(out)).options[Option.RELAY_AGENT_INFORMATION],
                         agent[:255])

    def test_not_relayed(self) -> None:
        """
        Only a relay agent adds option 82: one from a client that was not
        relayed is not repeated (RFC 3046 section 2.2 leaves it to the
        server; repeating what a client made up helps nobody).
        """
        request = pxe_discover(MAC, 7, 1)
        request.options[Option.RELAY_AGENT_INFORMATION] = AGENT
        self.assertNotIn(Option.RELAY_AGENT_INFORMATION,
                         echo_relay_information(request, self.reply()).options)

    def test_relayed_without_agent_information(self) -> None:
        out = echo_relay_information(relayed(pxe_discover(MAC, 7, 1), None), self.reply())
        self.assertNotIn(Option.RELAY_AGENT_INFORMATION, out.options)


class PipelineTests(unittest.TestCase):
    def setUp(self) -> None:
        base = Path(self.mktemp())
        base.mkdir()
        self.loaders = write_bootloaders(base)
        kernel = BootSpec(kernel="/boot/vmlinuz")
        self.responder = BootResponder(StaticPolicy({}, default=kernel), self.loaders, 8080,
                                       MemoryBootLog())

    def arrival(self, packet: DHCPPacket, source: tuple[str, int] = ("0.0.0.0", 68),
                interface: str | None = "eth0") -> Arrival:
        return Arrival(encode(packet), source, PacketInfo(2, SERVER, "255.255.255.255"),
                       interface)

    def test_receive(self) -> None:
        request = receive(self.arrival(pxe_discover(MAC, 7, 5)), PROXYDHCP, address=None)
        self.assertEqual((request.server, request.machine.arch.code, request.relay),
                         (SERVER, 7, None))

    def test_dropped_with_reasons(self) -> None:
        cases = [
            (self.arrival(pxe_discover(MAC, 7, 5), interface="eth9"), "interface",
             "arrived on eth9, not on eth0"),
            (self.arrival(bootserver_request(MAC, SERVER)), "ignored",
             "REQUEST message type is not answered on the proxydhcp port"),
            (Arrival(b"\x01\x02", ("0.0.0.0", 68)), "ignored", "malformed"),
            (Arrival(encode(pxe_discover(MAC, 7, 5)), ("0.0.0.0", 68)), "no-address",
             "no address to advertise"),
        ]
        for arrival, reason, why in cases:
            error = self.assertRaises(Dropped, receive, arrival, PROXYDHCP, address=None,
                                      interfaces=frozenset({"eth0"}) if arrival.interface
                                      else frozenset())
            self.assertEqual(error.reason, reason)
            self.assertIn(why, error.why)

    def test_respond(self) -> None:
        request = receive(self.arrival(relayed(pxe_discover(MAC, 7, 5))), PROXYDHCP,
                          address=None)
        reply = self.successResultOf(ensureDeferred(respond(request, PROXYDHCP,
                                                            self.responder)))
        assert reply is not None
        self.assertEqual(reply.destination, (RELAY, 67))
        self.assertEqual(decode(reply.data), reply.packet)
        self.assertEqual(reply.packet.options[Option.RELAY_AGENT_INFORMATION], AGENT)

    def test_silence(self) -> None:
        self.responder.policy = StaticPolicy({})
        request = receive(self.arrival(pxe_discover(MAC, 7, 5)), PROXYDHCP, address=None)
        self.assertIsNone(self.successResultOf(ensureDeferred(
            respond(request, PROXYDHCP, self.responder))))


class BothPortsTests(PipelineTests):
    """
    The protocols on port 67 and 4011 echo option 82 to the relay.
    """

    def run_protocol(self, cls: Any, packet: DHCPPacket,
                     source: tuple[str, int]) -> list[tuple[bytes, Any]]:
        protocol = cls(self.responder, SERVER)
        transport = FakeDatagramTransport()
        protocol.makeConnection(transport)
        protocol.datagramReceived(encode(packet), source)
        return list(transport.written)

    def test_proxydhcp(self) -> None:
        [(data, dest)] = self.run_protocol(ProxyDHCPProtocol, relayed(pxe_discover(MAC, 7, 9)),
                                           (RELAY, 67))
        self.assertEqual(dest, (RELAY, 67))
        self.assertEqual(decode(data).options[Option.RELAY_AGENT_INFORMATION], AGENT)

    def test_bootserver(self) -> None:
        request = relayed(bootserver_request(MAC, SERVER, 7, client="10.20.0.50"))
        [(data, dest)] = self.run_protocol(BootServerProtocol, request, (RELAY, 67))
        self.assertEqual(decode(data).options[Option.RELAY_AGENT_INFORMATION], AGENT)

    def test_direct_request_unchanged(self) -> None:
        [(data, _)] = self.run_protocol(ProxyDHCPProtocol, pxe_discover(MAC, 7, 9),
                                        ("0.0.0.0", 68))
        self.assertNotIn(Option.RELAY_AGENT_INFORMATION, decode(data).options)

    def test_stages(self) -> None:
        self.assertEqual((PROXYDHCP.name, BOOTSERVER.name), ("proxydhcp", "bootserver"))


class FullModeTests(unittest.TestCase):
    """
    pxed as the DHCP server echoes it too, in offers, ACKs and NAKs.
    """

    def setUp(self) -> None:
        base = Path(self.mktemp()).absolute()
        base.mkdir()
        loaders = write_bootloaders(base)
        config = parse_config({
            "bootloaders": {slug: str(path) for slug, path in loaders.items()},
            "dhcp": {"mode": "full", "range": "192.168.77.100-192.168.77.103", "ping": False,
                     "ranges": {"10.20.0.0/24": "10.20.0.10-10.20.0.20"},
                     "lease_file": str(base / "leases.json")}}, "test.yaml")
        clock = Clock()
        clock.advance(1_000_000)
        keeper = LeaseKeeper(MemoryLeaseStore(), clock, config.dhcp.lease_time)
        responder = BootResponder(StaticPolicy({}, default=BootSpec(kernel="/boot/vmlinuz")),
                                  loaders, 8080, MemoryBootLog())
        self.clock = clock
        self.protocol = DHCPServerProtocol(
            keeper, responder, SERVER, ifname=lambda index: "eth0",
            networks=lambda name: ipaddress.IPv4Network("192.168.77.0/24"), route=None,
            clock=clock, dhcp=config.dhcp)
        self.transport = FakeDatagramTransport()
        self.protocol.makeConnection(self.transport)

    def send(self, packet: DHCPPacket) -> DHCPPacket:
        before = len(self.transport.written)
        self.protocol.datagramReceivedWithInfo(encode(packet), (RELAY, 67),
                                               PacketInfo(2, SERVER, SERVER))
        self.clock.advance(0)
        [(data, dest)] = self.transport.written[before:]
        self.assertEqual(dest, (RELAY, 67))
        return decode(data)

    def test_offer_ack_nak(self) -> None:
        offer = self.send(relayed(pxe_discover(MAC, 7, 1)))
        self.assertEqual(offer.message_type, MessageType.OFFER)
        self.assertEqual(offer.options[Option.RELAY_AGENT_INFORMATION], AGENT)
        request = relayed(pxe_discover(MAC, 7, 2))
        request.options[Option.MESSAGE_TYPE] = bytes([MessageType.REQUEST])
        request.options[Option.SERVER_ID] = bytes(int(x) for x in SERVER.split("."))
        request.options[Option.REQUESTED_ADDRESS] = bytes(
            int(x) for x in offer.yiaddr.split("."))
        ack = self.send(request)
        self.assertEqual(ack.message_type, MessageType.ACK)
        self.assertEqual(ack.options[Option.RELAY_AGENT_INFORMATION], AGENT)
        request.options[Option.REQUESTED_ADDRESS] = bytes([192, 168, 1, 1])
        request.xid = 3
        nak = self.send(request)
        self.assertEqual(nak.message_type, MessageType.NAK)
        self.assertEqual(nak.options[Option.RELAY_AGENT_INFORMATION], AGENT)


class ExplainTests(unittest.TestCase):
    def test_explain_shows_it(self) -> None:
        base = Path(self.mktemp()).absolute()
        base.mkdir()
        loaders = write_bootloaders(base)
        path = base / "pxed.yaml"
        path.write_text(textwrap.dedent(f"""\
            server: {{address: {SERVER}}}
            bootloaders: {{x86-bios: {loaders["x86-bios"]}, x64-uefi: {loaders["x64-uefi"]}}}
            boot: {{default: {{kernel: {base}/vmlinuz}}}}
            """))
        (base / "vmlinuz").write_bytes(b"k")
        out, err = io.StringIO(), io.StringIO()
        code = cli.main(["explain", "--config", str(path), "--hex",
                         encode(relayed(pxe_discover(MAC, 7, 1))).hex()], out, err)
        self.assertEqual(code, 0, err.getvalue())
        self.assertIn(f"option 82 (relay agent information): {AGENT.hex(' ')}", out.getvalue())
