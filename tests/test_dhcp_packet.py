"""
Tests for L{pxed.dhcp.packet}: the DHCP wire codec, on real firmware
captures, hand-built packets and hostile input.
"""

from __future__ import annotations

import socket
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from pxed.dhcp.packet import (
    BOOTREPLY,
    BOOTREQUEST,
    MAGIC_COOKIE,
    MIN_PACKET_SIZE,
    DHCPPacket,
    MalformedPacket,
    MessageType,
    Option,
    decode,
    encode,
)
from tests import pcap

MAC = "52:54:00:77:00:10"
CHADDR = bytes.fromhex("525400770010") + b"\x00" * 10
NULL_GUID = b"\x00" * 17

def header(op: int = BOOTREQUEST, hlen: int = 6, sname: bytes = b"", file: bytes = b"") -> bytes:
    """
    A 236-byte BOOTP header for hand-made datagrams.
    """
    return struct.pack(
        "!BBBBIHH4s4s4s4s16s64s128s", op, 1, hlen, 0, 0x01020304, 0, 0,
        b"\0" * 4, b"\0" * 4, b"\0" * 4, b"\0" * 4, CHADDR, sname, file,
    )


def datagram(options: bytes, **kwargs: object) -> bytes:
    return header(**kwargs) + MAGIC_COOKIE + options  # type: ignore[arg-type]


class CaptureReaderTests(unittest.TestCase):
    """
    The test helper that reads the captures finds what Wireshark finds.
    """

    def test_captures_present(self) -> None:
        for name in (pcap.BIOS_CAPTURE, pcap.UEFI_CAPTURE):
            self.assertTrue(pcap.capture(name).is_file())

    def test_missing_capture_fails(self) -> None:
        self.assertRaises(pcap.CaptureError, pcap.capture, "no-such-capture.pcap")

    def test_frame_counts(self) -> None:
        bios = pcap.read_frames(pcap.capture(pcap.BIOS_CAPTURE).read_bytes())
        uefi = pcap.read_frames(pcap.capture(pcap.UEFI_CAPTURE).read_bytes())
        self.assertEqual((len(bios), len(uefi)), (11, 28))

    def test_udp_endpoints(self) -> None:
        request = pcap.datagram(pcap.UEFI_CAPTURE, 6)
        self.assertEqual(
            (request.src, request.sport, request.dst, request.dport),
            ("192.168.77.145", 4011, "192.168.77.1", 4011),
        )
        discover = pcap.datagram(pcap.UEFI_CAPTURE, 1)
        self.assertEqual(
            (discover.src, discover.sport, discover.dst, discover.dport, len(discover.payload)),
            ("0.0.0.0", 68, "255.255.255.255", 67, 347),
        )

    def test_classic_pcap(self) -> None:
        """
        The reader also understands classic pcap files, in both byte orders.
        """
        frames = pcap.read_frames(pcap.capture(pcap.UEFI_CAPTURE).read_bytes())
        for endian, magic in (("<", 0xA1B2C3D4), (">", 0xA1B2C3D4), ("<", 0xA1B23C4D)):
            out = struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, 65535, 1)
            for _linktype, frame in frames:
                out += struct.pack(endian + "IIII", 0, 0, len(frame), len(frame)) + frame
            self.assertEqual(pcap.read_frames(out), frames)


