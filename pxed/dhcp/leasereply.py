# -*- test-case-name: tests.test_dhcp_server -*-
"""
Build the replies of pxed as the DHCP server (C{dhcp.mode: full}):
OFFER, ACK and NAK with an address (RFC 2131, options of RFC 2132), and,
for network-booting clients, the boot information in the same packet.

Pure functions.  The boot information is the L{BootAnswer} the responder
gives in proxy mode, written the way a DHCP server writes it: siaddr and
the file name (and option 67) in the offer itself, with no option 60
C{PXEClient} and no option 43, so PXE firmware boots the file at once
instead of asking port 4011 (EDK2 takes an offer with C{PXEClient} and
no option 43 for a "BINL" offer and would ask there); HTTP Boot clients
still get option 60 C{HTTPClient}, which is how they tell a boot offer.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from pxed.dhcp.exchange import BROADCAST, DHCP_CLIENT_PORT, DHCP_SERVER_PORT
from pxed.dhcp.packet import BROADCAST_FLAG, DHCPPacket, MessageType, Option
from pxed.dhcp.reply import BootAnswer

__all__ = ["NetworkOptions", "lease_reply", "nak", "reply_destination", "T1", "T2",
           "ROUTER", "DNS", "NETMASK", "LEASE_TIME", "RENEWAL_TIME", "REBINDING_TIME"]

NETMASK = 1
ROUTER = 3
DNS = 6
LEASE_TIME = 51
MESSAGE = 56
RENEWAL_TIME = 58
REBINDING_TIME = 59

#: RFC 2131 section 4.4.5 defaults: renew at half the lease, rebind at 7/8.
T1 = 0.5
T2 = 0.875

_U32 = struct.Struct("!I")


@dataclass(frozen=True)
class NetworkOptions:
    """
    What a client is told about its network besides its address.
    """

    netmask: str | None = None
    router: str | None = None
    dns: tuple[str, ...] = ()


def _addresses(*addresses: str) -> bytes:
    return b"".join(socket.inet_aton(a) for a in addresses)


def lease_reply(
    request: DHCPPacket,
    message_type: int,
    server: str,
    address: str | None,
    seconds: int | None,
    network: NetworkOptions,
    boot: BootAnswer | None = None,
) -> DHCPPacket:
    """
    An OFFER or ACK giving C{address} for C{seconds} (both C{None} for the
    ACK of an INFORM, which gives no address), with the network options
    and, if C{boot} is given, the boot information.
    """
    options: dict[int, bytes] = {
        Option.MESSAGE_TYPE: bytes((message_type,)),
        Option.SERVER_ID: socket.inet_aton(server),
    }
    if seconds is not None:
        options[LEASE_TIME] = _U32.pack(seconds)
        options[RENEWAL_TIME] = _U32.pack(int(seconds * T1))
        options[REBINDING_TIME] = _U32.pack(int(seconds * T2))
    if network.netmask is not None:
        options[NETMASK] = socket.inet_aton(network.netmask)
    if network.router is not None:
        options[ROUTER] = socket.inet_aton(network.router)
    if network.dns:
        options[DNS] = _addresses(*network.dns)
    siaddr = "0.0.0.0"
    file = b""
    if boot is not None:
        siaddr = boot.server
        bootfile = boot.bootfile.encode("utf-8")
        if boot.vendor_class == b"HTTPClient":
            options[Option.VENDOR_CLASS] = boot.vendor_class
        uuid = request.options.get(Option.CLIENT_UUID)
        if uuid is not None:
            options[Option.CLIENT_UUID] = uuid
        options[Option.BOOTFILE_NAME] = bootfile
        file = bootfile if len(bootfile) <= 127 else b""
    return request.reply(
        ciaddr=request.ciaddr if message_type == MessageType.ACK else "0.0.0.0",
        yiaddr=address or "0.0.0.0",
        siaddr=siaddr,
        file=file,
        options=options,
    )


def nak(request: DHCPPacket, server: str, why: str) -> DHCPPacket:
    """
    A DHCPNAK: the client must drop the address it asked for and start
    over.  Option 56 says why, for whoever reads a capture.
    """
    flags = request.flags
    if request.relayed:
        # RFC 2131 4.3.2: through a relay, the relay must broadcast it.
        flags |= BROADCAST_FLAG
    return request.reply(
        flags=flags,
        options={Option.MESSAGE_TYPE: bytes((MessageType.NAK,)),
                 Option.SERVER_ID: socket.inet_aton(server),
                 MESSAGE: why.encode("ascii", "replace")[:255]},
    )


def reply_destination(request: DHCPPacket, reply: DHCPPacket) -> tuple[str, int]:
    """
    Where a reply goes (RFC 2131 section 4.1): to the relay if relayed;
    to the client's own address if it has one (renewing, INFORM), except
    for a NAK; otherwise broadcast.  (RFC 2131 also allows unicasting to
    a client without an address when its broadcast bit is clear; that
    needs an ARP entry written by hand, and every client accepts the
    broadcast, so pxed broadcasts.)
    """
    if request.relayed:
        return (request.giaddr, DHCP_SERVER_PORT)
    if reply.message_type != MessageType.NAK and request.ciaddr != "0.0.0.0":
        return (request.ciaddr, DHCP_CLIENT_PORT)
    return BROADCAST
