# -*- test-case-name: tests.test_leasestore -*-
"""
Where DHCP leases live: behind L{ILeaseStore}, so one pxed keeps them in
a file and several pxed serving one LAN share them in a database.

The whole contract rests on one atomic operation, L{ILeaseStore.claim}:
an address goes to a client only if nobody else holds it, decided inside
the store.  Two servers that pick the same free address at the same
moment both try to claim it; one wins, the other tries its next
candidate.  That is what makes "never two clients on one address" hold
for any number of pxed sharing a store.

Two implementations ship: in memory (one process, lost on restart) and a
JSON file: a snapshot rewritten atomically (temporary file, fsync, rename,
fsync of the directory, as the state file in L{pxed.store}) and a journal
of the changes since, fsync'd before any ACK that depends on it is sent,
so a restart or C{kill -9} loses no bound lease.
Offers are kept in memory only: losing one costs the client a NAK and a
new DISCOVER, not a doubled address.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from zope.interface import Interface, implementer

from pxed.dhcp.leases import Lease

__all__ = ["ILeaseStore", "MemoryLeaseStore", "lease_json"]


class ILeaseStore(Interface):
    """
    The DHCP leases of every address pxed hands out.

    A store holds at most one record per address and at most one per
    client.  A record is a L{pxed.dhcp.leases.Lease}; it is I{held} while
    C{now < expires}, and stays in the store after it expires (so a client
    that comes back gets its old address) until the address is claimed by
    another client.  Times are POSIX seconds from the caller's clock:
    servers sharing a store must keep their clocks in step (NTP), and a
    skew of a few seconds only shortens or lengthens leases by as much.

    Every method returns a L{Deferred}; a store that cannot do what it is
    asked (a database down, a disk full) fails the Deferred, and the
    server then sends nothing (the client retransmits).  Everything a
    method changes is applied completely or not at all.
    """

    def claim(lease: Lease, now: float) -> Deferred[bool]:
        """
        Give C{lease.address} to C{lease.client}, atomically.

        Succeeds (fires C{True}) if and only if no record for
        C{lease.address} belongs to another client and is held at C{now}.
        Then, as one step: every other record of C{lease.client} is
        deleted (a client has one address), the record of the address (the
        client's own, or another client's expired one) is replaced, and
        C{lease} is stored.  Otherwise nothing changes and it fires
        C{False}.  Claiming again is how a lease is renewed, an offer
        turned into a bound lease, or an address marked declined (with a
        pseudo-client, L{pxed.dhcp.leases.declined_client}).

        When it fires C{True} for a lease whose C{state} is not
        C{"offered"}, the lease is durable: it survives a restart or crash
        of this process (for a shared store: of any server).
        """

    def release(client: str, address: str, now: float) -> Deferred[bool]:
        """
        End C{client}'s lease on C{address} at C{now} (DHCPRELEASE, or an
        offer the client did not take): its C{expires} becomes at most
        C{now}, so the address is free, but the record stays, so the
        client is offered the same address if it comes back.  Fires
        whether a record of C{client} on C{address} existed.
        """

    def lease_of(client: str) -> Deferred[Lease | None]:
        """
        C{client}'s record, held or expired, or C{None}.
        """

    def holder(address: str) -> Deferred[Lease | None]:
        """
        The record of C{address}, held or expired, or C{None}.  Asked
        about a few addresses for each offer (L{pxed.dhcp.allocator}), so
        it should be an index lookup.
        """

    def leases() -> Deferred[list[Lease]]:
        """
        Every record, held or expired, in no particular order: what the
        allocator chooses from when the few addresses it asked L{holder}
        about are taken, and what the status page and C{/_/leases} show.
        A snapshot: a L{claim} may still lose to another server after it.
        """


def lease_json(lease: Lease) -> dict[str, Any]:
    return {"client": lease.client, "mac": lease.mac, "address": lease.address,
            "expires": lease.expires, "state": lease.state}


@implementer(ILeaseStore)
class MemoryLeaseStore:
    """
    Leases in two dictionaries: correct for one process, forgotten on
    restart.  Every method completes before it returns (its Deferred has
    fired), which is what makes L{claim} atomic here.
    """

    def __init__(self, leases: list[Lease] | None = None) -> None:
        self._by_address: dict[str, Lease] = {}
        self._by_client: dict[str, Lease] = {}
        for lease in leases or ():
            self._put(lease)

    def _put(self, lease: Lease) -> None:
        previous = self._by_client.pop(lease.client, None)
        if previous is not None:
            del self._by_address[previous.address]
        other = self._by_address.pop(lease.address, None)
        if other is not None:
            del self._by_client[other.client]
        self._by_address[lease.address] = lease
        self._by_client[lease.client] = lease

    def _claim(self, lease: Lease, now: float) -> bool:
        record = self._by_address.get(lease.address)
        if record is not None and record.client != lease.client and record.held(now):
            return False
        self._put(lease)
        return True

    def claim(self, lease: Lease, now: float) -> Deferred[bool]:
        return succeed(self._claim(lease, now))

    def _release(self, client: str, address: str, now: float) -> bool:
        record = self._by_address.get(address)
        if record is None or record.client != client:
            return False
        if record.expires > now:
            self._put(Lease(record.client, record.mac, record.address, now, record.state))
        return True

    def release(self, client: str, address: str, now: float) -> Deferred[bool]:
        return succeed(self._release(client, address, now))

    def lease_of(self, client: str) -> Deferred[Lease | None]:
        return succeed(self._by_client.get(client))

    def holder(self, address: str) -> Deferred[Lease | None]:
        return succeed(self._by_address.get(address))

    def leases(self) -> Deferred[list[Lease]]:
        return succeed(list(self._by_address.values()))