class RealPacketTests(unittest.TestCase):
    """
    The firmware's own packets decode to what Wireshark shows.
    """

    def test_ovmf_discover(self) -> None:
        packet = decode(pcap.payload(pcap.UEFI_CAPTURE, 1))
        self.assertEqual(packet.op, BOOTREQUEST)
        self.assertEqual(packet.message_type, MessageType.DISCOVER)
        self.assertEqual(packet.xid, 0x14383625)
        self.assertEqual(packet.mac, MAC)
        self.assertTrue(packet.broadcast)
        self.assertFalse(packet.relayed)
        self.assertEqual(packet.options[Option.CLIENT_ARCH], b"\x00\x07")
        self.assertEqual(packet.options[Option.VENDOR_CLASS], b"PXEClient:Arch:00007:UNDI:003000")
        self.assertEqual(packet.options[Option.CLIENT_UUID], NULL_GUID)
        self.assertNotIn(Option.USER_CLASS, packet.options)
        self.assertEqual(packet.options[Option.CLIENT_NDI], b"\x01\x03\x00")
        self.assertEqual(
            list(packet.options),
            [Option.MESSAGE_TYPE, Option.MAX_MESSAGE_SIZE, Option.PARAMETER_REQUEST_LIST,
             Option.CLIENT_UUID, Option.CLIENT_NDI, Option.CLIENT_ARCH, Option.VENDOR_CLASS],
        )

    def test_ipxe_discover(self) -> None:
        packet = decode(pcap.payload(pcap.BIOS_CAPTURE, 1))
        self.assertEqual(packet.message_type, MessageType.DISCOVER)
        self.assertEqual(packet.xid, 0xF555353A)
        self.assertFalse(packet.broadcast)
        self.assertEqual(packet.options[Option.USER_CLASS], b"iPXE")
        self.assertEqual(packet.options[Option.CLIENT_ARCH], b"\x00\x00")
        self.assertEqual(len(packet.options[Option.IPXE_ENCAPSULATED]), 48)
        self.assertEqual(packet.options[Option.CLIENT_ID], b"\x01" + CHADDR[:6])

    def test_boot_server_request(self) -> None:
        packet = decode(pcap.payload(pcap.UEFI_CAPTURE, 6))
        self.assertEqual(packet.message_type, MessageType.REQUEST)
        self.assertEqual(packet.xid, 0x5D17BE46)
        self.assertEqual(packet.ciaddr, "192.168.77.145")
        self.assertFalse(packet.broadcast)

    def test_server_replies(self) -> None:
        """
        The plain DHCP server's and the reference proxy's packets are
        BOOTREPLYs (which the protocols must ignore).
        """
        for name, frame in pcap.SERVER_FRAMES:
            packet = decode(pcap.payload(name, frame))
            self.assertEqual(packet.op, BOOTREPLY, (name, frame))
            self.assertIn(packet.message_type, (MessageType.OFFER, MessageType.ACK))
        router = decode(pcap.payload(pcap.UEFI_CAPTURE, 3))
        self.assertEqual(router.yiaddr, "192.168.77.145")
        self.assertEqual(router.siaddr, "192.168.77.254")
        self.assertEqual(router.options[Option.SERVER_ID], socket.inet_aton("192.168.77.254"))
        proxy = decode(pcap.payload(pcap.UEFI_CAPTURE, 19))
        self.assertEqual(proxy.file, b"http://192.168.77.1:8080/boot.ipxe")

    def test_real_packets_round_trip_byte_for_byte(self) -> None:
        for name, frame in pcap.CLIENT_FRAMES + pcap.SERVER_FRAMES:
            raw = pcap.payload(name, frame)
            self.assertEqual(encode(decode(raw)), raw, (name, frame))


