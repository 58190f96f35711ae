"""
Read the real firmware captures in C{shared/captures} for the tests.

A small reader written with C{struct} only, so the tests depend on no
capture library: it understands classic pcap (either byte order,
microsecond or nanosecond timestamps) and pcapng (section header,
interface description, enhanced/simple/obsolete packet blocks), Ethernet
(with 802.1Q tags) and Linux cooked captures, IPv4 and UDP.  That is
enough to get the DHCP payloads the firmware actually sent.

The captures are test data the suite relies on: when they are missing
the tests that use them fail (with the path they looked in), they never
skip.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

__all__ = ["CAPTURES", "BIOS_CAPTURE", "UEFI_CAPTURE", "CaptureError", "Datagram",
           "read_frames", "udp_datagrams", "capture", "datagram", "payload", "CLIENT_FRAMES",
           "SERVER_FRAMES", "real_client_packets", "mutated_captures", "raw", "changed",
           "OVMF_DISCOVER", "OVMF_REQUEST_67", "OVMF_REQUEST_4011", "IPXE_UEFI_DISCOVER",
           "IPXE_UEFI_REQUEST_67", "IPXE_BIOS_DISCOVER", "IPXE_BIOS_REQUEST_67"]

#: C{shared/captures}, beside the repository.
CAPTURES = Path(__file__).parents[1].parent / "shared" / "captures"
BIOS_CAPTURE = "bios-seabios-ipxe-rom.pcap"
UEFI_CAPTURE = "uefi-ovmf-edk2-pxe.pcap"

LINKTYPE_ETHERNET = 1
LINKTYPE_LINUX_SLL = 113
ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_VLAN = (0x8100, 0x88A8)
IPPROTO_UDP = 17


class CaptureError(Exception):
    """
    The capture file is missing or not a capture this reader understands.
    """


@dataclass(frozen=True)
class Datagram:
    """
    One UDP datagram of a capture.

    @ivar frame: the frame number, counting from 1 as Wireshark does.
    """

    frame: int
    src: str
    sport: int
    dst: str
    dport: int
    payload: bytes


def read_frames(data: bytes) -> list[tuple[int, bytes]]:
    """
    The frames of a classic pcap or pcapng file, as (link type, bytes).
    """
    if len(data) < 4:
        raise CaptureError("too short to be a capture")
    if data[:4] == b"\x0a\x0d\x0d\x0a":
        return _read_pcapng(data)
    return _read_pcap(data)


def _read_pcap(data: bytes) -> list[tuple[int, bytes]]:
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise CaptureError(f"unknown capture magic {magic.hex()}")
    header = struct.Struct(endian + "IHHiIII")
    if len(data) < header.size:
        raise CaptureError("truncated pcap global header")
    linktype = header.unpack_from(data)[6] & 0x0FFFFFFF
    record = struct.Struct(endian + "IIII")
    frames = []
    offset = header.size
    while offset + record.size <= len(data):
        _sec, _frac, caplen, _origlen = record.unpack_from(data, offset)
        offset += record.size
        if offset + caplen > len(data):
            raise CaptureError("truncated pcap record")
        frames.append((linktype, data[offset:offset + caplen]))
        offset += caplen
    return frames


def _read_pcapng(data: bytes) -> list[tuple[int, bytes]]:
    frames: list[tuple[int, bytes]] = []
    linktypes: list[int] = []
    endian = "<"
    offset = 0
    while offset + 12 <= len(data):
        if data[offset:offset + 4] == b"\x0a\x0d\x0d\x0a":
            # A section header: its byte-order magic decides the section's
            # byte order, and interface numbering starts again.
            bom = data[offset + 8:offset + 12]
            if bom == b"\x4d\x3c\x2b\x1a":
                endian = "<"
            elif bom == b"\x1a\x2b\x3c\x4d":
                endian = ">"
            else:
                raise CaptureError("bad pcapng byte-order magic")
            linktypes = []
        block_type, length = struct.unpack_from(endian + "II", data, offset)
        if length < 12 or length % 4 or offset + length > len(data):
            raise CaptureError(f"bad pcapng block length {length} at {offset}")
        body = data[offset + 8:offset + length - 4]
        if block_type == 1:  # interface description
            linktypes.append(struct.unpack_from(endian + "H", body)[0])
        elif block_type == 6:  # enhanced packet
            iface, _hi, _lo, caplen, _origlen = struct.unpack_from(endian + "IIIII", body)
            frames.append((linktypes[iface], body[20:20 + caplen]))
        elif block_type == 3:  # simple packet: interface 0, no captured length
            (origlen,) = struct.unpack_from(endian + "I", body)
            frames.append((linktypes[0], body[4:4 + origlen]))
        elif block_type == 2:  # obsolete packet block
            iface, _drops, _hi, _lo, caplen, _origlen = struct.unpack_from(
                endian + "HHIIII", body)
            frames.append((linktypes[iface], body[20:20 + caplen]))
        offset += length
    return frames


def _ipv4_payload(linktype: int, frame: bytes) -> bytes | None:
    if linktype == LINKTYPE_ETHERNET:
        if len(frame) < 14:
            return None
        ethertype = struct.unpack_from("!H", frame, 12)[0]
        offset = 14
        while ethertype in ETHERTYPE_VLAN and len(frame) >= offset + 4:
            ethertype = struct.unpack_from("!H", frame, offset + 2)[0]
            offset += 4
    elif linktype == LINKTYPE_LINUX_SLL:
        if len(frame) < 16:
            return None
        ethertype = struct.unpack_from("!H", frame, 14)[0]
        offset = 16
    else:
        raise CaptureError(f"link type {linktype} is not supported")
    if ethertype != ETHERTYPE_IPV4:
        return None
    return frame[offset:]


def _udp(frame_number: int, packet: bytes) -> Datagram | None:
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    ihl = (packet[0] & 0x0F) * 4
    total = struct.unpack_from("!H", packet, 2)[0]
    fragment = struct.unpack_from("!H", packet, 6)[0]
    if packet[9] != IPPROTO_UDP or fragment & 0x3FFF:
        return None  # not UDP, or a fragment (none in these captures)
    packet = packet[:total]  # drop Ethernet padding
    src = socket.inet_ntoa(packet[12:16])
    dst = socket.inet_ntoa(packet[16:20])
    if len(packet) < ihl + 8:
        return None
    sport, dport, length, _checksum = struct.unpack_from("!HHHH", packet, ihl)
    payload = packet[ihl + 8:ihl + length]
    if len(payload) != length - 8:
        raise CaptureError(f"frame {frame_number}: truncated UDP datagram")
    return Datagram(frame_number, src, sport, dst, dport, payload)


def capture(name: str) -> Path:
    """
    The path of a capture, which must exist: a missing capture is a test
    failure, not a reason to skip.
    """
    path = CAPTURES / name
    if not path.is_file():
        raise CaptureError(f"capture {path} is missing: the tests need shared/captures")
    return path


@cache
def udp_datagrams(name: str) -> tuple[Datagram, ...]:
    """
    Every IPv4 UDP datagram in the capture C{name}, in capture order.
    """
    frames = read_frames(capture(name).read_bytes())
    out = []
    for number, (linktype, frame) in enumerate(frames, start=1):
        ip = _ipv4_payload(linktype, frame)
        if ip is None:
            continue
        found = _udp(number, ip)
        if found is not None:
            out.append(found)
    return tuple(out)


def payload(name: str, frame: int) -> bytes:
    """
    The UDP payload of frame number C{frame} of the capture C{name}.
    """
    return datagram(name, frame).payload


def datagram(name: str, frame: int) -> Datagram:
    """
    The UDP datagram in frame number C{frame} of the capture C{name}.
    """
    for found in udp_datagrams(name):
        if found.frame == frame:
            return found
    raise CaptureError(f"{name} has no UDP datagram in frame {frame}")


#: (capture, frame) of every DHCP/BOOTP datagram in the captures.
CLIENT_FRAMES = [
    (BIOS_CAPTURE, 1), (BIOS_CAPTURE, 4),
    (UEFI_CAPTURE, 1), (UEFI_CAPTURE, 4), (UEFI_CAPTURE, 6),
    (UEFI_CAPTURE, 18), (UEFI_CAPTURE, 21),
]
SERVER_FRAMES = [
    (BIOS_CAPTURE, 2), (BIOS_CAPTURE, 3), (BIOS_CAPTURE, 5),
    (UEFI_CAPTURE, 2), (UEFI_CAPTURE, 3), (UEFI_CAPTURE, 5),
    (UEFI_CAPTURE, 7), (UEFI_CAPTURE, 19), (UEFI_CAPTURE, 20),
    (UEFI_CAPTURE, 22),
]


def real_client_packets() -> list[bytes]:
    return [payload(name, frame) for name, frame in CLIENT_FRAMES]


@st.composite
def mutated_captures(draw: st.DrawFn) -> bytes:
    """
    A real client packet with bytes flipped, cut off or appended.
    """
    raw = bytearray(draw(st.sampled_from(real_client_packets())))
    for _ in range(draw(st.integers(1, 8))):
        action = draw(st.sampled_from(["flip", "set", "truncate", "extend", "delete", "insert"]))
        if not raw:
            raw += draw(st.binary(max_size=8))
            continue
        index = draw(st.integers(0, len(raw) - 1))
        if action == "flip":
            raw[index] ^= 1 << draw(st.integers(0, 7))
        elif action == "set":
            # Mostly aim at the options, where lengths live.
            if len(raw) > 240 and draw(st.booleans()):
                index = draw(st.integers(240, len(raw) - 1))
            raw[index] = draw(st.integers(0, 255))
        elif action == "truncate":
            del raw[index:]
        elif action == "extend":
            raw += draw(st.binary(min_size=1, max_size=300))
        elif action == "delete":
            del raw[index:index + draw(st.integers(1, 16))]
        else:
            raw[index:index] = draw(st.binary(min_size=1, max_size=16))
    return bytes(raw)


#: Frames of the captures by what they are: EDK2's PXE requests, and iPXE's.
OVMF_DISCOVER = (UEFI_CAPTURE, 1)
OVMF_REQUEST_67 = (UEFI_CAPTURE, 4)
OVMF_REQUEST_4011 = (UEFI_CAPTURE, 6)
IPXE_UEFI_DISCOVER = (UEFI_CAPTURE, 18)
IPXE_UEFI_REQUEST_67 = (UEFI_CAPTURE, 21)
IPXE_BIOS_DISCOVER = (BIOS_CAPTURE, 1)
IPXE_BIOS_REQUEST_67 = (BIOS_CAPTURE, 4)


def raw(frame: tuple[str, int]) -> bytes:
    """
    The DHCP payload of one (capture, frame).
    """
    return payload(*frame)


def changed(frame: tuple[str, int], **fields: Any) -> bytes:
    """
    A captured packet with some fields changed; C{options} entries with a
    value of C{None} are removed (L{pxed.testing.packets.changed}).
    """
    from pxed.testing.packets import changed as change

    return change(raw(frame), **fields)
