# -*- test-case-name: tests.test_dhcp_sanity -*-
"""
Requests pxed must not answer however network-booting they look: a relay
address a reply must not go to, and options pxed decides on or echoes
that are malformed.

Both are checked in the one per-datagram pipeline
(L{pxed.dhcp.pipeline.receive}), so the server and C{pxed explain} agree.

A relayed request is answered by unicast to its giaddr, which the sender
chooses: without these checks, a single spoofed datagram would make pxed
send its reply to the limited broadcast, a multicast group, any host on
the Internet (reflection), one of its own addresses or loopback.  So a
giaddr must be a unicast address, never loopback unless the request came
from loopback, never pxed's own, and, when C{server.relays} lists relay
subnets, inside one of them.

Option 97 (the client GUID) is echoed in every reply, and option 93
(the architecture) decides which program a client gets; RFC 4578 fixes
both shapes (97: type 0 and 16 bytes; 93: two bytes per architecture).
Anything else is a malformed request, and a malformed request gets no
reply: echoing a 3,000-byte option 97 would turn a small datagram into a
large one.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from functools import lru_cache

from pxed.dhcp.packet import DHCPPacket, Option

__all__ = ["relay_problem", "option_problem", "relay_address", "MAX_ECHOED"]

#: The longest option echoed back (relay agent information, option 82):
#: one option's worth, as relays send it.
MAX_ECHOED = 255


def relay_problem(
    packet: DHCPPacket,
    source: str,
    own: Iterable[str | None],
    relays: Sequence[tuple[ipaddress.IPv4Network, object]] = (),
) -> str | None:
    """
    Why the reply to C{packet} must not go to its giaddr, or C{None} (also
    for a request that was not relayed).

    @param source: the address the datagram came from.
    @param own: pxed's addresses (configured, the one the request reached).
    @param relays: C{server.relays}: when not empty, the only relay
        subnets answered.
    """
    if packet.giaddr == "0.0.0.0":
        return None
    giaddr, problem = relay_address(packet.giaddr)
    if problem is not None:
        return problem
    assert giaddr is not None
    if giaddr.is_loopback and not _loopback(source):
        return "is a loopback address, from outside this host"
    if packet.giaddr in {address for address in own if address}:
        return "is pxed's own address"
    if relays and not any(giaddr in subnet for subnet, _ in relays):
        return "is not in a subnet of server.relays"
    return None


@lru_cache(maxsize=1024)
def relay_address(giaddr: str) -> tuple[ipaddress.IPv4Address | None, str | None]:
    """
    C{giaddr} parsed, and why it can never be a relay's address whoever
    sent it (C{None} if it can be one).

    Cached: in a boot storm through a relay every request carries the same
    giaddr, and parsing and classifying it with L{ipaddress} was a fifth of
    the CPU of a relayed DISCOVER.  Bounded, so spoofed giaddrs only evict.
    """
    try:
        address = ipaddress.IPv4Address(giaddr)
    except ValueError:
        return None, "is not an address"
    if address.is_multicast or address == _LIMITED_BROADCAST:
        return address, "is a broadcast or multicast address, not a relay"
    if address.is_unspecified or address.is_reserved or address.packed[0] == 0:
        return address, "cannot be a relay's address"
    return address, None


_LIMITED_BROADCAST = ipaddress.IPv4Address("255.255.255.255")


@lru_cache(maxsize=1024)
def _loopback(source: str) -> bool:
    try:
        return ipaddress.IPv4Address(source).is_loopback
    except ValueError:
        return False


def option_problem(packet: DHCPPacket) -> str | None:
    """
    What is malformed in the options pxed decides on or echoes, or C{None}.
    """
    options = packet.options
    arch = options.get(Option.CLIENT_ARCH)
    if arch is not None and (not arch or len(arch) % 2):
        return f"option 93 (client architecture) of {len(arch)} bytes, not two per entry"
    uuid = options.get(Option.CLIENT_UUID)
    if uuid is not None and (len(uuid) != 17 or uuid[0] != 0):
        return (f"option 97 (client GUID) of {len(uuid)} bytes, type "
                f"{uuid[0] if uuid else 'none'}: not type 0 and 16 bytes")
    relay = options.get(Option.RELAY_AGENT_INFORMATION)
    if relay is not None and len(relay) > MAX_ECHOED:
        return f"option 82 (relay agent information) of {len(relay)} bytes"
    return None