class RoundTripTests(unittest.TestCase):
    def test_built_packet(self) -> None:
        packet = DHCPPacket(
            op=BOOTREPLY, htype=1, hlen=6, hops=2, xid=0xDEADBEEF, secs=7, flags=0x8000,
            ciaddr="10.0.0.1", yiaddr="10.0.0.2", siaddr="10.0.0.3", giaddr="10.0.0.4",
            chaddr=CHADDR, sname=b"server", file=b"undionly.kpxe",
            options={Option.MESSAGE_TYPE: b"\x02", Option.SERVER_ID: b"\x0a\x00\x00\x03",
                     Option.VENDOR_CLASS: b"PXEClient", 224: b""},
        )
        raw = encode(packet)
        self.assertEqual(decode(raw), packet)
        self.assertEqual(len(raw), MIN_PACKET_SIZE)
        self.assertEqual(raw[:4], b"\x02\x01\x06\x02")
        self.assertEqual(raw[236:240], MAGIC_COOKIE)
        # Options in insertion order, an empty one as code + zero length,
        # then END, then padding.
        self.assertEqual(
            raw[240:240 + 23],
            b"\x35\x01\x02\x36\x04\x0a\x00\x00\x03\x3c\x09PXEClient\xe0\x00\xff",
        )
        self.assertEqual(raw[263:], b"\x00" * (MIN_PACKET_SIZE - 263))

    def test_defaults(self) -> None:
        packet = DHCPPacket()
        self.assertEqual(decode(encode(packet)), packet)

    def test_pad_and_end_options_are_not_written(self) -> None:
        raw = encode(DHCPPacket(options={Option.PAD: b"x", Option.END: b"y", 12: b"h"}))
        self.assertEqual(raw[240:244], b"\x0c\x01h\xff")

    def test_large_packet_not_padded(self) -> None:
        raw = encode(DHCPPacket(options={12: b"h" * 200}))
        self.assertEqual(len(raw), 240 + 2 + 200 + 1)
        self.assertEqual(raw[-1:], b"\xff")

    def test_long_option_is_split(self) -> None:
        """
        RFC 3396: a value over 255 bytes goes out as several options of the
        same code, which decode concatenates again.
        """
        value = bytes(range(256)) * 2 + b"tail"  # 516 bytes
        raw = encode(DHCPPacket(chaddr=CHADDR, options={43: value, 53: b"\x01"}))
        body = raw[240:]
        self.assertEqual(body[:2], b"\x2b\xff")
        self.assertEqual(body[2:257], value[:255])
        self.assertEqual(body[257:259], b"\x2b\xff")
        self.assertEqual(body[259:514], value[255:510])
        self.assertEqual(body[514:516], b"\x2b\x06")
        self.assertEqual(body[516:522], value[510:])
        self.assertEqual(body[522:526], b"\x35\x01\x01\xff")
        self.assertEqual(decode(raw).options, {43: value, 53: b"\x01"})

    def test_exactly_255_is_one_option(self) -> None:
        raw = encode(DHCPPacket(options={43: b"a" * 255}))
        self.assertEqual(raw[240:242], b"\x2b\xff")
        self.assertEqual(raw[240 + 257], Option.END)

    def test_split_options_concatenated(self) -> None:
        raw = datagram(b"\x0c\x03abc\x35\x01\x01\x0c\x02de\x00\x00\x0c\x00\x0c\x01f\xff")
        self.assertEqual(decode(raw).options, {12: b"abcdef", 53: b"\x01"})

    def test_sname_and_file_stop_at_nul(self) -> None:
        raw = datagram(b"\xff", sname=b"srv\x00junk", file=b"boot.efi\x00junk")
        packet = decode(raw)
        self.assertEqual((packet.sname, packet.file), (b"srv", b"boot.efi"))

    def test_end_optional(self) -> None:
        """
        Some ROMs omit END: the options up to the end still count.
        """
        self.assertEqual(decode(datagram(b"\x35\x01\x01\x00\x00")).options, {53: b"\x01"})
        self.assertEqual(decode(datagram(b"")).options, {})

    def test_after_end_ignored(self) -> None:
        self.assertEqual(decode(datagram(b"\x35\x01\x01\xff\x0c\x40")).options, {53: b"\x01"})

    def test_file_too_long_to_encode(self) -> None:
        self.assertRaises(ValueError, encode, DHCPPacket(file=b"f" * 128))
        self.assertRaises(ValueError, encode, DHCPPacket(sname=b"s" * 64))
        encode(DHCPPacket(file=b"f" * 127, sname=b"s" * 63))


