# -*- test-case-name: tests.test_dhcp_exchange -*-
"""
One request/reply exchange on port 67 or 4011, without the sockets.

The protocols and C{pxed explain} both go through these functions, so
what C{explain} prints is what the server does: which datagrams are
ignored and why, which address is advertised, what the reply holds and
where it goes.  Pure: no I/O, no clock, no logging.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pxed.dhcp.classify import NotNetworkBooting, classify
from pxed.dhcp.menu import LOCAL_BOOT, NETWORK_BOOT, boot_item
from pxed.dhcp.offertemplate import offer_bytes
from pxed.dhcp.packet import (
    BOOTREQUEST,
    DHCPPacket,
    MalformedPacket,
    MessageType,
    Option,
    decode,
)
from pxed.dhcp.reply import BootAnswer, boot_ack, proxy_offer
from pxed.dhcp.sanity import relay_address
from pxed.machine import Machine
from pxed.net import PacketInfo

__all__ = ["Ignored", "Stage", "PROXYDHCP", "BOOTSERVER", "STAGES", "screen",
           "advertised_address", "Relays", "DHCP_SERVER_PORT", "DHCP_CLIENT_PORT", "BROADCAST"]

DHCP_SERVER_PORT = 67
DHCP_CLIENT_PORT = 68
BROADCAST = ("255.255.255.255", DHCP_CLIENT_PORT)

#: (subnet, address) pairs, most specific first: see L{advertised_address}.
#: C{server.relays}: (subnet, address to advertise there, or C{None} for
#: the usual one).
Relays = Sequence[tuple[ipaddress.IPv4Network, str | None]]


class Ignored(Exception):
    """
    The datagram gets no reply; the message says why (for the debug log
    and for C{pxed explain}).
    """


def _offer_destination(request: DHCPPacket, source: tuple[str, int]) -> tuple[str, int]:
    # Through a relay: back to the relay's server port, which forwards it.
    # Otherwise the client has no address yet, so broadcast.
    if request.relayed:
        return (request.giaddr, DHCP_SERVER_PORT)
    return BROADCAST


def _ack_destination(request: DHCPPacket, source: tuple[str, int]) -> tuple[str, int]:
    # A boot-server client has its address by now: answer where it asked from.
    return source


@dataclass(frozen=True)
class Stage:
    """
    What differs between the two ports: the messages they answer, the
    reply they build and where it goes.
    """

    name: str
    accepts: frozenset[int]
    build: Callable[[DHCPPacket, BootAnswer], DHCPPacket]
    destination: Callable[[DHCPPacket, tuple[str, int]], tuple[str, int]]
    #: The reply's bytes straight from the request's datagram, its decoded
    #: packet and the answer, the same bytes as building and encoding it
    #: (with option 82 echoed), without the packet; C{None}: build it.
    encoded: Callable[[bytes, DHCPPacket, BootAnswer], bytes] | None = None


PROXYDHCP = Stage("proxydhcp", frozenset({MessageType.DISCOVER}), proxy_offer,
                  _offer_destination, offer_bytes)
BOOTSERVER = Stage("bootserver", frozenset({MessageType.REQUEST, MessageType.INFORM}), boot_ack,
                   _ack_destination)
STAGES = {stage.name: stage for stage in (PROXYDHCP, BOOTSERVER)}


def screen(data: bytes, stage: Stage) -> tuple[DHCPPacket, Machine]:
    """
    Decode and classify a datagram arriving at C{stage}'s port.

    @raise Ignored: for anything that must get no reply: malformed
        datagrams, replies, message types this port does not answer, and
        clients that are not network-booting.
    """
    try:
        packet = decode(data)
    except MalformedPacket as e:
        raise Ignored(f"malformed: {e}") from None
    if packet.op != BOOTREQUEST:
        raise Ignored("a BOOTREPLY (another server's answer)")
    kind = packet.message_type
    if kind not in stage.accepts:
        name = MessageType.NAMES.get(kind, str(kind)) if kind is not None else "no"
        raise Ignored(f"{name} message type is not answered on the {stage.name} port")
    try:
        machine = classify(packet)
    except NotNetworkBooting as e:
        raise Ignored(str(e)) from None
    if stage is BOOTSERVER:
        item = boot_item(packet.options.get(Option.VENDOR_SPECIFIC))
        if item is not None and item[0] == LOCAL_BOOT:
            raise Ignored("asks for the local boot item, which the firmware does itself")
        if item is not None and item[0] != NETWORK_BOOT:
            # A choice from another server's menu: that server answers it.
            raise Ignored(f"asks for boot server type {item[0]:#06x}, which pxed does not offer")
    return packet, machine


def advertised_address(
    packet: DHCPPacket,
    info: PacketInfo | None,
    address: str | None,
    relays: Relays = (),
    route: Callable[[str], str | None] | None = None,
) -> str | None:
    """
    The server address to tell this client (option 54, siaddr, URLs).

    In order: the address configured for the relay's subnet (C{relays},
    when the request came through one, or when a request not relayed was
    sent to such an address: the client knows pxed by it already), the
    configured C{address}, the
    local address the request arrived on (C{IP_PKTINFO}: for a relayed
    request, the address the relay reached us on), and, failing all of
    those, the address the host would use towards the relay (C{route}).
    C{None} means no address can be advertised, so pxed stays silent.
    """
    relayed = packet.giaddr != "0.0.0.0"
    if relayed and relays:
        giaddr, _ = relay_address(packet.giaddr)
        if giaddr is not None:
            for subnet, chosen in relays:
                if giaddr in subnet:
                    if chosen is not None:
                        return chosen
                    break
    if (not relayed and info is not None
            and any(info.destination == chosen for _, chosen in relays)):
        # Sent straight to a relay subnet's address (the 4011 request after
        # a relayed offer, which named it): keep telling the client that.
        return info.destination
    if address is not None:
        return address
    if info is not None and info.local != "0.0.0.0":
        return info.local
    if relayed and route is not None:
        return route(packet.giaddr)
    return None
