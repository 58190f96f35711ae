# -*- test-case-name: tests.test_dhcp_offertemplate -*-
"""
The bytes of a ProxyDHCP offer, patched into a template rather than built
and encoded field by field.

In a boot storm thousands of machines get the same answer (the same
server, boot file, vendor class, menu): their offers differ only in what
is copied from each request (htype, hlen, xid, flags, ciaddr, giaddr,
chaddr, option 97 and option 82).  So the answer's part of the offer (its
siaddr, the C{file} field and the encoded options) is encoded once per
answer and kept, and an offer is the request's own header bytes spliced
around it.  What comes out is, byte for byte, what
C{encode(echo_relay_information(request, proxy_offer(request, answer)))}
gives (L{tests.test_dhcp_offertemplate} checks it over generated requests
and answers); C{pxed explain} and the server both send these bytes.

The cache is keyed by the answer's value, not by when it was made: a
reload that changes what a machine is told makes another key, so nothing
needs invalidating, and it is bounded so answers of the past only evict.
"""

from __future__ import annotations

import socket
from functools import lru_cache

from pxed.dhcp.menu import menu_option
from pxed.dhcp.packet import (
    BOOTREPLY,
    MAGIC_COOKIE,
    MIN_PACKET_SIZE,
    DHCPPacket,
    MessageType,
    Option,
)
from pxed.dhcp.reply import DISCOVERY_CONTROL_BOOT_FILE, BootAnswer

__all__ = ["offer_bytes", "offer_from"]

_OP = bytes((BOOTREPLY,))
_ZERO4 = b"\x00" * 4
_SNAME = b"\x00" * 64
_END = b"\xff"
_UUID_HEAD = bytes((Option.CLIENT_UUID, 17))


def _option(code: int, value: bytes) -> bytes:
    """
    One option as L{pxed.dhcp.packet.encode} writes it (values over 255
    bytes split, RFC 3396).
    """
    if not value:
        return bytes((code, 0))
    return b"".join(bytes((code, len(value[i:i + 255]))) + value[i:i + 255]
                    for i in range(0, len(value), 255))


@lru_cache(maxsize=512)
def _answer_parts(answer: BootAnswer) -> tuple[bytes, bytes, bytes]:
    """
    What an offer of C{answer} holds whoever asked: siaddr, then the
    header from C{sname} to the end (C{sname}, C{file}, magic cookie) with
    options 53, 54 and 60; and the options after option 97 (43 and 67).
    """
    bootfile = answer.bootfile.encode("utf-8")
    server = socket.inet_aton(answer.server)
    file = (bootfile if len(bootfile) <= 127 else b"").ljust(128, b"\x00")
    head = b"".join((_SNAME, file, MAGIC_COOKIE,
                     _option(Option.MESSAGE_TYPE, bytes((MessageType.OFFER,))),
                     _option(Option.SERVER_ID, server),
                     _option(Option.VENDOR_CLASS, answer.vendor_class)))
    if answer.menu is not None:
        vendor = _option(Option.VENDOR_SPECIFIC, menu_option(answer.menu, answer.server))
    elif answer.discovery_control:
        vendor = _option(Option.VENDOR_SPECIFIC, DISCOVERY_CONTROL_BOOT_FILE)
    else:
        vendor = b""
    return server, head, vendor + _option(Option.BOOTFILE_NAME, bootfile)


def offer_bytes(datagram: bytes, request: DHCPPacket, answer: BootAnswer) -> bytes:
    """
    The encoded ProxyDHCP offer of C{answer} to C{request}, which was
    decoded from C{datagram} (its header fields are copied from there).
    """
    options = request.options
    return offer_from(datagram, answer, options.get(Option.CLIENT_UUID),
                      options.get(Option.RELAY_AGENT_INFORMATION) if request.relayed else None)


def offer_from(datagram: bytes, answer: BootAnswer, uuid: bytes | None,
               relay: bytes | None) -> bytes:
    """
    The encoded ProxyDHCP offer of C{answer} to the request C{datagram},
    whose option 97 value is C{uuid} and whose option 82 value to echo
    is C{relay} (only when it was relayed).  The ProxyDHCP fast path
    (L{pxed.dhcp.fastpath}) finds these two without decoding.
    """
    server, head, tail = _answer_parts(answer)
    parts = [
        _OP, datagram[1:3], b"\x00", datagram[4:8], b"\x00\x00",
        # flags, with the broadcast bit: the client has no address yet
        bytes((datagram[10] | 0x80, datagram[11])),
        datagram[12:16], _ZERO4, server, datagram[24:44], head,
    ]
    if uuid is not None:
        # (pxed.dhcp.sanity lets only type 0 and 16 bytes through.)
        parts.append(_UUID_HEAD + uuid if len(uuid) == 17 else _option(Option.CLIENT_UUID, uuid))
    parts.append(tail)
    if relay is not None:
        parts.append(_option(Option.RELAY_AGENT_INFORMATION, relay))
    parts.append(_END)
    out = b"".join(parts)
    if len(out) < MIN_PACKET_SIZE:
        out += b"\x00" * (MIN_PACKET_SIZE - len(out))
    return out
