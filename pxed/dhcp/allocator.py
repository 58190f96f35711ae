# -*- test-case-name: tests.test_dhcp_allocator -*-
"""
What the DHCP server does with leases: offer an address (probing it
first), bind it on REQUEST, free it on RELEASE, shun it on DECLINE.

Everything goes through an L{ILeaseStore}, whose atomic C{claim} is the
only place an address changes hands, so the rules here hold for one pxed
and for several sharing a store: a candidate another server took in the
meantime just makes this one try the next.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from pxed.dhcp.leases import BOUND, DECLINED, OFFERED, Lease, Pool, candidates, declined_client
from pxed.leasestore import ILeaseStore

__all__ = ["LeaseKeeper", "Prober", "OFFER_HOLD", "DECLINE_HOLD", "MAX_TRIES"]

log = Logger()

#: Addresses of a client's walk through the pool asked about one by one
#: before the whole lease list is read instead.
QUICK_WALK = 64
#: How long an offered address stays reserved for its client: firmware
#: REQUESTs within a second or two, and a slow one retransmits its
#: DISCOVER anyway, which renews the hold.
OFFER_HOLD = 60.0
#: How long an address stays out of use after a client DECLINEs it or a
#: probe finds it answering (dnsmasq and ISC dhcpd also wait minutes).
DECLINE_HOLD = 600.0
#: Candidates tried per DISCOVER (probed busy or lost to another server)
#: before the client is left without an offer; it retransmits.
MAX_TRIES = 8


class Prober(Protocol):
    def probe(self, address: str) -> Deferred[bool]:
        """
        Fires C{True} if a host answers at C{address} (ICMP echo).
        """


class LeaseKeeper:
    """
    The lease rules of RFC 2131 over a lease store.

    @ivar lease_time: seconds a bound lease lasts.
    @ivar prober: asks whether an address is in use before it is first
        offered; C{None} offers without asking.
    """

    def __init__(self, store: ILeaseStore, clock: IReactorTime, lease_time: float,
                 prober: Prober | None = None, offer_hold: float = OFFER_HOLD,
                 decline_hold: float = DECLINE_HOLD) -> None:
        self.store = store
        self.clock = clock
        self.lease_time = lease_time
        self.prober = prober
        self.offer_hold = offer_hold
        self.decline_hold = decline_hold
        #: Told the name of each lease event (offered, acked, nak,
        #: released, declined, exhausted), for the metrics.
        self.events: Callable[[str], None] = lambda event: None
        # Addresses being probed for some client right now: not offered
        # to a second one meanwhile (each would find it free).
        self._probing: set[str] = set()

    async def offer(self, client: str, mac: str, pool: Pool,
                    requested: str | None = None) -> Lease | None:
        """
        The address to offer C{client} (held for it for C{offer_hold}
        seconds), or C{None} if the pool has none free.

        A client's own address (bound, or remembered from an expired
        lease nobody took since) is offered at once; any other address
        only after the probe found nobody there.
        """
        now = self.clock.seconds()
        current = await self.store.lease_of(client)
        if (current is not None and current.state == BOUND and current.held(now)
                and current.address in pool):
            # Offering its own bound address keeps it bound: the hold of an
            # offer must not shorten the lease the client has.
            self.events("offered")
            return current
        tries = 0
        tried: set[str] = set()
        for address in await self._first_candidates(client, pool, current, requested, now):
            tried.add(address)
            lease = await self._try(client, mac, pool, address, current)
            if lease is not None:
                return lease
            tries += 1
            if tries >= MAX_TRIES:
                self.events("exhausted")
                return None
        # Nothing free near the client's place in the pool: look at every
        # lease (the pool is filling up, or the client is back after long).
        leases = await self.store.leases()
        for address in candidates(pool, client, leases, self.clock.seconds(), requested):
            if address in self._probing or address in tried:
                continue
            lease = await self._try(client, mac, pool, address, current)
            if lease is not None:
                return lease
            tries += 1
            if tries >= MAX_TRIES:
                break
        self.events("exhausted")
        return None

    async def _first_candidates(self, client: str, pool: Pool, current: Lease | None,
                                requested: str | None, now: float) -> list[str]:
        """
        The first addresses L{candidates} would give, found by asking the
        store about a few addresses rather than listing every lease: the
        client's own, the one it asks for, then never-leased addresses
        among the first L{QUICK_WALK} of its walk through the pool.
        """
        out: list[str] = []
        if current is not None and current.address in pool:
            out.append(current.address)  # its own record: nobody else's
        if requested is not None and requested in pool and requested not in out:
            record = await self.store.holder(requested)
            if record is None or record.client == client or not record.held(now):
                out.append(requested)
        for i, address in enumerate(pool.walk(client)):
            if i >= QUICK_WALK or len(out) >= MAX_TRIES:
                break
            if address not in out and address not in self._probing:
                if await self.store.holder(address) is None:
                    out.append(address)
        return [address for address in out if address not in self._probing]

    async def _try(self, client: str, mac: str, pool: Pool, address: str,
                   current: Lease | None) -> Lease | None:
        """
        Probe C{address} (unless it is the client's own) and claim it as
        an offer: the offer, or C{None} if it answered or someone else
        holds it.
        """
        if address in self._probing:
            return None
        known = current is not None and current.address == address
        if not known and self.prober is not None and await self._in_use(address):
            return None
        now = self.clock.seconds()
        lease = Lease(client, mac, address, now + self.offer_hold, OFFERED)
        if await self.store.claim(lease, now):
            self.events("offered")
            return lease
        return None

    async def _in_use(self, address: str) -> bool:
        assert self.prober is not None
        self._probing.add(address)
        try:
            answered = await self.prober.probe(address)
        finally:
            self._probing.discard(address)
        if answered:
            log.warn("{address} answers a ping but has no lease: keeping it out of use for "
                     "{hold:.0f} s (a host with a static address inside the DHCP range?)",
                     address=address, hold=self.decline_hold)
            await self._shun(address)
        return answered

    async def _shun(self, address: str) -> None:
        now = self.clock.seconds()
        await self.store.claim(
            Lease(declined_client(address), "", address, now + self.decline_hold, DECLINED), now)

    async def bind(self, client: str, mac: str, pool: Pool, address: str,
                   lease_time: float | None = None) -> Lease | None:
        """
        Bind C{address} to C{client} for C{lease_time} (a REQUEST in any
        state: selecting, init-reboot, renewing, rebinding), or C{None}
        (the server NAKs) if it is outside C{pool} or someone else holds
        it.  C{lease_time} overrides the keeper's (the configuration's
        as it is now).
        """
        if address in pool:
            now = self.clock.seconds()
            seconds = self.lease_time if lease_time is None else lease_time
            lease = Lease(client, mac, address, now + seconds, BOUND)
            if await self.store.claim(lease, now):
                self.events("acked")
                return lease
        self.events("nak")
        return None

    async def release(self, client: str, address: str) -> bool:
        """
        DHCPRELEASE: the address is free again; the client is remembered.
        """
        released = await self.store.release(client, address, self.clock.seconds())
        if released:
            self.events("released")
        return released

    async def decline(self, client: str, address: str) -> bool:
        """
        DHCPDECLINE: the client found C{address} in use; nobody gets it for
        C{decline_hold} seconds.  Only the client holding it can decline
        it (anyone could send the message).
        """
        record = await self.store.holder(address)
        if record is None or record.client != client:
            return False
        await self.store.release(client, address, self.clock.seconds())
        await self._shun(address)
        self.events("declined")
        return True

    async def forget_offer(self, client: str) -> None:
        """
        The client took another server's offer (its REQUEST names another
        server identifier): free the address held for it.
        """
        record = await self.store.lease_of(client)
        if record is not None and record.state == OFFERED:
            await self.store.release(client, record.address, self.clock.seconds())
