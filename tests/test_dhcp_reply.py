"""
Tests for L{pxed.dhcp.reply}: ProxyDHCP offers and boot-server ACKs built
for the real firmware's requests, checked field by field against what
firmware requires and against the reference proxy server's own replies in
the captures.
"""

from __future__ import annotations

import socket

from twisted.trial import unittest

from pxed.dhcp.packet import (
    BOOTREPLY,
    BROADCAST_FLAG,
    MIN_PACKET_SIZE,
    DHCPPacket,
    MessageType,
    Option,
    decode,
    encode,
)
from pxed.dhcp.reply import DISCOVERY_CONTROL_BOOT_FILE, BootAnswer, boot_ack, proxy_offer
from tests import pcap

SERVER = "192.168.77.1"
NULL_GUID = b"\x00" * 17


def request(name: str, frame: int) -> DHCPPacket:
    return decode(pcap.payload(name, frame))


class ProxyOfferTests(unittest.TestCase):
    def check_offer(self, req: DHCPPacket, reply: DHCPPacket, bootfile: bytes) -> None:
        """
        What every proxy offer must carry.
        """
        self.assertEqual(reply.op, BOOTREPLY)
        self.assertEqual(reply.message_type, MessageType.OFFER)
        self.assertEqual(reply.xid, req.xid)
        self.assertEqual(reply.chaddr, req.chaddr)
        self.assertEqual((reply.htype, reply.hlen), (req.htype, req.hlen))
        self.assertEqual(reply.yiaddr, "0.0.0.0")
        self.assertEqual(reply.siaddr, SERVER)
        self.assertEqual(reply.giaddr, req.giaddr)
        self.assertTrue(reply.broadcast)
        self.assertEqual(reply.options[Option.SERVER_ID], socket.inet_aton(SERVER))
        self.assertEqual(reply.options[Option.VENDOR_CLASS], b"PXEClient")
        self.assertEqual(reply.options[Option.BOOTFILE_NAME], bootfile)
        if len(bootfile) <= 127:
            self.assertEqual(reply.file, bootfile)
        raw = encode(reply)
        self.assertGreaterEqual(len(raw), MIN_PACKET_SIZE)
        self.assertEqual(decode(raw), reply)

    def test_ovmf_discover(self) -> None:
        """
        UEFI: no option 43 (EDK2 then asks on port 4011), GUID echoed.
        """
        req = request(pcap.UEFI_CAPTURE, 1)
        reply = proxy_offer(req, BootAnswer(SERVER, "snponly.efi"))
        self.check_offer(req, reply, b"snponly.efi")
        self.assertEqual(reply.options[Option.CLIENT_UUID], NULL_GUID)
        self.assertNotIn(Option.VENDOR_SPECIFIC, reply.options)

    def test_bios_discovery_control(self) -> None:
        req = request(pcap.BIOS_CAPTURE, 1)
        url = "http://192.168.77.1/_/ipxe?mac=52:54:00:77:00:10&arch=0"
        reply = proxy_offer(req, BootAnswer(SERVER, url, discovery_control=True))
        self.check_offer(req, reply, url.encode())
        self.assertEqual(reply.options[Option.VENDOR_SPECIFIC], b"\x06\x01\x08\xff")
        self.assertEqual(DISCOVERY_CONTROL_BOOT_FILE, b"\x06\x01\x08\xff")
        # The BIOS iPXE ROM did not set the broadcast flag; the offer does.
        self.assertFalse(req.broadcast)

    def test_matches_reference_proxy(self) -> None:
        """
        On the fields firmware checks, our offer says what the reference
        proxy server said to the same DISCOVER (and the client followed).
        """
        for discover, theirs in ((1, 2), (18, 19)):
            req = request(pcap.UEFI_CAPTURE, discover)
            reference = request(pcap.UEFI_CAPTURE, theirs)
            ours = proxy_offer(req, BootAnswer(SERVER, "x"))
            for name in ("op", "htype", "hlen", "xid", "yiaddr", "siaddr", "giaddr", "chaddr"):
                self.assertEqual(getattr(ours, name), getattr(reference, name), name)
            self.assertEqual(ours.flags & BROADCAST_FLAG, reference.flags & BROADCAST_FLAG)
            for code in (Option.MESSAGE_TYPE, Option.SERVER_ID, Option.VENDOR_CLASS,
                         Option.CLIENT_UUID):
                self.assertEqual(ours.options[code], reference.options[code], code)

    def test_no_guid_not_invented(self) -> None:
        req = request(pcap.UEFI_CAPTURE, 1)
        del req.options[Option.CLIENT_UUID]
        reply = proxy_offer(req, BootAnswer(SERVER, "snponly.efi"))
        self.assertNotIn(Option.CLIENT_UUID, reply.options)

    def test_relayed(self) -> None:
        req = request(pcap.UEFI_CAPTURE, 1)
        req.giaddr = "10.9.8.7"
        reply = proxy_offer(req, BootAnswer(SERVER, "snponly.efi"))
        self.assertEqual(reply.giaddr, "10.9.8.7")
        self.assertTrue(reply.relayed)

    def test_request_untouched(self) -> None:
        req = request(pcap.BIOS_CAPTURE, 1)
        before = decode(pcap.payload(pcap.BIOS_CAPTURE, 1))
        proxy_offer(req, BootAnswer(SERVER, "undionly.kpxe", discovery_control=True))
        self.assertEqual(req, before)

    def test_long_url(self) -> None:
        """
        A boot file too long for the 128-byte file field still goes out,
        in option 67.
        """
        req = request(pcap.UEFI_CAPTURE, 18)
        url = "http://192.168.77.1:8080/_/ipxe?" + "x" * 200
        reply = proxy_offer(req, BootAnswer(SERVER, url))
        self.assertEqual(reply.file, b"")
        self.assertEqual(reply.options[Option.BOOTFILE_NAME], url.encode())
        raw = encode(reply)
        self.assertEqual(decode(raw).options[Option.BOOTFILE_NAME], url.encode())

    def test_boundary_127(self) -> None:
        req = request(pcap.UEFI_CAPTURE, 18)
        name = "f" * 127
        self.assertEqual(proxy_offer(req, BootAnswer(SERVER, name)).file, name.encode())
        self.assertEqual(proxy_offer(req, BootAnswer(SERVER, name + "g")).file, b"")

    def test_vendor_class(self) -> None:
        req = request(pcap.UEFI_CAPTURE, 1)
        reply = proxy_offer(req, BootAnswer(SERVER, "x", vendor_class=b"HTTPClient"))
        self.assertEqual(reply.options[Option.VENDOR_CLASS], b"HTTPClient")


