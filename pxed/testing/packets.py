# -*- test-case-name: tests.test_testing -*-
"""
DHCP packets for tests: what PXE firmware, UEFI HTTP Boot and iPXE send,
a packet with some fields changed, and a transport that records replies
sent out of the interface a request came in on (as
L{pxed.net.PacketInfoPort} does).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.testing import FakeDatagramTransport

from pxed.dhcp.packet import DHCPPacket, Option, decode, encode
from pxed.doctor.probe import bootserver_request, http_boot_discover, pxe_discover
from pxed.net import PacketInfo

__all__ = ["pxe_discover", "ipxe_discover", "http_boot_discover", "bootserver_request",
           "plain", "changed", "ViaTransport"]


def ipxe_discover(mac: bytes, arch: int = 7, xid: int = 1) -> DHCPPacket:
    """
    iPXE's DISCOVER: PXE firmware's, with user class C{iPXE} (option 77).
    """
    packet = pxe_discover(mac, arch, xid)
    packet.options[Option.USER_CLASS] = b"iPXE"
    return packet


def plain(mac: str, kind: int, xid: int = 1, **options: bytes) -> DHCPPacket:
    """
    An ordinary (not network-booting) client's message of type C{kind};
    C{options} by code, as C{o61=b"..."}.
    """
    chaddr = bytes.fromhex(mac.replace(":", "")) + bytes(10)
    packet = DHCPPacket(xid=xid, chaddr=chaddr, flags=0x8000,
                        options={Option.MESSAGE_TYPE: bytes((kind,))})
    for code, value in options.items():
        packet.options[int(code.lstrip("o"))] = value
    return packet


def changed(datagram: bytes, **fields: Any) -> bytes:
    """
    C{datagram} with some fields changed; C{options} entries with a value
    of C{None} are removed.
    """
    packet = decode(datagram)
    for name, value in fields.items():
        if name == "options":
            for code, data in value.items():
                if data is None:
                    packet.options.pop(code, None)
                else:
                    packet.options[code] = data
        else:
            setattr(packet, name, value)
    return encode(packet)


class ViaTransport(FakeDatagramTransport):
    """
    A transport like L{pxed.net.PacketInfoPort}, which can send out of
    the interface a request came in on; records those sends in C{via}.
    """

    def __init__(self) -> None:
        super().__init__()
        self.via: list[tuple[bytes, tuple[str, int], PacketInfo | None]] = []

    def sendVia(self, data: bytes, addr: tuple[str, int], info: PacketInfo | None) -> None:
        self.via.append((data, addr, info))