class OverloadTests(unittest.TestCase):
    """
    Option 52 moves more options into the file and/or sname fields.
    """

    def test_file(self) -> None:
        raw = datagram(b"\x34\x01\x01\x35\x01\x01\xff", file=b"\x43\x04boot\xff",
                       sname=b"server")
        packet = decode(raw)
        self.assertEqual(packet.options, {52: b"\x01", 53: b"\x01", 67: b"boot"})
        self.assertEqual(packet.file, b"")
        self.assertEqual(packet.sname, b"server")

    def test_sname(self) -> None:
        raw = datagram(b"\x34\x01\x02\xff", file=b"pxelinux.0", sname=b"\x42\x02ab\xff")
        packet = decode(raw)
        self.assertEqual(packet.options, {52: b"\x02", 66: b"ab"})
        self.assertEqual(packet.sname, b"")
        self.assertEqual(packet.file, b"pxelinux.0")

    def test_both_concatenated_in_order(self) -> None:
        """
        RFC 3396: a long option continues in file, then in sname.
        """
        raw = datagram(b"\x0c\x02ab\x34\x01\x03\xff", file=b"\x0c\x02cd\xff",
                       sname=b"\x0c\x02ef\xff")
        packet = decode(raw)
        self.assertEqual(packet.options[12], b"abcdef")
        self.assertEqual((packet.file, packet.sname), (b"", b""))

    def test_invalid_overload(self) -> None:
        for value in (b"\x34\x01\x00", b"\x34\x01\x04", b"\x34\x00", b"\x34\x02\x01\x01"):
            self.assertRaises(MalformedPacket, decode, datagram(value + b"\xff"))

    def test_truncated_option_in_file(self) -> None:
        raw = datagram(b"\x34\x01\x01\xff", file=b"\x00" * 126 + b"\x43\x05")
        self.assertRaises(MalformedPacket, decode, raw)


class MalformedTests(unittest.TestCase):
    def test_too_short(self) -> None:
        for size in (0, 1, 235, 236, 239):
            self.assertRaises(MalformedPacket, decode, datagram(b"\xff")[:size])

    def test_no_cookie(self) -> None:
        raw = header() + b"\x63\x82\x53\x64" + b"\xff" * 60
        error = self.assertRaises(MalformedPacket, decode, raw)
        self.assertIn("cookie", str(error))

    def test_truncated_option_value(self) -> None:
        self.assertRaises(MalformedPacket, decode, datagram(b"\x35\x01\x01\x3c\x09PXE"))

    def test_truncated_before_length(self) -> None:
        self.assertRaises(MalformedPacket, decode, datagram(b"\x35\x01\x01\x3c"))

    def test_bad_op(self) -> None:
        for op in (0, 3, 255):
            self.assertRaises(MalformedPacket, decode, datagram(b"\xff", op=op))

    def test_hlen(self) -> None:
        self.assertRaises(MalformedPacket, decode, datagram(b"\xff", hlen=17))
        self.assertRaises(MalformedPacket, decode, datagram(b"\xff", hlen=255))
        self.assertEqual(decode(datagram(b"\xff", hlen=16)).hlen, 16)

    def test_is_value_error(self) -> None:
        self.assertTrue(issubclass(MalformedPacket, ValueError))

    def test_truncated_real_packets(self) -> None:
        """
        Cutting a real DISCOVER inside an option is detected.
        """
        raw = pcap.payload(pcap.UEFI_CAPTURE, 1)
        # The vendor class value is the last option before END.
        vendor = raw.index(b"PXEClient:Arch")
        self.assertRaises(MalformedPacket, decode, raw[:vendor + 5])


