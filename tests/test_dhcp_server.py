"""
Tests for L{pxed.dhcp.server}: pxed as the DHCP server, over an
in-memory transport and a L{Clock}, with a real lease store, responder
and policy, and real firmware datagrams from the captures.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from pathlib import Path
from typing import Any

from twisted.internet.task import Clock
from twisted.internet.testing import FakeDatagramTransport
from twisted.trial import unittest

from pxed.config import parse_config
from pxed.dhcp.allocator import LeaseKeeper
from pxed.dhcp.leasereply import DNS, LEASE_TIME, NETMASK, REBINDING_TIME, RENEWAL_TIME, ROUTER
from pxed.dhcp.packet import BOOTREPLY, DHCPPacket, MessageType, Option, decode, encode
from pxed.dhcp.responder import BootResponder
from pxed.dhcp.server import DHCPServerProtocol
from pxed.leasestore import MemoryLeaseStore
from pxed.net import PacketInfo
from pxed.policy import BootSpec, StaticPolicy
from pxed.state import MemoryBootLog
from pxed.testing.dhcp import FakeProber
from pxed.testing.packets import http_boot_discover, plain
from tests import pcap
from tests.fixtures import write_bootloaders

SERVER = "192.168.77.1"
LAN = ipaddress.IPv4Network("192.168.77.0/24")
INFO = PacketInfo(ifindex=2, local=SERVER, destination="255.255.255.255")
BROADCAST = ("255.255.255.255", 68)
OVMF_MAC = None  # read from the capture


def u32(value: bytes) -> int:
    return int(struct.unpack("!I", value)[0])


class ServerTestCase(unittest.TestCase):
    dhcp: dict[str, Any] = {"mode": "full", "range": "192.168.77.100-192.168.77.103",
                            "router": "192.168.77.254", "dns": ["192.168.77.53"],
                            "lease_time": "1h", "ping": False,
                            "ranges": {"10.20.0.0/24": "10.20.0.10-10.20.0.20"}}

    def setUp(self) -> None:
        base = Path(self.mktemp()).absolute()
        base.mkdir()
        self.bootloaders = write_bootloaders(base)
        kernel = base / "vmlinuz"
        kernel.write_bytes(b"kernel")
        dhcp = dict(self.dhcp, lease_file=str(base / "leases.json"))
        self.config = parse_config({
            "bootloaders": {slug: str(path) for slug, path in self.bootloaders.items()},
            "dhcp": dhcp}, "test.yaml")
        self.clock = Clock()
        self.clock.advance(1_000_000)
        self.store = MemoryLeaseStore()
        self.keeper = LeaseKeeper(self.store, self.clock, self.config.dhcp.lease_time)
        self.boot_log = MemoryBootLog()
        self.responder = BootResponder(StaticPolicy({}, default=BootSpec(kernel=str(kernel))),
                                       self.bootloaders, 8080, self.boot_log)
        self.protocol = DHCPServerProtocol(
            self.keeper, self.responder, SERVER, ifname=lambda index: "eth0",
            networks=lambda name: LAN, route=None, clock=self.clock, dhcp=self.config.dhcp)
        self.transport = FakeDatagramTransport()
        self.protocol.makeConnection(self.transport)

    def send(self, packet: DHCPPacket | bytes, source: tuple[str, int] = ("0.0.0.0", 68),
             info: PacketInfo | None = INFO) -> list[tuple[DHCPPacket, Any]]:
        data = packet if isinstance(packet, bytes) else encode(packet)
        before = len(self.transport.written)
        self.protocol.datagramReceivedWithInfo(data, source, info)
        self.clock.advance(0)
        return [(decode(d), a) for d, a in self.transport.written[before:]]

    def one(self, packet: DHCPPacket | bytes, **kw: Any) -> tuple[DHCPPacket, Any]:
        out = self.send(packet, **kw)
        self.assertEqual(len(out), 1, out)
        return out[0]

    def dora(self, mac: str, xid: int = 1, **options: bytes) -> DHCPPacket:
        offer, _ = self.one(plain(mac, MessageType.DISCOVER, xid, **options))
        self.assertEqual(offer.message_type, MessageType.OFFER)
        request = plain(mac, MessageType.REQUEST, xid, **options)
        request.options[Option.SERVER_ID] = socket.inet_aton(SERVER)
        request.options[Option.REQUESTED_ADDRESS] = socket.inet_aton(offer.yiaddr)
        ack, _ = self.one(request)
        self.assertEqual(ack.message_type, MessageType.ACK)
        self.assertEqual(ack.yiaddr, offer.yiaddr)
        return ack


class PlainClientTests(ServerTestCase):
    def test_dora(self) -> None:
        offer, dest = self.one(plain("02:00:00:00:00:01", MessageType.DISCOVER))
        self.assertEqual(dest, BROADCAST)
        self.assertEqual(offer.op, BOOTREPLY)
        self.assertIn(offer.yiaddr, {f"192.168.77.{i}" for i in range(100, 104)})
        opts = offer.options
        self.assertEqual(socket.inet_ntoa(opts[Option.SERVER_ID]), SERVER)
        self.assertEqual(socket.inet_ntoa(opts[NETMASK]), "255.255.255.0")
        self.assertEqual(socket.inet_ntoa(opts[ROUTER]), "192.168.77.254")
        self.assertEqual(socket.inet_ntoa(opts[DNS]), "192.168.77.53")
        self.assertEqual(u32(opts[LEASE_TIME]), 3600)
        self.assertEqual(u32(opts[RENEWAL_TIME]), 1800)
        self.assertEqual(u32(opts[REBINDING_TIME]), 3150)
        # Not a network boot: no boot information, no vendor class.
        self.assertNotIn(Option.BOOTFILE_NAME, opts)
        self.assertEqual(offer.siaddr, "0.0.0.0")
        ack = self.dora("02:00:00:00:00:01")
        self.assertEqual(ack.yiaddr, offer.yiaddr)
        self.assertEqual(self.boot_log.machines(), [])

    def test_unique_addresses_until_full_then_silence(self) -> None:
        got = {self.dora(f"02:00:00:00:00:0{i}", xid=i).yiaddr for i in range(4)}
        self.assertEqual(len(got), 4)
        self.assertEqual(self.send(plain("02:00:00:00:00:09", MessageType.DISCOVER)), [])

    def test_renew_unicast_and_rebind(self) -> None:
        ack = self.dora("02:00:00:00:00:01")
        self.clock.advance(1800)
        renew = plain("02:00:00:00:00:01", MessageType.REQUEST, xid=7)
        renew.flags = 0
        renew.ciaddr = ack.yiaddr
        reply, dest = self.one(renew, source=(ack.yiaddr, 68))
        self.assertEqual(reply.message_type, MessageType.ACK)
        self.assertEqual(dest, (ack.yiaddr, 68))
        self.assertEqual(u32(reply.options[LEASE_TIME]), 3600)
        self.assertEqual(reply.ciaddr, ack.yiaddr)
        lease = self.successResultOf(self.store.holder(ack.yiaddr))
        self.assertEqual(lease.expires, self.clock.seconds() + 3600)

    def test_init_reboot_keeps_address(self) -> None:
        ack = self.dora("02:00:00:00:00:01")
        self.clock.advance(7200)  # expired while the machine was off
        reboot = plain("02:00:00:00:00:01", MessageType.REQUEST, xid=9,
                       o50=socket.inet_aton(ack.yiaddr))
        reply, dest = self.one(reboot)
        self.assertEqual((reply.message_type, reply.yiaddr), (MessageType.ACK, ack.yiaddr))
        self.assertEqual(dest, BROADCAST)

    def test_init_reboot_wrong_network_nak(self) -> None:
        reboot = plain("02:00:00:00:00:01", MessageType.REQUEST, xid=9,
                       o50=socket.inet_aton("10.9.9.9"))
        reply, dest = self.one(reboot)
        self.assertEqual(reply.message_type, MessageType.NAK)
        self.assertEqual(reply.yiaddr, "0.0.0.0")
        self.assertEqual(dest, BROADCAST)

    def test_request_for_someone_elses_address_nak(self) -> None:
        ack = self.dora("02:00:00:00:00:01")
        steal = plain("02:00:00:00:00:02", MessageType.REQUEST, o50=socket.inet_aton(ack.yiaddr))
        reply, _ = self.one(steal)
        self.assertEqual(reply.message_type, MessageType.NAK)

    def test_rediscover_after_reboot_same_address(self) -> None:
        ack = self.dora("02:00:00:00:00:01")
        self.clock.advance(30 * 86400)
        again = self.dora("02:00:00:00:00:01", xid=5)
        self.assertEqual(again.yiaddr, ack.yiaddr)

    def test_client_identifier(self) -> None:
        """
        Two clients with one MAC and different identifiers are two
        clients; an identifier of type 1 + own MAC is the MAC's client.
        """
        a = self.dora("02:00:00:00:00:01", o61=b"\x00one")
        b = self.dora("02:00:00:00:00:01", xid=2, o61=b"\x00two")
        self.assertNotEqual(a.yiaddr, b.yiaddr)
        c = self.dora("02:00:00:00:00:03", xid=3)
        d = self.dora("02:00:00:00:00:03", xid=4, o61=bytes.fromhex("01020000000003"))
        self.assertEqual(c.yiaddr, d.yiaddr)

    def test_release_then_reused(self) -> None:
        acks = [self.dora(f"02:00:00:00:00:0{i}", xid=i) for i in range(4)]
        release = plain("02:00:00:00:00:00", MessageType.RELEASE, xid=20,
                        o54=socket.inet_aton(SERVER))
        release.ciaddr = acks[0].yiaddr
        self.assertEqual(self.send(release), [])
        self.assertEqual(self.dora("02:00:00:00:00:09", xid=21).yiaddr, acks[0].yiaddr)

    def test_decline(self) -> None:
        ack = self.dora("02:00:00:00:00:01")
        decline = plain("02:00:00:00:00:01", MessageType.DECLINE, xid=3,
                        o50=socket.inet_aton(ack.yiaddr), o54=socket.inet_aton(SERVER))
        self.assertEqual(self.send(decline), [])
        again = self.dora("02:00:00:00:00:01", xid=4)
        self.assertNotEqual(again.yiaddr, ack.yiaddr)

    def test_other_servers_offer_chosen_frees_ours(self) -> None:
        offer, _ = self.one(plain("02:00:00:00:00:01", MessageType.DISCOVER))
        request = plain("02:00:00:00:00:01", MessageType.REQUEST,
                        o54=socket.inet_aton("192.168.77.2"), o50=socket.inet_aton("192.168.77.7"))
        self.assertEqual(self.send(request), [])
        lease = self.successResultOf(self.store.holder(offer.yiaddr))
        self.assertFalse(lease.held(self.clock.seconds()))

    def test_offer_hold_expires(self) -> None:
        offers = [self.one(plain(f"02:00:00:00:00:0{i}", MessageType.DISCOVER, xid=i))[0]
                  for i in range(4)]
        self.assertEqual(self.send(plain("02:00:00:00:00:09", MessageType.DISCOVER, xid=9)), [])
        self.clock.advance(61)
        late, _ = self.one(plain("02:00:00:00:00:09", MessageType.DISCOVER, xid=10))
        self.assertIn(late.yiaddr, {o.yiaddr for o in offers})

    def test_inform(self) -> None:
        inform = plain("02:00:00:00:00:01", MessageType.INFORM)
        inform.ciaddr = "192.168.77.50"
        reply, dest = self.one(inform, source=("192.168.77.50", 68))
        self.assertEqual(reply.message_type, MessageType.ACK)
        self.assertEqual(reply.yiaddr, "0.0.0.0")
        self.assertNotIn(LEASE_TIME, reply.options)
        self.assertEqual(dest, ("192.168.77.50", 68))
        self.assertEqual(socket.inet_ntoa(reply.options[ROUTER]), "192.168.77.254")

    def test_relayed_gets_relay_range(self) -> None:
        discover = plain("02:00:00:00:00:01", MessageType.DISCOVER)
        discover.giaddr = "10.20.0.1"
        discover.hops = 1
        offer, dest = self.one(discover, source=("10.20.0.1", 67))
        self.assertEqual(dest, ("10.20.0.1", 67))
        self.assertIn(ipaddress.IPv4Address(offer.yiaddr),
                      ipaddress.IPv4Network("10.20.0.0/24"))
        self.assertGreaterEqual(int(offer.yiaddr.split(".")[-1]), 10)
        self.assertLessEqual(int(offer.yiaddr.split(".")[-1]), 20)
        # The router is not on that subnet: the relay is its gateway.
        self.assertEqual(socket.inet_ntoa(offer.options[ROUTER]), "10.20.0.1")
        self.assertEqual(offer.giaddr, "10.20.0.1")

    def test_relay_without_range_silent(self) -> None:
        discover = plain("02:00:00:00:00:01", MessageType.DISCOVER)
        discover.giaddr = "10.99.0.1"
        self.assertEqual(self.send(discover, source=("10.99.0.1", 67)), [])

    def test_other_lan_silent(self) -> None:
        self.protocol._networks = lambda name: ipaddress.IPv4Network("10.0.0.0/8")
        self.assertEqual(self.send(plain("02:00:00:00:00:01", MessageType.DISCOVER)), [])

    def test_garbage_and_replies_silent(self) -> None:
        self.assertEqual(self.send(b"\x01" * 10), [])
        reply = plain("02:00:00:00:00:01", MessageType.OFFER)
        reply.op = BOOTREPLY
        self.assertEqual(self.send(reply), [])
        self.assertEqual(self.send(plain("02:00:00:00:00:01", MessageType.OFFER)), [])
        no_type = plain("02:00:00:00:00:01", MessageType.DISCOVER)
        del no_type.options[Option.MESSAGE_TYPE]
        self.assertEqual(self.send(no_type), [])


class BootClientTests(ServerTestCase):
    def test_ovmf_gets_address_and_file_without_4011(self) -> None:
        discover = decode(pcap.payload(pcap.UEFI_CAPTURE, 1))
        offer, dest = self.one(discover)
        self.assertEqual(offer.message_type, MessageType.OFFER)
        self.assertNotEqual(offer.yiaddr, "0.0.0.0")
        self.assertEqual(offer.siaddr, SERVER)
        self.assertEqual(offer.file, self.bootloaders["x64-uefi"].name.encode())
        # No PXEClient and no option 43: firmware boots the file, no 4011.
        self.assertNotIn(Option.VENDOR_CLASS, offer.options)
        self.assertNotIn(Option.VENDOR_SPECIFIC, offer.options)
        self.assertEqual(self.boot_log.machines(), [])  # offers are not boot steps
        request = decode(pcap.payload(pcap.UEFI_CAPTURE, 4))
        request.options[Option.SERVER_ID] = socket.inet_aton(SERVER)
        request.options[Option.REQUESTED_ADDRESS] = socket.inet_aton(offer.yiaddr)
        ack, _ = self.one(request)
        self.assertEqual((ack.message_type, ack.yiaddr), (MessageType.ACK, offer.yiaddr))
        self.assertEqual(ack.file, offer.file)
        [event] = self.boot_log.events(discover.mac)
        self.assertEqual(event.stage, "dhcp")

    def test_ipxe_gets_script_and_same_address(self) -> None:
        firmware = decode(pcap.payload(pcap.UEFI_CAPTURE, 1))
        first, _ = self.one(firmware)
        ipxe = decode(pcap.payload(pcap.UEFI_CAPTURE, 18))
        offer, _ = self.one(ipxe)
        self.assertEqual(offer.yiaddr, first.yiaddr)
        self.assertIn(b"/_/ipxe?", offer.options[Option.BOOTFILE_NAME])

    def test_http_boot_gets_address_and_url(self) -> None:
        """
        A UEFI HTTP Boot client gets what proxy mode tells it (the
        program's URL on pxed's HTTP server, option 60 C{HTTPClient}, which
        EDK2 needs to take the offer as an HTTP Boot one) in the offer and
        ACK that give it its address.
        """
        discover = http_boot_discover(bytes.fromhex("525400770042"))
        offer, _ = self.one(discover)
        self.assertEqual(offer.message_type, MessageType.OFFER)
        self.assertIn(ipaddress.IPv4Address(offer.yiaddr), LAN)
        self.assertEqual(offer.options[Option.VENDOR_CLASS], b"HTTPClient")
        url = offer.options[Option.BOOTFILE_NAME]
        self.assertTrue(url.startswith(f"http://{SERVER}:8080/".encode()), url)
        request = http_boot_discover(bytes.fromhex("525400770042"))
        request.options[Option.MESSAGE_TYPE] = bytes((MessageType.REQUEST,))
        request.options[Option.SERVER_ID] = socket.inet_aton(SERVER)
        request.options[Option.REQUESTED_ADDRESS] = socket.inet_aton(offer.yiaddr)
        ack, _ = self.one(request)
        self.assertEqual((ack.message_type, ack.yiaddr), (MessageType.ACK, offer.yiaddr))
        self.assertEqual((ack.options[Option.VENDOR_CLASS], ack.options[Option.BOOTFILE_NAME]),
                         (b"HTTPClient", url))

    def test_clients_boot_ignores_plain(self) -> None:
        self.protocol.dhcp = parse_config({
            "bootloaders": {slug: str(path) for slug, path in self.bootloaders.items()},
            "dhcp": dict(self.dhcp, clients="boot", lease_file=str(
                Path(self.mktemp()).absolute()))}).dhcp
        self.assertEqual(self.send(plain("02:00:00:00:00:01", MessageType.DISCOVER)), [])
        self.assertEqual(len(self.send(decode(pcap.payload(pcap.UEFI_CAPTURE, 1)))), 1)


class ProbeTests(ServerTestCase):
    def test_probed_before_first_offer(self) -> None:
        prober = FakeProber(self.clock, busy=set())
        self.keeper.prober = prober
        self.protocol.datagramReceivedWithInfo(
            encode(plain("02:00:00:00:00:01", MessageType.DISCOVER)), ("0.0.0.0", 68), INFO)
        self.assertEqual(self.transport.written, [])
        self.clock.advance(0.5)
        [(data, _)] = self.transport.written
        self.assertEqual(prober.asked, [decode(data).yiaddr])


class ReloadTests(unittest.TestCase):
    """
    The dhcp: section is one of the parts a reload switches: ranges,
    options, lease time and clients at once; the mode, the probe and the
    lease file need a restart, and the running mode keeps its settings.
    """

    def setUp(self) -> None:
        from twisted.internet.testing import MemoryReactorClock

        from pxed.config import load_config
        from pxed.service import makeBootService

        self.dir = Path(self.mktemp()).absolute()
        self.dir.mkdir()
        self.path = self.dir / "pxed.yaml"
        self.write("192.168.77.100-192.168.77.103", "192.168.77.254")
        self.top = makeBootService(load_config(self.path), reactor=MemoryReactorClock())
        self.runtime: Any = self.top.getServiceNamed("policy")
        self.protocol: Any = self.top.getServiceNamed("dhcp").protocol  # type: ignore[attr-defined]

    def write(self, dhcp_range: str, router: str, mode: str = "full", ping: str = "false") -> None:
        self.path.write_text(
            "server: {ports: {dhcp: 0, pxe: 0, tftp: 0, http: 0}}\n"
            "bootloaders: {x86-bios: null, x64-uefi: null}\n"
            f"dhcp: {{mode: {mode}, range: {dhcp_range}, router: {router}, ping: {ping}, "
            f"lease_file: {self.dir / 'leases.json'}}}\n" if mode == "full" else
            "server: {ports: {dhcp: 0, pxe: 0, tftp: 0, http: 0}}\n"
            "bootloaders: {x86-bios: null, x64-uefi: null}\n")

    def test_reload_switches_ranges_and_options(self) -> None:
        self.assertEqual(self.protocol.dhcp.router, "192.168.77.254")
        self.write("192.168.77.150-192.168.77.160", "192.168.77.1")
        ok, message = self.runtime.reload()
        self.assertTrue(ok, message)
        self.assertNotIn("need a restart", message)
        self.assertEqual(self.protocol.dhcp.router, "192.168.77.1")
        self.assertEqual(str(self.protocol.dhcp.local.ranges[0][0]), "192.168.77.150")

    def test_ping_setting_wires_the_probe(self) -> None:
        """
        C{ping: false} leaves the keeper without a prober (addresses are
        offered at once); C{ping: true} gives it an ICMP prober (the tests
        run as root, so a raw socket opens).  Changing it is reported as
        needing a restart, and the running keeper keeps what it has.
        """
        from twisted.internet.testing import MemoryReactorClock

        from pxed.config import load_config
        from pxed.dhcp.ping import ICMPProber
        from pxed.service import makeBootService

        self.assertIsNone(self.protocol.keeper.prober)
        self.write("192.168.77.100-192.168.77.103", "192.168.77.254", ping="true")
        ok, message = self.runtime.reload()
        self.assertTrue(ok, message)
        self.assertIn("dhcp.ping", message)
        self.assertIsNone(self.protocol.keeper.prober)
        top = makeBootService(load_config(self.path), reactor=MemoryReactorClock())
        keeper = top.getServiceNamed("dhcp").protocol.keeper  # type: ignore[attr-defined]
        self.assertIsInstance(keeper.prober, ICMPProber)
        self.addCleanup(keeper.prober.close)

    def test_mode_needs_restart(self) -> None:
        self.write("", "", mode="proxy")
        ok, message = self.runtime.reload()
        self.assertTrue(ok, message)
        self.assertIn("dhcp.mode", message)
        self.assertTrue(self.protocol.dhcp.full)
        self.assertEqual(self.protocol.dhcp.router, "192.168.77.254")
