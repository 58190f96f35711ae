"""
Tests for L{pxed.dhcp.offertemplate}: an offer patched into the answer's
template is, byte for byte, the offer built and encoded field by field.
"""

from __future__ import annotations

import socket

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from pxed.dhcp.exchange import PROXYDHCP
from pxed.dhcp.menu import PXEMenu
from pxed.dhcp.offertemplate import offer_bytes
from pxed.dhcp.packet import DHCPPacket, MessageType, Option, decode, encode
from pxed.dhcp.pipeline import Arrival, Request, build_reply, echo_relay_information
from pxed.dhcp.reply import BootAnswer, proxy_offer
from pxed.machine import Machine, architecture

SETTINGS = settings(max_examples=400, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

addresses = st.builds(socket.inet_ntoa, st.binary(min_size=4, max_size=4))


@st.composite
def discovers(draw: st.DrawFn) -> bytes:
    options: dict[int, bytes] = {
        Option.MESSAGE_TYPE: bytes((MessageType.DISCOVER,)),
        Option.VENDOR_CLASS: draw(st.sampled_from([b"PXEClient:Arch:00007", b"HTTPClient"])),
    }
    extra = draw(st.dictionaries(st.sampled_from([12, 55, 93, 77, 175, 224]),
                                 st.binary(max_size=40), max_size=4))
    options.update(extra)
    if draw(st.booleans()):
        options[Option.CLIENT_UUID] = b"\x00" + draw(st.binary(min_size=16, max_size=16))
    if draw(st.booleans()):
        options[Option.RELAY_AGENT_INFORMATION] = draw(st.binary(max_size=255))
    packet = DHCPPacket(
        htype=draw(st.integers(0, 255)), hlen=draw(st.integers(0, 16)),
        hops=draw(st.integers(0, 255)), xid=draw(st.integers(0, 2**32 - 1)),
        secs=draw(st.integers(0, 65535)), flags=draw(st.integers(0, 65535)),
        ciaddr=draw(addresses), yiaddr=draw(addresses), siaddr=draw(addresses),
        giaddr=draw(st.one_of(st.just("0.0.0.0"), addresses)),
        chaddr=draw(st.binary(min_size=16, max_size=16)),
        sname=draw(st.binary(max_size=20).map(lambda b: b.replace(b"\x00", b"x"))),
        file=draw(st.binary(max_size=20).map(lambda b: b.replace(b"\x00", b"x"))),
        options=options,
    )
    return encode(packet)


answers = st.builds(
    BootAnswer,
    server=addresses,
    bootfile=st.one_of(st.text(max_size=300), st.sampled_from(["ipxe.efi", "a" * 127, "b" * 128])),
    discovery_control=st.booleans(),
    vendor_class=st.sampled_from([b"PXEClient", b"HTTPClient"]),
    menu=st.one_of(st.none(), st.builds(PXEMenu, timeout=st.integers(0, 255))),
    kind=st.sampled_from(["", "bootloader"]),
)


class OfferTemplateTests(unittest.TestCase):
    @SETTINGS
    @given(discovers(), answers)
    def test_same_bytes_as_encoding(self, datagram: bytes, answer: BootAnswer) -> None:
        """
        Whatever the request's header and options and whatever the answer,
        the template gives the bytes of the offer built and encoded.
        """
        request = decode(datagram)
        expected = encode(echo_relay_information(request, proxy_offer(request, answer)))
        self.assertEqual(offer_bytes(datagram, request, answer), expected)

    def test_answers_apart(self) -> None:
        """
        Two answers that differ in anything get their own template: the
        cache is keyed by the answer's value.
        """
        datagram = encode(DHCPPacket(xid=7, options={
            Option.MESSAGE_TYPE: b"\x01", Option.VENDOR_CLASS: b"PXEClient"}))
        request = decode(datagram)
        one = offer_bytes(datagram, request, BootAnswer("10.0.0.1", "one.efi"))
        two = offer_bytes(datagram, request, BootAnswer("10.0.0.1", "two.efi"))
        self.assertNotEqual(one, two)
        self.assertEqual(decode(two).options[Option.BOOTFILE_NAME], b"two.efi")
        self.assertEqual(decode(one).options[Option.BOOTFILE_NAME], b"one.efi")

    def test_pipeline_reply(self) -> None:
        """
        The pipeline's ProxyDHCP reply sends the template's bytes, and its
        packet (built on demand, for C{pxed explain}) is what they encode.
        """
        datagram = encode(DHCPPacket(xid=9, giaddr="10.1.2.3", options={
            Option.MESSAGE_TYPE: b"\x01", Option.VENDOR_CLASS: b"PXEClient",
            Option.RELAY_AGENT_INFORMATION: b"\x01\x03abc"}))
        packet = decode(datagram)
        machine = Machine(mac=packet.mac, arch=architecture(7))
        request = Request(Arrival(datagram, ("10.1.2.3", 67)), packet, machine, "10.0.0.1")
        reply = build_reply(request, BootAnswer("10.0.0.1", "ipxe.efi"), PROXYDHCP)
        self.assertEqual(reply.data, encode(reply.packet))
        self.assertEqual(reply.destination, ("10.1.2.3", 67))
        self.assertEqual(decode(reply.data).options[Option.RELAY_AGENT_INFORMATION], b"\x01\x03abc")