class PropertyTests(unittest.TestCase):
    def test_mac(self) -> None:
        self.assertEqual(DHCPPacket(chaddr=CHADDR).mac, MAC)
        self.assertEqual(DHCPPacket(chaddr=CHADDR, hlen=0).mac, MAC)
        self.assertEqual(DHCPPacket(chaddr=bytes(range(16)), hlen=8).mac,
                         "00:01:02:03:04:05:06:07")

    def test_message_type(self) -> None:
        self.assertIsNone(DHCPPacket().message_type)
        self.assertIsNone(DHCPPacket(options={53: b""}).message_type)
        self.assertIsNone(DHCPPacket(options={53: b"\x01\x01"}).message_type)
        self.assertEqual(DHCPPacket(options={53: b"\x03"}).message_type, MessageType.REQUEST)

    def test_flags(self) -> None:
        self.assertTrue(DHCPPacket(flags=0x8000).broadcast)
        self.assertFalse(DHCPPacket(flags=0x7FFF).broadcast)
        self.assertTrue(DHCPPacket(giaddr="10.1.2.3").relayed)
        self.assertFalse(DHCPPacket().relayed)

    def test_reply(self) -> None:
        """
        A reply copies the header fields a server must copy, takes the
        ones it is given, and copies nothing else (hops, secs, ciaddr,
        options stay at their defaults unless given).
        """
        request = DHCPPacket(htype=6, hlen=6, hops=2, xid=0x1234, secs=9, flags=0x8000,
                             ciaddr="10.0.0.5", giaddr="10.0.0.1", chaddr=CHADDR,
                             options={53: b"\x01"})
        reply = request.reply(yiaddr="10.0.0.7", options={53: b"\x02"})
        self.assertEqual(reply, DHCPPacket(op=BOOTREPLY, htype=6, hlen=6, xid=0x1234,
                                           flags=0x8000, yiaddr="10.0.0.7", giaddr="10.0.0.1",
                                           chaddr=CHADDR, options={53: b"\x02"}))
        self.assertEqual(request.reply(flags=0).flags, 0)


# Hypothesis strategies.

addresses = st.integers(0, 2**32 - 1).map(lambda n: socket.inet_ntoa(struct.pack("!I", n)))
no_nul = st.binary(max_size=127).map(lambda b: b.replace(b"\x00", b"\x01"))
option_codes = st.integers(1, 254).filter(lambda c: c != Option.OVERLOAD)
packets = st.builds(
    DHCPPacket,
    op=st.sampled_from([BOOTREQUEST, BOOTREPLY]),
    htype=st.integers(0, 255),
    hlen=st.integers(0, 16),
    hops=st.integers(0, 255),
    xid=st.integers(0, 2**32 - 1),
    secs=st.integers(0, 65535),
    flags=st.integers(0, 65535),
    ciaddr=addresses, yiaddr=addresses, siaddr=addresses, giaddr=addresses,
    chaddr=st.binary(min_size=16, max_size=16),
    sname=no_nul.map(lambda b: b[:63]),
    file=no_nul,
    options=st.dictionaries(option_codes, st.binary(max_size=600), max_size=12),
)


@st.composite
def plausible_datagrams(draw: st.DrawFn) -> bytes:
    """
    Random bytes that get past the cookie check, with a valid op and hlen
    most of the time, so the option parser sees random input.
    """
    head = bytearray(draw(st.binary(min_size=236, max_size=236)))
    if draw(st.booleans()):
        head[0] = draw(st.sampled_from([1, 2]))
        head[2] = draw(st.integers(0, 16))
    return bytes(head) + MAGIC_COOKIE + draw(st.binary(max_size=400))


def check_decode(test: unittest.TestCase, raw: bytes) -> None:
    """
    Decode must either give a packet or raise L{MalformedPacket}; a
    packet it gives encodes again (if its header strings fit) to a
    datagram that decodes to the same packet.
    """
    try:
        packet = decode(raw)
    except MalformedPacket:
        return
    if len(packet.sname) <= 63 and len(packet.file) <= 127:
        test.assertEqual(decode(encode(packet)), packet)


FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


class HypothesisTests(unittest.TestCase):
    @FUZZ
    @given(packets)
    def test_round_trip(self, packet: DHCPPacket) -> None:
        raw = encode(packet)
        self.assertGreaterEqual(len(raw), MIN_PACKET_SIZE)
        self.assertEqual(decode(raw), packet)

    @FUZZ
    @given(st.binary(max_size=700))
    def test_arbitrary_bytes(self, raw: bytes) -> None:
        check_decode(self, raw)

    @FUZZ
    @given(plausible_datagrams())
    def test_random_options(self, raw: bytes) -> None:
        check_decode(self, raw)

    @FUZZ
    @given(pcap.mutated_captures())
    def test_mutated_captures(self, raw: bytes) -> None:
        check_decode(self, raw)
