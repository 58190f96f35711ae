# -*- test-case-name: tests.test_dhcp_leases -*-
"""
The pure part of handing out addresses: who a client is, what a lease
is, which addresses a pool holds, and in which order to try them.

No I/O, no clock: the time is always the caller's C{now} (POSIX seconds),
so the same functions serve the server, its tests and several pxed that
share one lease store.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from pxed.dhcp.packet import DHCPPacket, Option

__all__ = ["Lease", "Pool", "OFFERED", "BOUND", "DECLINED", "STATES", "client_key",
           "declined_client", "candidates", "mac_of_client"]

#: A lease's states: an address held for a client between OFFER and
#: REQUEST; an address the client has been ACKed; an address a client
#: reported in use by someone else (DECLINE) or that answered the probe.
OFFERED = "offered"
BOUND = "bound"
DECLINED = "declined"
STATES = frozenset({OFFERED, BOUND, DECLINED})


@dataclass(frozen=True)
class Lease:
    """
    One address held by one client until C{expires}.

    A record outlives its expiry: an expired lease is free for anyone, but
    until someone else claims the address it still says whose it was, so
    a client coming back after a week gets its old address again.

    @ivar client: the client's identity (see L{client_key}).
    @ivar mac: the hardware address, for people (status page, API).
    @ivar address: the IPv4 address, dotted quad.
    @ivar expires: POSIX seconds.
    @ivar state: L{OFFERED}, L{BOUND} or L{DECLINED}.
    """

    client: str
    mac: str
    address: str
    expires: float
    state: str = BOUND

    def held(self, now: float) -> bool:
        """
        Whether nobody else may have the address at C{now}.
        """
        return self.expires > now


def client_key(packet: DHCPPacket) -> str:
    """
    Who the client is: its client identifier (option 61) if it sends one,
    else its hardware address (RFC 2131 section 4.2).

    An identifier that is just hardware type 1 and the client's own MAC
    (what iPXE and most Linux clients send) is the same client as a
    firmware that sends none, so it is keyed by the MAC too: a machine
    then keeps one address from its firmware's DHCP to its kernel's.
    """
    ident = packet.options.get(Option.CLIENT_ID)
    if ident:
        hardware = packet.chaddr[:min(packet.hlen, 16)]
        if ident[0] == packet.htype and ident[1:] == hardware:
            return f"mac:{packet.mac}"
        return f"id:{ident.hex()}"
    return f"mac:{packet.mac}"


def mac_of_client(client: str) -> str | None:
    """
    The MAC in a key made by L{client_key} from the hardware address.
    """
    return client[4:] if client.startswith("mac:") else None


def declined_client(address: str) -> str:
    """
    The pseudo-client that holds an address nobody may have for a while:
    one per address, so that holding one never frees another.
    """
    return f"declined:{address}"


@dataclass(frozen=True)
class Pool:
    """
    The addresses of one network that pxed may hand out.

    @ivar network: the subnet the clients are on (option 1 comes from it).
    @ivar ranges: inclusive (first, last) ranges inside C{network}.
    """

    network: ipaddress.IPv4Network
    ranges: tuple[tuple[ipaddress.IPv4Address, ipaddress.IPv4Address], ...]

    @property
    def size(self) -> int:
        return sum(int(last) - int(first) + 1 for first, last in self.ranges)

    @property
    def netmask(self) -> str:
        return str(self.network.netmask)

    def __contains__(self, address: object) -> bool:
        try:
            ip = ipaddress.IPv4Address(address)  # type: ignore[arg-type]
        except ValueError:
            return False
        return any(first <= ip <= last for first, last in self.ranges)

    def address(self, index: int) -> str:
        """
        The C{index}-th address of the pool, counting through the ranges
        in order (modulo the pool's size).
        """
        index %= self.size
        for first, last in self.ranges:
            width = int(last) - int(first) + 1
            if index < width:
                return str(first + index)
            index -= width
        raise AssertionError("unreachable")

    def walk(self, client: str) -> Iterator[str]:
        """
        Every address of the pool once, starting at a place derived from
        C{client}: a client whose lease was lost (a new lease file) tends
        to get the same address again, and clients booting together do not
        all fight for the first free address.
        """
        start = int.from_bytes(hashlib.blake2b(client.encode(), digest_size=8).digest(), "big")
        size = self.size
        for step in range(size):
            yield self.address(start + step)


def candidates(
    pool: Pool,
    client: str,
    leases: Iterable[Lease],
    now: float,
    requested: str | None = None,
) -> Iterator[str]:
    """
    The addresses to try for C{client}, best first; none held by anyone
    else at C{now}.

    In order: the client's own address (even if its lease expired, as
    long as nobody else took it), the address it asks for (option 50),
    addresses that were never leased or whose record is gone, then
    addresses others let expire, the longest expired first (their owners
    are the least likely to come back).
    """
    records: dict[str, Lease] = {}
    own: list[str] = []
    for lease in leases:
        records[lease.address] = lease
        if lease.client == client and lease.address in pool:
            own.append(lease.address)
    seen: set[str] = set()

    def free(address: str) -> bool:
        record = records.get(address)
        return record is None or record.client == client or not record.held(now)

    for address in own:
        if address not in seen and free(address):
            seen.add(address)
            yield address
    if requested is not None and requested in pool and requested not in seen and free(requested):
        seen.add(requested)
        yield requested
    expired: list[Lease] = []
    for address in pool.walk(client):
        if address in seen:
            continue
        record = records.get(address)
        if record is None:
            seen.add(address)
            yield address
        elif free(address):
            expired.append(record)
    expired.sort(key=lambda lease: lease.expires)
    for record in expired:
        if record.address not in seen:
            seen.add(record.address)
            yield record.address

