"""
Tests for L{pxed.dhcp.protocol}: the ProxyDHCP and boot server protocols,
fed the real firmware's datagrams through fake transports, answering from
a real policy, responder and boot log.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from twisted.internet.defer import Deferred
from twisted.internet.testing import FakeDatagramTransport
from twisted.trial import unittest

from pxed.dhcp.packet import (
    BOOTREPLY,
    MIN_PACKET_SIZE,
    DHCPPacket,
    MessageType,
    Option,
    decode,
)
from pxed.dhcp.protocol import BootServerProtocol, ProxyDHCPProtocol
from pxed.dhcp.responder import BootResponder
from pxed.machine import Machine
from pxed.net import PacketInfo
from pxed.policy import BootSpec, StaticPolicy
from pxed.state import MemoryBootLog
from pxed.testing.packets import ViaTransport
from pxed.testing.policy import SlowPolicy
from tests import pcap
from tests.fixtures import write_bootloaders

MAC = "52:54:00:77:00:10"
SERVER = "192.168.77.1"
CLIENT = ("192.168.77.145", 4011)
BROADCAST = ("255.255.255.255", 68)
FROM_NOWHERE = ("0.0.0.0", 68)
INFO = PacketInfo(ifindex=3, local="10.1.2.3", destination="255.255.255.255")

OVMF_DISCOVER = pcap.OVMF_DISCOVER
OVMF_REQUEST_67 = pcap.OVMF_REQUEST_67
OVMF_REQUEST_4011 = pcap.OVMF_REQUEST_4011
IPXE_UEFI_DISCOVER = pcap.IPXE_UEFI_DISCOVER
IPXE_UEFI_REQUEST_67 = pcap.IPXE_UEFI_REQUEST_67
IPXE_BIOS_DISCOVER = pcap.IPXE_BIOS_DISCOVER
IPXE_BIOS_REQUEST_67 = pcap.IPXE_BIOS_REQUEST_67
raw = pcap.raw
changed = pcap.changed


class ProtocolTestCase(unittest.TestCase):
    def setUp(self) -> None:
        base = Path(self.mktemp()).absolute()
        base.mkdir()
        kernel = base / "vmlinuz"
        kernel.write_bytes(b"kernel")
        bootloaders = write_bootloaders(base)
        self.spec = BootSpec(kernel=str(kernel))
        self.policy = StaticPolicy({MAC: self.spec})
        self.boot_log = MemoryBootLog()
        self.responder = BootResponder(self.policy, bootloaders, 8080, self.boot_log)
        self.proxy, self.proxy_out = self.connect(ProxyDHCPProtocol(self.responder, SERVER))
        self.boot, self.boot_out = self.connect(BootServerProtocol(self.responder, SERVER))

    def connect(self, protocol: Any) -> tuple[Any, FakeDatagramTransport]:
        transport = FakeDatagramTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def sent(self, transport: FakeDatagramTransport) -> list[tuple[DHCPPacket, Any]]:
        """
        Decode what was written, checking the BOOTP minimum size.
        """
        out = []
        for data, addr in transport.written:
            self.assertGreaterEqual(len(data), MIN_PACKET_SIZE)
            out.append((decode(data), addr))
        return out

    def one(self, transport: FakeDatagramTransport) -> tuple[DHCPPacket, Any]:
        written = self.sent(transport)
        self.assertEqual(len(written), 1, written)
        return written[0]


class ProxyDHCPTests(ProtocolTestCase):
    def test_ovmf_discover(self) -> None:
        self.proxy.datagramReceived(raw(OVMF_DISCOVER), FROM_NOWHERE)
        reply, dest = self.one(self.proxy_out)
        self.assertEqual(dest, BROADCAST)
        self.assertEqual(reply.op, BOOTREPLY)
        self.assertEqual(reply.message_type, MessageType.OFFER)
        self.assertEqual(reply.xid, 0x14383625)
        self.assertEqual(reply.mac, MAC)
        self.assertEqual(reply.yiaddr, "0.0.0.0")
        self.assertEqual(reply.siaddr, SERVER)
        self.assertEqual(reply.options[Option.SERVER_ID], socket.inet_aton(SERVER))
        self.assertEqual(reply.options[Option.VENDOR_CLASS], b"PXEClient")
        self.assertEqual(reply.options[Option.CLIENT_UUID], b"\x00" * 17)
        self.assertNotIn(Option.VENDOR_SPECIFIC, reply.options)
        self.assertEqual(reply.file, b"snponly.efi")
        self.assertTrue(reply.broadcast)
        self.assertEqual([e.stage for e in self.boot_log.events(MAC)], ["proxydhcp"])

    def test_ipxe_bios_discover(self) -> None:
        """
        QEMU's iPXE ROM on SeaBIOS gets the HTTP script URL at once, with
        option 43 for BIOS.
        """
        self.proxy.datagramReceived(raw(IPXE_BIOS_DISCOVER), FROM_NOWHERE)
        reply, dest = self.one(self.proxy_out)
        self.assertEqual(dest, BROADCAST)
        self.assertEqual(reply.xid, 0xF555353A)
        self.assertEqual(
            reply.file,
            b"http://192.168.77.1:8080/_/ipxe?mac=52:54:00:77:00:10&arch=0"
            b"&uuid=00000000-0000-0000-0000-000000000000",
        )
        self.assertEqual(reply.options[Option.BOOTFILE_NAME], reply.file)
        self.assertEqual(reply.siaddr, SERVER)
        self.assertEqual(reply.options[Option.VENDOR_SPECIFIC], b"\x06\x01\x08\xff")
        self.assertTrue(reply.broadcast)

    def test_ipxe_uefi_discover(self) -> None:
        """
        The iPXE that OVMF chained gets the script, not iPXE again.
        """
        self.proxy.datagramReceived(raw(IPXE_UEFI_DISCOVER), FROM_NOWHERE)
        reply, dest = self.one(self.proxy_out)
        self.assertEqual(dest, BROADCAST)
        self.assertTrue(reply.file.startswith(b"http://192.168.77.1:8080/_/ipxe?mac="))
        self.assertIn(b"arch=7", reply.file)
        self.assertNotIn(Option.VENDOR_SPECIFIC, reply.options)
        self.assertEqual(reply.yiaddr, "0.0.0.0")

    def test_relayed(self) -> None:
        self.proxy.datagramReceived(changed(OVMF_DISCOVER, giaddr="10.20.30.1", hops=1),
                                    ("10.20.30.1", 67))
        reply, dest = self.one(self.proxy_out)
        self.assertEqual(dest, ("10.20.30.1", 67))
        self.assertEqual(reply.giaddr, "10.20.30.1")

    def test_request_ignored(self) -> None:
        """
        DHCPREQUESTs on port 67 belong to the LAN's DHCP server.
        """
        for frame in (OVMF_REQUEST_67, IPXE_UEFI_REQUEST_67, IPXE_BIOS_REQUEST_67,
                      OVMF_REQUEST_4011):
            self.proxy.datagramReceived(raw(frame), FROM_NOWHERE)
        self.assertEqual(self.proxy_out.written, [])

    def test_other_message_types_ignored(self) -> None:
        for kind in (MessageType.DECLINE, MessageType.RELEASE, MessageType.INFORM, 99):
            self.proxy.datagramReceived(
                changed(OVMF_DISCOVER, options={Option.MESSAGE_TYPE: bytes((kind,))}),
                FROM_NOWHERE)
        self.proxy.datagramReceived(changed(OVMF_DISCOVER, options={Option.MESSAGE_TYPE: None}),
                                    FROM_NOWHERE)
        self.assertEqual(self.proxy_out.written, [])

    def test_not_network_booting(self) -> None:
        self.proxy.datagramReceived(
            changed(OVMF_DISCOVER, options={Option.VENDOR_CLASS: None, Option.CLIENT_ARCH: None,
                                            Option.CLIENT_UUID: None}),
            FROM_NOWHERE)
        self.proxy.datagramReceived(
            changed(OVMF_DISCOVER, options={Option.VENDOR_CLASS: b"MSFT 5.0"}), FROM_NOWHERE)
        self.assertEqual(self.proxy_out.written, [])
        self.assertEqual(self.boot_log.machines(), [])

    def test_unknown_machine(self) -> None:
        other = bytes.fromhex("525400770099") + b"\x00" * 10
        self.proxy.datagramReceived(changed(OVMF_DISCOVER, chaddr=other), FROM_NOWHERE)
        self.proxy.datagramReceived(changed(IPXE_BIOS_DISCOVER, chaddr=other), FROM_NOWHERE)
        self.assertEqual(self.proxy_out.written, [])

    def test_architecture_without_bootloader(self) -> None:
        self.proxy.datagramReceived(
            changed(OVMF_DISCOVER, options={
                Option.CLIENT_ARCH: b"\x00\x0b",
                Option.VENDOR_CLASS: b"PXEClient:Arch:00011:UNDI:003000"}),
            FROM_NOWHERE)
        self.proxy.datagramReceived(
            changed(OVMF_DISCOVER, options={Option.CLIENT_ARCH: b"\x00\xc8"}), FROM_NOWHERE)
        self.assertEqual(self.proxy_out.written, [])
        self.proxy.datagramReceived(raw(OVMF_DISCOVER), FROM_NOWHERE)
        self.assertEqual(len(self.proxy_out.written), 1)

    def test_http_boot_client(self) -> None:
        """
        A UEFI HTTP Boot client gets a proxy offer saying HTTPClient with
        the URL of its architecture's program on pxed's HTTP server.
        """
        self.proxy.datagramReceived(
            changed(OVMF_DISCOVER, options={
                Option.CLIENT_ARCH: b"\x00\x10",
                Option.VENDOR_CLASS: b"HTTPClient:Arch:00016:UNDI:003000"}),
            FROM_NOWHERE)
        reply, dest = self.one(self.proxy_out)
        self.assertEqual(dest, BROADCAST)
        url = b"http://192.168.77.1:8080/_/boot/snponly.efi"
        self.assertEqual(reply.options[Option.VENDOR_CLASS], b"HTTPClient")
        self.assertEqual(reply.options[Option.BOOTFILE_NAME], url)
        self.assertEqual(reply.file, url)
        self.assertEqual(reply.siaddr, SERVER)
        self.assertEqual(reply.yiaddr, "0.0.0.0")
        self.assertNotIn(Option.VENDOR_SPECIFIC, reply.options)
        self.assertEqual(reply.options[Option.CLIENT_UUID], b"\x00" * 17)

    def test_http_boot_arm64_without_program(self) -> None:
        self.proxy.datagramReceived(
            changed(OVMF_DISCOVER, options={
                Option.CLIENT_ARCH: b"\x00\x13",
                Option.VENDOR_CLASS: b"HTTPClient:Arch:00019:UNDI:003000"}),
            FROM_NOWHERE)
        self.assertEqual(self.proxy_out.written, [])

    def test_server_packets_ignored(self) -> None:
        """
        The DHCP server's (and the reference proxy's) BOOTREPLYs in the
        captures get no answer from either protocol, even if turned into
        a DISCOVER-typed message.
        """
        for name, frame in pcap.SERVER_FRAMES:
            data = raw((name, frame))
            self.proxy.datagramReceived(data, (pcap.datagram(name, frame).src, 67))
            self.boot.datagramReceived(data, (pcap.datagram(name, frame).src, 4011))
            self.proxy.datagramReceived(
                changed((name, frame), options={
                    Option.MESSAGE_TYPE: b"\x01",
                    Option.VENDOR_CLASS: b"PXEClient:Arch:00007:UNDI:003000"}),
                ("192.168.77.254", 67))
        self.assertEqual(self.proxy_out.written, [])
        self.assertEqual(self.boot_out.written, [])

    def test_garbage_then_discover(self) -> None:
        for junk in (b"", b"\x01", b"x" * 300, raw(OVMF_DISCOVER)[:250],
                     raw(OVMF_DISCOVER)[:236] + b"\x00\x00\x00\x00" + b"\x35\x01"):
            self.proxy.datagramReceived(junk, FROM_NOWHERE)
        self.assertEqual(self.proxy_out.written, [])
        self.proxy.datagramReceived(raw(OVMF_DISCOVER), FROM_NOWHERE)
        self.assertEqual(len(self.proxy_out.written), 1)

    def test_configured_address_wins(self) -> None:
        self.proxy.datagramReceivedWithInfo(raw(OVMF_DISCOVER), FROM_NOWHERE, INFO)
        reply, _ = self.one(self.proxy_out)
        self.assertEqual(reply.siaddr, SERVER)
        self.assertEqual(reply.options[Option.SERVER_ID], socket.inet_aton(SERVER))

    def test_address_of_arrival_interface(self) -> None:
        self.proxy.address = None
        self.proxy.datagramReceivedWithInfo(raw(IPXE_BIOS_DISCOVER), FROM_NOWHERE, INFO)
        reply, dest = self.one(self.proxy_out)
        self.assertEqual(dest, BROADCAST)
        self.assertEqual(reply.siaddr, "10.1.2.3")
        self.assertEqual(reply.options[Option.SERVER_ID], socket.inet_aton("10.1.2.3"))
        self.assertTrue(reply.file.startswith(b"http://10.1.2.3:8080/_/ipxe?"))

    def test_no_address_known(self) -> None:
        """
        Without a configured address or packet info there is nothing
        right to advertise: stay silent rather than advertise 0.0.0.0.
        """
        self.proxy.address = None
        self.proxy.datagramReceived(raw(OVMF_DISCOVER), FROM_NOWHERE)
        self.proxy.datagramReceivedWithInfo(raw(OVMF_DISCOVER), FROM_NOWHERE,
                                            PacketInfo(3, "0.0.0.0", "255.255.255.255"))
        self.assertEqual(self.proxy_out.written, [])

    def test_send_via_arrival_interface(self) -> None:
        transport = ViaTransport()
        proxy = ProxyDHCPProtocol(self.responder, None)
        proxy.makeConnection(transport)
        proxy.datagramReceivedWithInfo(raw(OVMF_DISCOVER), FROM_NOWHERE, INFO)
        self.assertEqual(transport.written, [])
        self.assertEqual(len(transport.via), 1)
        data, dest, info = transport.via[0]
        self.assertEqual((dest, info), (BROADCAST, INFO))
        self.assertEqual(decode(data).siaddr, "10.1.2.3")

    def test_duplicates_coalesced(self) -> None:
        """
        Retransmissions while the policy decides are answered once.
        """
        policy = SlowPolicy()
        self.responder.policy = policy
        for _ in range(3):
            self.proxy.datagramReceived(raw(OVMF_DISCOVER), FROM_NOWHERE)
        self.assertEqual(len(policy.asked), 1)
        self.assertEqual(self.proxy_out.written, [])
        # Another transaction of the same machine is a new question.
        self.proxy.datagramReceived(changed(OVMF_DISCOVER, xid=1234), FROM_NOWHERE)
        self.assertEqual(len(policy.asked), 2)
        policy.asked[0][1].callback(self.spec)
        reply, _ = self.one(self.proxy_out)
        self.assertEqual(reply.xid, 0x14383625)
        policy.asked[1][1].callback(self.spec)
        self.assertEqual([decode(d).xid for d, _ in self.proxy_out.written], [0x14383625, 1234])
        # Once answered, a new retransmission is answered again.
        self.proxy.datagramReceived(raw(OVMF_DISCOVER), FROM_NOWHERE)
        self.assertEqual(len(policy.asked), 3)

    def test_slow_policy_does_not_block_others(self) -> None:
        policy = SlowPolicy()
        self.responder.policy = policy
        self.proxy.datagramReceived(raw(OVMF_DISCOVER), FROM_NOWHERE)
        self.proxy.datagramReceived(raw(IPXE_BIOS_DISCOVER), FROM_NOWHERE)
        self.assertEqual(len(policy.asked), 2)
        policy.asked[1][1].callback(self.spec)
        reply, _ = self.one(self.proxy_out)
        self.assertEqual(reply.xid, 0xF555353A)

    def test_policy_raises(self) -> None:
        def broken(machine: Machine) -> Deferred[BootSpec | None]:
            raise RuntimeError("policy bug")

        self.responder.policy.boot_spec = broken
        self.proxy.datagramReceived(raw(OVMF_DISCOVER), FROM_NOWHERE)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(self.proxy_out.written, [])
        # The protocol, and this very transaction, are answered once the
        # policy works again.
        self.responder.policy = StaticPolicy({MAC: self.spec})
        self.proxy.datagramReceived(raw(OVMF_DISCOVER), FROM_NOWHERE)
        self.assertEqual(len(self.proxy_out.written), 1)

    def test_policy_fails_later(self) -> None:
        policy = SlowPolicy()
        self.responder.policy = policy
        self.proxy.datagramReceived(raw(OVMF_DISCOVER), FROM_NOWHERE)
        policy.asked[0][1].errback(ConnectionError("database went away"))
        self.assertEqual(len(self.flushLoggedErrors(ConnectionError)), 1)
        self.assertEqual(self.proxy_out.written, [])
        self.proxy.datagramReceived(raw(OVMF_DISCOVER), FROM_NOWHERE)
        self.assertEqual(len(policy.asked), 2)
        policy.asked[1][1].callback(self.spec)
        self.assertEqual(len(self.proxy_out.written), 1)

    def test_not_connected(self) -> None:
        """
        An answer that arrives after the port went away is dropped quietly.
        """
        policy = SlowPolicy()
        self.responder.policy = policy
        self.proxy.datagramReceived(raw(OVMF_DISCOVER), FROM_NOWHERE)
        self.proxy.doStop()
        policy.asked[0][1].callback(self.spec)
        self.assertEqual(self.proxy_out.written, [])


class BootServerTests(ProtocolTestCase):
    def test_ovmf_request(self) -> None:
        self.boot.datagramReceived(raw(OVMF_REQUEST_4011), CLIENT)
        reply, dest = self.one(self.boot_out)
        self.assertEqual(dest, CLIENT)
        self.assertEqual(reply.op, BOOTREPLY)
        self.assertEqual(reply.message_type, MessageType.ACK)
        self.assertEqual(reply.xid, 0x5D17BE46)
        self.assertEqual(reply.mac, MAC)
        self.assertEqual(reply.yiaddr, "0.0.0.0")
        self.assertEqual(reply.ciaddr, "192.168.77.145")
        self.assertEqual(reply.siaddr, SERVER)
        self.assertEqual(reply.file, b"snponly.efi")
        self.assertEqual(reply.options[Option.SERVER_ID], socket.inet_aton(SERVER))
        self.assertEqual(reply.options[Option.VENDOR_CLASS], b"PXEClient")
        self.assertEqual(reply.options[Option.CLIENT_UUID], b"\x00" * 17)
        self.assertNotIn(Option.VENDOR_SPECIFIC, reply.options)
        self.assertEqual([e.stage for e in self.boot_log.events(MAC)], ["bootserver"])

    def test_reply_to_source_port(self) -> None:
        self.boot.datagramReceived(raw(OVMF_REQUEST_4011), ("192.168.77.145", 1234))
        _, dest = self.one(self.boot_out)
        self.assertEqual(dest, ("192.168.77.145", 1234))

    def test_bios_on_4011(self) -> None:
        self.boot.datagramReceived(
            changed(OVMF_REQUEST_4011, options={
                Option.CLIENT_ARCH: b"\x00\x00",
                Option.VENDOR_CLASS: b"PXEClient:Arch:00000:UNDI:002001"}),
            CLIENT)
        reply, _ = self.one(self.boot_out)
        self.assertEqual(reply.file, b"undionly.kpxe")
        self.assertEqual(reply.options[Option.VENDOR_SPECIFIC], b"\x06\x01\x08\xff")

    def test_inform(self) -> None:
        self.boot.datagramReceived(
            changed(OVMF_REQUEST_4011, options={Option.MESSAGE_TYPE: b"\x08"}), CLIENT)
        reply, _ = self.one(self.boot_out)
        self.assertEqual(reply.message_type, MessageType.ACK)

    def test_discover_ignored(self) -> None:
        self.boot.datagramReceived(raw(OVMF_DISCOVER), CLIENT)
        self.assertEqual(self.boot_out.written, [])

    def test_arrival_address(self) -> None:
        self.boot.address = None
        self.boot.datagramReceivedWithInfo(raw(OVMF_REQUEST_4011), CLIENT, INFO)
        reply, dest = self.one(self.boot_out)
        self.assertEqual(dest, CLIENT)
        self.assertEqual(reply.siaddr, "10.1.2.3")

    def test_garbage_then_request(self) -> None:
        self.boot.datagramReceived(b"\xff" * 400, CLIENT)
        self.boot.datagramReceived(raw(OVMF_REQUEST_4011)[:-30], CLIENT)
        self.assertEqual(self.boot_out.written, [])
        self.boot.datagramReceived(raw(OVMF_REQUEST_4011), CLIENT)
        self.assertEqual(len(self.boot_out.written), 1)

    def test_unknown_architecture(self) -> None:
        self.boot.datagramReceived(
            changed(OVMF_REQUEST_4011, options={Option.CLIENT_ARCH: b"\x00\x0b"}), CLIENT)
        self.assertEqual(self.boot_out.written, [])


class FuzzTests(ProtocolTestCase):
    @settings(max_examples=200, deadline=None,
              suppress_health_check=[HealthCheck.too_slow,
                                     HealthCheck.function_scoped_fixture])
    @given(pcap.mutated_captures())
    def test_mutated_datagrams(self, data: bytes) -> None:
        """
        Whatever arrives, the protocols neither raise nor log a failure,
        and what they send is a well-formed BOOTREPLY.
        """
        self.proxy.datagramReceived(data, FROM_NOWHERE)
        self.boot.datagramReceived(data, CLIENT)
        for transport in (self.proxy_out, self.boot_out):
            for sent, _ in transport.written:
                self.assertEqual(decode(sent).op, BOOTREPLY)
            transport.written.clear()