class BootAckTests(unittest.TestCase):
    def test_ovmf_request(self) -> None:
        req = request(pcap.UEFI_CAPTURE, 6)
        reply = boot_ack(req, BootAnswer(SERVER, "ipxe.efi"))
        self.assertEqual(reply.op, BOOTREPLY)
        self.assertEqual(reply.message_type, MessageType.ACK)
        self.assertEqual(reply.xid, 0x5D17BE46)
        self.assertEqual(reply.chaddr, req.chaddr)
        self.assertEqual(reply.ciaddr, "192.168.77.145")
        self.assertEqual(reply.yiaddr, "0.0.0.0")
        self.assertEqual(reply.siaddr, SERVER)
        self.assertEqual(reply.file, b"ipxe.efi")
        self.assertEqual(reply.options[Option.BOOTFILE_NAME], b"ipxe.efi")
        self.assertEqual(reply.options[Option.SERVER_ID], socket.inet_aton(SERVER))
        self.assertEqual(reply.options[Option.VENDOR_CLASS], b"PXEClient")
        self.assertEqual(reply.options[Option.CLIENT_UUID], NULL_GUID)
        self.assertNotIn(Option.VENDOR_SPECIFIC, reply.options)
        self.assertFalse(reply.broadcast)
        self.assertGreaterEqual(len(encode(reply)), MIN_PACKET_SIZE)

    def test_matches_reference_ack(self) -> None:
        """
        The reference proxy's ACK (which OVMF followed to fetch ipxe.efi)
        agrees with ours on every header field and on options 53, 54, 60
        and 97.
        """
        req = request(pcap.UEFI_CAPTURE, 6)
        reference = request(pcap.UEFI_CAPTURE, 7)
        ours = boot_ack(req, BootAnswer(SERVER, "ipxe.efi"))
        for name in ("op", "htype", "hlen", "xid", "flags", "yiaddr", "siaddr", "giaddr",
                     "chaddr", "file"):
            self.assertEqual(getattr(ours, name), getattr(reference, name), name)
        for code in (Option.MESSAGE_TYPE, Option.SERVER_ID, Option.VENDOR_CLASS,
                     Option.CLIENT_UUID):
            self.assertEqual(ours.options[code], reference.options[code], code)

    def test_bios_on_4011(self) -> None:
        req = request(pcap.UEFI_CAPTURE, 6)
        req.options[Option.CLIENT_ARCH] = b"\x00\x00"
        reply = boot_ack(req, BootAnswer(SERVER, "undionly.kpxe", discovery_control=True))
        self.assertEqual(reply.options[Option.VENDOR_SPECIFIC], DISCOVERY_CONTROL_BOOT_FILE)
        self.assertEqual(reply.message_type, MessageType.ACK)
