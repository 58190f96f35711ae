"""
Property-based tests (hypothesis) of the ProxyDHCP and boot server
protocols: whatever arrives, no exception escapes and nothing is logged
as a failure; garbage and non-booting clients get nothing; whatever is
sent is a well-formed proxy reply to the right place.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from pxed.dhcp.packet import (
    BOOTREPLY,
    BOOTREQUEST,
    MAGIC_COOKIE,
    DHCPPacket,
    MalformedPacket,
    Option,
    decode,
    encode,
)
from pxed.dhcp.protocol import BootServerProtocol, ProxyDHCPProtocol
from pxed.dhcp.responder import BootResponder
from pxed.net import PacketInfo
from pxed.policy import BootSpec, StaticPolicy
from pxed.state import MemoryBootLog
from pxed.testing.packets import ViaTransport
from tests.fixtures import write_bootloaders

SERVER = "192.168.77.1"
SOURCE = ("192.168.77.150", 4011)
NAMES = {2: "eth0", 3: "eth1"}
SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])

addresses = st.builds(socket.inet_ntoa, st.binary(min_size=4, max_size=4))
#: Relay agents' addresses (10.0.0.0/8 on this imaginary site).
relays = st.builds(lambda b: socket.inet_ntoa(b"\x0a" + b), st.binary(min_size=3, max_size=3))
vendor_classes = st.one_of(
    st.sampled_from([b"PXEClient", b"HTTPClient", b"MSFT 5.0", b"", b"PXEClient:Arch:00007",
                     b"HTTPClient:Arch:00016:UNDI:003000", b"PXEClient:Arch:00000:UNDI:002001"]),
    st.sampled_from([b"PXEClient", b"HTTPClient"]).flatmap(
        lambda prefix: st.binary(max_size=30).map(lambda tail: prefix + tail)),
    st.binary(max_size=40),
)
option_values = st.dictionaries(
    st.sampled_from([Option.MESSAGE_TYPE, Option.VENDOR_CLASS, Option.CLIENT_ARCH,
                     Option.CLIENT_UUID, Option.USER_CLASS, Option.IPXE_ENCAPSULATED,
                     Option.VENDOR_SPECIFIC, Option.CLIENT_NDI, 12, 55, 61, 224]),
    st.binary(max_size=64), max_size=8,
)


@st.composite
def requests(draw: st.DrawFn) -> DHCPPacket:
    """
    DHCP packets that are mostly plausible boot requests, with every field
    free to be odd.
    """
    options = draw(option_values)
    # Mostly what a booting client sends, so that the replies get checked
    # too; every field still strays now and then.
    if draw(st.integers(0, 3)):
        options[Option.MESSAGE_TYPE] = bytes((draw(st.sampled_from([1, 1, 3, 8, 2, 99])),))
    if draw(st.integers(0, 3)):
        options[Option.VENDOR_CLASS] = draw(vendor_classes)
    if draw(st.booleans()):
        options[Option.CLIENT_ARCH] = draw(st.sampled_from([0, 7, 9, 11, 16, 0xFFFF])).to_bytes(
            2, "big")
    return DHCPPacket(
        op=draw(st.sampled_from([BOOTREQUEST] * 5 + [BOOTREPLY])),
        htype=draw(st.sampled_from([1] * 5 + [6])),
        hlen=draw(st.sampled_from([6] * 5 + [0, 16])),
        hops=draw(st.integers(0, 255)),
        xid=draw(st.integers(0, 2**32 - 1)),
        flags=draw(st.sampled_from([0, 0x8000])),
        ciaddr=draw(st.sampled_from(["0.0.0.0", "192.168.77.150"])),
        giaddr=draw(st.one_of(st.just("0.0.0.0"), addresses)),
        chaddr=draw(st.binary(min_size=16, max_size=16)),
        options=options,
    )


@st.composite
def boot_requests(draw: st.DrawFn) -> DHCPPacket:
    """
    Requests every one of which pxed must answer on one of its ports:
    random in everything but what makes a served network-boot client.
    """
    packet = draw(requests())
    packet.op, packet.htype, packet.hlen = BOOTREQUEST, 1, 6
    packet.options[Option.MESSAGE_TYPE] = bytes((draw(st.sampled_from([1, 3, 8])),))
    code = draw(st.sampled_from([0, 7, 9, 16]))
    packet.options[Option.CLIENT_ARCH] = code.to_bytes(2, "big")
    prefix = b"HTTPClient" if code == 16 else b"PXEClient"
    packet.options[Option.VENDOR_CLASS] = prefix + draw(st.binary(max_size=30))
    packet.options.pop(Option.VENDOR_SPECIFIC, None)  # no menu choice of "local boot"
    # A giaddr a reply may go to (a unicast relay, not pxed), and a GUID
    # of the one shape RFC 4578 allows, if any (pxed.dhcp.sanity).
    packet.giaddr = draw(st.one_of(st.just("0.0.0.0"), relays))
    uuid = draw(st.one_of(st.none(), st.binary(min_size=16, max_size=16)))
    if uuid is None:
        packet.options.pop(Option.CLIENT_UUID, None)
    else:
        packet.options[Option.CLIENT_UUID] = b"\0" + uuid
    return packet


@st.composite
def unanswerable(draw: st.DrawFn) -> DHCPPacket:
    """
    Served boot requests spoiled in one way pxed must never answer: a
    giaddr no reply may go to, or a malformed option 93 or 97.
    """
    packet = draw(boot_requests())
    spoil = draw(st.sampled_from(["giaddr", "93", "97"]))
    if spoil == "giaddr":
        packet.giaddr = draw(st.one_of(
            st.sampled_from(["255.255.255.255", "127.0.0.1", "127.9.9.9", SERVER, "0.1.2.3"]),
            st.builds(lambda a: f"{a}.1.2.3", st.integers(224, 255))))
    elif spoil == "93":
        packet.options[Option.CLIENT_ARCH] = draw(st.sampled_from([b"", b"\x00", b"\x00\x07\x00"]))
    else:
        packet.options[Option.CLIENT_UUID] = draw(st.one_of(
            st.binary(max_size=16), st.binary(min_size=18, max_size=300),
            st.binary(min_size=16, max_size=16).map(lambda b: b"\x01" + b)))
    return packet


class PropertyTests(unittest.TestCase):
    def setUp(self) -> None:
        base = Path(self.mktemp()).absolute()
        base.mkdir()
        (base / "vmlinuz").write_bytes(b"k")
        loaders = write_bootloaders(base)
        policy = StaticPolicy({}, default=BootSpec(kernel=str(base / "vmlinuz")))
        responder = BootResponder(policy, loaders, 80, MemoryBootLog())
        self.protocols: list[tuple[Any, ViaTransport]] = []
        for cls in (ProxyDHCPProtocol, BootServerProtocol):
            for address in (SERVER, None):
                protocol = cls(responder, address, ifname=NAMES.get,
                               route=lambda destination: "10.99.0.1")
                transport = ViaTransport()
                protocol.makeConnection(transport)
                self.protocols.append((protocol, transport))

    def feed(self, data: bytes, info: PacketInfo | None) -> list[tuple[Any, bytes, Any, Any]]:
        """
        Give C{data} to every protocol; return what each sent as
        (protocol, bytes, destination, via-info or None).
        """
        sent = []
        for protocol, transport in self.protocols:
            protocol.datagramReceivedWithInfo(data, SOURCE, info)
            for out, dest in transport.written:
                sent.append((protocol, out, dest, None))
            for out, dest, via in transport.via:
                sent.append((protocol, out, dest, via))
            transport.written.clear()
            transport.via.clear()
        self.assertEqual(self.flushLoggedErrors(), [])
        return sent

    @SETTINGS
    @given(st.binary(max_size=600), st.one_of(st.none(), st.just(PacketInfo(2, SERVER, SERVER))))
    def test_garbage_gets_nothing(self, data: bytes, info: PacketInfo | None) -> None:
        """
        Bytes that are not a DHCP packet are never answered.
        """
        try:
            decode(data)
        except MalformedPacket:
            pass
        else:
            assume(False)
        self.assertEqual(self.feed(data, info), [])

    @SETTINGS
    @given(st.binary(min_size=236, max_size=236), st.binary(max_size=300))
    def test_header_and_cookie_then_junk(self, header: bytes, tail: bytes) -> None:
        """
        A plausible header with random options: no exception, and any
        reply is a proxy reply for that very request.
        """
        data = header + MAGIC_COOKIE + tail
        for protocol, out, dest, _ in self.feed(data, PacketInfo(2, SERVER, "255.255.255.255")):
            self.assertReplyTo(decode(data), decode(out), dest, protocol)

    @SETTINGS
    @given(requests(), st.one_of(st.none(), st.builds(PacketInfo, st.sampled_from([0, 2, 3, 9]),
                                                       addresses, addresses)))
    def test_requests(self, request: DHCPPacket, info: PacketInfo | None) -> None:
        sent = self.feed(encode(request), info)
        vendor = request.options.get(Option.VENDOR_CLASS, b"")
        if not vendor.startswith((b"PXEClient", b"HTTPClient")) or request.op != BOOTREQUEST:
            self.assertEqual(sent, [])
        for protocol, out, dest, via in sent:
            reply = decode(out)
            self.assertReplyTo(request, reply, dest, protocol)
            if dest == ("255.255.255.255", 68):
                self.assertIs(via, info)

    def assertReplyTo(self, request: DHCPPacket, reply: DHCPPacket, dest: tuple[str, int],
                      protocol: Any) -> None:
        self.assertEqual(reply.op, BOOTREPLY)
        self.assertEqual(reply.yiaddr, "0.0.0.0")
        self.assertEqual((reply.xid, reply.chaddr[:request.hlen]),
                         (request.xid, request.chaddr[:request.hlen]))
        self.assertEqual(reply.giaddr, request.giaddr)
        self.assertIn(reply.options[Option.VENDOR_CLASS], (b"PXEClient", b"HTTPClient"))
        self.assertEqual(reply.options[Option.SERVER_ID], socket.inet_aton(reply.siaddr))
        self.assertNotEqual(reply.siaddr, "0.0.0.0")
        if protocol.address is not None:
            self.assertEqual(reply.siaddr, protocol.address)
        if isinstance(protocol, ProxyDHCPProtocol):
            expected = ((request.giaddr, 67) if request.giaddr != "0.0.0.0"
                        else ("255.255.255.255", 68))
            self.assertEqual(dest, expected)
            self.assertTrue(reply.broadcast)
        else:
            self.assertEqual(dest, SOURCE)

    @SETTINGS
    @given(boot_requests(), addresses)
    def test_boot_requests_answered(self, request: DHCPPacket, local: str) -> None:
        """
        Every served boot request is answered, once per protocol that
        handles its message type, with a reply fit for it.
        """
        assume(local != "0.0.0.0" and local != request.giaddr)
        sent = self.feed(encode(request), PacketInfo(2, local, "255.255.255.255"))
        discover = request.message_type == 1
        self.assertEqual(len(sent), 2)
        for protocol, out, dest, _ in sent:
            self.assertIsInstance(protocol, ProxyDHCPProtocol if discover else BootServerProtocol)
            reply = decode(out)
            self.assertReplyTo(request, reply, dest, protocol)
            if protocol.address is None and request.giaddr == "0.0.0.0":
                self.assertEqual(reply.siaddr, local)

    @SETTINGS
    @given(unanswerable())
    def test_spoiled_requests_unanswered(self, request: DHCPPacket) -> None:
        """
        A bad giaddr or a malformed option 93 or 97 gets no reply, on
        either port, however the rest looks.
        """
        sent = self.feed(encode(request), PacketInfo(2, SERVER, "255.255.255.255"))
        self.assertEqual(sent, [])

    @SETTINGS
    @given(requests(), st.sampled_from([0, 2, 3, 9]))
    def test_interface_restriction(self, request: DHCPPacket, ifindex: int) -> None:
        """
        A protocol serving only eth1 never answers anything arriving
        elsewhere.
        """
        protocol, transport = self.protocols[0]
        protocol.interfaces = frozenset({"eth1"})
        # One protocol serves every example: start each with nothing sent.
        transport.written.clear()
        transport.via.clear()
        protocol.datagramReceivedWithInfo(encode(request), SOURCE,
                                          PacketInfo(ifindex, SERVER, SERVER))
        if ifindex != 3:
            self.assertEqual((transport.written, transport.via), ([], []))
        self.assertEqual(self.flushLoggedErrors(), [])
