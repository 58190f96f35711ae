# -*- test-case-name: tests.test_dhcp_packet -*-
"""
The DHCP/BOOTP wire codec: bytes in, L{DHCPPacket} out, and back.

Pure: no sockets, no clocks, no logging.  Everything that can go wrong with
hostile or broken input surfaces as L{MalformedPacket} (a C{ValueError}), so
the protocols can drop a bad datagram with one C{except} clause and carry on.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BOOTREQUEST",
    "BOOTREPLY",
    "MAGIC_COOKIE",
    "MIN_PACKET_SIZE",
    "MalformedPacket",
    "MessageType",
    "Option",
    "DHCPPacket",
    "decode",
    "encode",
    "option_spans",
]

BOOTREQUEST = 1
BOOTREPLY = 2
MAGIC_COOKIE = b"\x63\x82\x53\x63"
#: Old PXE ROMs drop replies shorter than the BOOTP minimum (RFC 951).
MIN_PACKET_SIZE = 300
BROADCAST_FLAG = 0x8000

_HEADER = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")
_HEADER_SIZE = _HEADER.size  # 236
_OPTIONS_START = _HEADER_SIZE + len(MAGIC_COOKIE)


class MalformedPacket(ValueError):
    """
    The datagram is not a DHCP packet we can make sense of.
    """


class MessageType:
    """
    Option 53 values (RFC 2132 section 9.6).
    """

    DISCOVER = 1
    OFFER = 2
    REQUEST = 3
    DECLINE = 4
    ACK = 5
    NAK = 6
    RELEASE = 7
    INFORM = 8

    NAMES = {
        1: "DISCOVER",
        2: "OFFER",
        3: "REQUEST",
        4: "DECLINE",
        5: "ACK",
        6: "NAK",
        7: "RELEASE",
        8: "INFORM",
    }


class Option:
    """
    Option codes pxed reads or writes.
    """

    PAD = 0
    VENDOR_SPECIFIC = 43
    REQUESTED_ADDRESS = 50
    OVERLOAD = 52
    MESSAGE_TYPE = 53
    SERVER_ID = 54
    PARAMETER_REQUEST_LIST = 55
    MAX_MESSAGE_SIZE = 57
    VENDOR_CLASS = 60
    CLIENT_ID = 61
    TFTP_SERVER_NAME = 66
    BOOTFILE_NAME = 67
    USER_CLASS = 77
    RELAY_AGENT_INFORMATION = 82
    CLIENT_ARCH = 93
    CLIENT_NDI = 94
    CLIENT_UUID = 97
    IPXE_ENCAPSULATED = 175
    END = 255


@dataclass
class DHCPPacket:
    """
    One BOOTP/DHCP message.

    Addresses are kept as dotted-quad strings because every consumer (logs,
    the policy, reply routing) wants them that way; C{chaddr} stays raw bytes
    so non-Ethernet hardware types survive a round trip.  C{options} keeps
    insertion order, which is the order written on the wire.
    """

    op: int = BOOTREQUEST
    htype: int = 1
    hlen: int = 6
    hops: int = 0
    xid: int = 0
    secs: int = 0
    flags: int = 0
    ciaddr: str = "0.0.0.0"
    yiaddr: str = "0.0.0.0"
    siaddr: str = "0.0.0.0"
    giaddr: str = "0.0.0.0"
    chaddr: bytes = b"\x00" * 16
    sname: bytes = b""
    file: bytes = b""
    options: dict[int, bytes] = field(default_factory=dict)

    @property
    def mac(self) -> str:
        """
        The client hardware address as lower-case colon-separated hex.
        """
        hlen = min(self.hlen, 16) or 6
        return self.chaddr[:hlen].hex(":")

    @property
    def message_type(self) -> int | None:
        value = self.options.get(Option.MESSAGE_TYPE)
        if value is None or len(value) != 1:
            return None
        return value[0]

    @property
    def broadcast(self) -> bool:
        return bool(self.flags & BROADCAST_FLAG)

    @property
    def relayed(self) -> bool:
        return self.giaddr != "0.0.0.0"

    def reply(self, **fields: Any) -> DHCPPacket:
        """
        A BOOTREPLY to this request: the header fields a server copies from
        the request (RFC 2131 table 3: htype, hlen, xid, flags, giaddr,
        chaddr), then C{fields} (which may override any of them).  Every
        reply pxed builds starts here, so none forgets one.
        """
        values: dict[str, Any] = {
            "op": BOOTREPLY, "htype": self.htype, "hlen": self.hlen, "xid": self.xid,
            "flags": self.flags, "giaddr": self.giaddr, "chaddr": self.chaddr,
        }
        values.update(fields)
        return DHCPPacket(**values)


def _addr(raw: bytes) -> str:
    return socket.inet_ntoa(raw)


def option_spans(buf: bytes, start: int = 0) -> Iterator[tuple[int, int, int]]:
    """
    Walk a run of code/length/value options in C{buf} from C{start}: the
    code of each, and where its value starts and stops; PAD is skipped,
    END (or the end of C{buf}: some ROMs omit END) stops the walk.

    @raise MalformedPacket: an option runs past the end.
    """
    i = start
    end = len(buf)
    while i < end:
        code = buf[i]
        if code == Option.PAD:
            i += 1
            continue
        if code == Option.END:
            return
        if i + 1 >= end:
            raise MalformedPacket(f"option {code} truncated before its length")
        stop = i + 2 + buf[i + 1]
        if stop > end:
            raise MalformedPacket(f"option {code} claims {buf[i + 1]} bytes, {end - i - 2} left")
        yield code, i + 2, stop
        i = stop


def _parse_options(buf: bytes, into: dict[int, bytes]) -> int | None:
    """
    Parse a run of code/length/value options into C{into}.

    Repeated options are concatenated (RFC 3396), which is also what makes
    long option values split by a sender read back whole.

    @return: the value of the overload option (52) if seen in this run.
    """
    overload = None
    for code, start, stop in option_spans(buf):
        value = buf[start:stop]
        if code in into:
            into[code] += value
        else:
            into[code] = value
        if code == Option.OVERLOAD:
            if stop - start != 1 or value[0] not in (1, 2, 3):
                raise MalformedPacket("option 52 (overload) is invalid")
            overload = value[0]
    return overload


def decode(datagram: bytes) -> DHCPPacket:
    """
    Decode one DHCP datagram.

    @raise MalformedPacket: if it is too short, lacks the magic cookie, or
        its options run past the end.  No other exception escapes.
    """
    if len(datagram) < _OPTIONS_START:
        raise MalformedPacket(f"{len(datagram)} bytes is too short for DHCP")
    if datagram[_HEADER_SIZE:_OPTIONS_START] != MAGIC_COOKIE:
        raise MalformedPacket("no DHCP magic cookie")
    (op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr, chaddr, sname,
     file) = _HEADER.unpack_from(datagram)
    if op not in (BOOTREQUEST, BOOTREPLY):
        raise MalformedPacket(f"op {op} is neither BOOTREQUEST nor BOOTREPLY")
    if hlen > 16:
        raise MalformedPacket(f"hlen {hlen} exceeds the 16-byte chaddr field")
    options: dict[int, bytes] = {}
    overload = _parse_options(datagram[_OPTIONS_START:], options)
    if overload is not None:
        # RFC 2132 9.3: file then sname carry more options.
        if overload & 1:
            _parse_options(file, options)
            file = b""
        if overload & 2:
            _parse_options(sname, options)
            sname = b""
    return DHCPPacket(
        op=op, htype=htype, hlen=hlen, hops=hops, xid=xid, secs=secs, flags=flags,
        ciaddr=_addr(ciaddr), yiaddr=_addr(yiaddr), siaddr=_addr(siaddr), giaddr=_addr(giaddr),
        chaddr=chaddr, sname=sname.split(b"\x00", 1)[0], file=file.split(b"\x00", 1)[0],
        options=options,
    )


def _encode_option(code: int, value: bytes) -> bytes:
    """
    Encode one option, splitting values over 255 bytes (RFC 3396).
    """
    if not value:
        return bytes((code, 0))
    out = bytearray()
    for start in range(0, len(value), 255):
        chunk = value[start:start + 255]
        out += bytes((code, len(chunk))) + chunk
    return bytes(out)


def encode(packet: DHCPPacket) -> bytes:
    """
    Encode a packet, padded to the BOOTP minimum size.

    @raise ValueError: if a field does not fit its wire slot (a programming
        error on our side, never the client's).
    """
    if len(packet.sname) > 63 or len(packet.file) > 127:
        raise ValueError("sname or file too long for the BOOTP header")
    header = _HEADER.pack(
        packet.op, packet.htype, packet.hlen, packet.hops, packet.xid, packet.secs, packet.flags,
        socket.inet_aton(packet.ciaddr), socket.inet_aton(packet.yiaddr),
        socket.inet_aton(packet.siaddr), socket.inet_aton(packet.giaddr),
        packet.chaddr.ljust(16, b"\x00")[:16], packet.sname, packet.file,
    )
    parts = [header, MAGIC_COOKIE]
    for code, value in packet.options.items():
        if code == Option.PAD or code == Option.END:
            continue
        if 0 < len(value) <= 255:  # the common case, without a call
            parts.append(bytes((code, len(value))))
            parts.append(value)
        else:
            parts.append(_encode_option(code, value))
    parts.append(b"\xff")
    out = b"".join(parts)
    if len(out) < MIN_PACKET_SIZE:
        out += b"\x00" * (MIN_PACKET_SIZE - len(out))
    return out
