"""
Tests for L{pxed.dhcp.allocator}: offers, holds, binding, release,
decline and the probe, over a real memory store and a L{Clock}; and
hypothesis runs of random client behaviour checking that no address is
ever held by two clients, nothing outside the pool is handed out, and
expired or released addresses come back into use.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import Clock
from twisted.trial import unittest

from pxed.dhcp.allocator import DECLINE_HOLD, OFFER_HOLD, LeaseKeeper
from pxed.dhcp.leases import BOUND, DECLINED, OFFERED, Lease, Pool
from pxed.leasestore import MemoryLeaseStore
from pxed.testing.dhcp import FakeProber

LEASE = 3600.0
POOL = Pool(ipaddress.IPv4Network("192.168.77.0/24"),
            ((ipaddress.IPv4Address("192.168.77.100"), ipaddress.IPv4Address("192.168.77.103")),))


def run(coro: Any) -> Any:
    return ensureDeferred(coro)


class LeaseKeeperTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.store = MemoryLeaseStore()
        self.keeper = LeaseKeeper(self.store, self.clock, LEASE)

    def offer(self, client: str, requested: str | None = None) -> Lease | None:
        return self.successResultOf(run(self.keeper.offer(client, client, POOL, requested)))  # type: ignore[no-any-return]

    def bind(self, client: str, address: str) -> Lease | None:
        return self.successResultOf(run(self.keeper.bind(client, client, POOL, address)))  # type: ignore[no-any-return]

    def test_offer_held_then_freed(self) -> None:
        offer = self.offer("a")
        assert offer is not None
        self.assertEqual(offer.state, OFFERED)
        self.assertIn(offer.address, POOL)
        self.assertEqual(offer.expires, 1000 + OFFER_HOLD)
        # While held, nobody else is offered it or can bind it.
        self.assertIsNone(self.bind("b", offer.address))
        others = {self.offer(c).address for c in "bcd"}  # type: ignore[union-attr]
        self.assertNotIn(offer.address, others)
        self.assertIsNone(self.offer("e"))  # the pool of four is full
        self.clock.advance(OFFER_HOLD + 1)
        again = self.offer("e")
        assert again is not None
        self.assertEqual(again.address, offer.address)  # the only hold that is over

    def test_bind_and_renew(self) -> None:
        offer = self.offer("a")
        assert offer is not None
        lease = self.bind("a", offer.address)
        assert lease is not None
        self.assertEqual((lease.state, lease.expires), (BOUND, 1000 + LEASE))
        self.clock.advance(LEASE / 2)
        renewed = self.bind("a", offer.address)
        assert renewed is not None
        self.assertEqual(renewed.expires, 1000 + LEASE * 1.5)

    def test_outside_pool_refused(self) -> None:
        self.assertIsNone(self.bind("a", "192.168.77.99"))
        self.assertIsNone(self.bind("a", "10.0.0.1"))

    def test_known_client_keeps_address_and_is_not_probed(self) -> None:
        prober = FakeProber(self.clock)
        self.keeper.prober = prober
        d = run(self.keeper.offer("a", "a", POOL))
        self.clock.advance(0.5)
        first = self.successResultOf(d)
        self.bind("a", first.address)
        self.assertEqual(prober.asked, [first.address])
        # Lease expires, client reboots much later: same address, offered at once.
        self.clock.advance(LEASE * 10)
        again = self.offer("a")
        assert again is not None
        self.assertEqual(again.address, first.address)
        self.assertEqual(prober.asked, [first.address])

    def test_bound_client_offered_its_lease_unchanged(self) -> None:
        offer = self.offer("a")
        lease = self.bind("a", offer.address)  # type: ignore[union-attr]
        self.assertEqual(self.offer("a"), lease)

    def test_probe_answered_skips_address(self) -> None:
        prober = FakeProber(self.clock, busy={"192.168.77.101"})
        self.keeper.prober = prober
        d = run(self.keeper.offer("a", "a", POOL, requested="192.168.77.101"))
        self.clock.advance(0.5)
        self.assertNoResult(d)
        self.clock.advance(0.5)
        offer = self.successResultOf(d)
        self.assertNotEqual(offer.address, "192.168.77.101")
        self.assertEqual(prober.asked[0], "192.168.77.101")
        shunned = self.successResultOf(self.store.holder("192.168.77.101"))
        self.assertEqual(shunned.state, DECLINED)

    def test_release(self) -> None:
        offer = self.offer("a")
        self.bind("a", offer.address)  # type: ignore[union-attr]
        self.assertTrue(self.successResultOf(run(self.keeper.release("a", offer.address))))  # type: ignore
        self.assertIsNotNone(self.bind("b", offer.address))  # type: ignore[union-attr]

    def test_decline(self) -> None:
        offer = self.offer("a")
        assert offer is not None
        self.bind("a", offer.address)
        # Another client cannot decline someone else's address.
        self.assertFalse(self.successResultOf(run(self.keeper.decline("b", offer.address))))
        self.assertTrue(self.successResultOf(run(self.keeper.decline("a", offer.address))))
        self.assertIsNone(self.bind("b", offer.address))
        self.assertNotEqual(self.offer("a").address, offer.address)  # type: ignore[union-attr]
        self.clock.advance(DECLINE_HOLD + 1)
        self.assertIsNotNone(self.bind("b", offer.address))

    def test_forget_offer(self) -> None:
        offer = self.offer("a")
        self.successResultOf(run(self.keeper.forget_offer("a")))
        self.assertIsNotNone(self.bind("b", offer.address))  # type: ignore[union-attr]

    def test_claim_lost_to_another_server(self) -> None:
        """
        A store shared with another server: the address chosen was taken
        between the listing and the claim; the next candidate is used.
        """
        store = self.store
        real_claim = store.claim
        stolen: list[str] = []

        def claim(lease: Lease, now: float) -> Deferred[bool]:
            if not stolen:
                stolen.append(lease.address)
                real_claim(Lease("other", "o", lease.address, now + 100, BOUND), now)
            return real_claim(lease, now)

        store.claim = claim  # type: ignore[method-assign]
        offer = self.offer("a")
        assert offer is not None
        self.assertNotEqual(offer.address, stolen[0])


ops = st.lists(
    st.tuples(st.sampled_from(["offer", "bind", "bind-other", "release", "decline", "wait"]),
              st.integers(0, 5), st.sampled_from([0.0, 1.0, 30.0, 61.0, 3599.0, 3601.0, 700.0])),
    max_size=60)


class LeaseProperties(unittest.TestCase):
    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(ops)
    def test_never_two_clients_on_one_address(self, steps: list[tuple[str, int, float]]) -> None:
        """
        Whatever clients do, every address handed out is in the pool, and
        at no time are two clients' grants (offers or leases the server
        returned and that are not over) on one address.  Also: a client
        whose lease expired or was released never blocks another, so a
        client is refused only when every address is held by others.
        """
        clock = Clock()
        clock.advance(10_000)
        keeper = LeaseKeeper(MemoryLeaseStore(), clock, LEASE, offer_hold=60.0,
                             decline_hold=600.0)
        # address -> (client, until) of what the server told clients
        granted: dict[str, tuple[str, float]] = {}
        blocked: dict[str, float] = {}  # declined addresses
        for op, who, delay in steps:
            client = f"c{who}"
            now = clock.seconds()
            if op == "wait":
                clock.advance(delay)
                continue
            mine = [a for a, (c, until) in granted.items() if c == client and until > now]
            if op == "offer":
                got = self.successResultOf(ensureDeferred(keeper.offer(client, client, POOL)))
                busy = {a for a, (c, until) in granted.items() if c != client and until > now}
                busy |= {a for a, until in blocked.items() if until > now}
                if got is None:
                    self.assertGreaterEqual(len(busy), POOL.size)
                    continue
                address = got.address
            elif op in ("bind", "bind-other"):
                address = mine[0] if mine and op == "bind" else POOL.address(who)
                got = self.successResultOf(ensureDeferred(keeper.bind(client, client, POOL,
                                                                      address)))
                if got is None:
                    continue
            elif op == "release":
                for address in mine:
                    self.successResultOf(ensureDeferred(keeper.release(client, address)))
                    granted[address] = (client, now)
                continue
            else:  # decline
                for address in mine:
                    if self.successResultOf(ensureDeferred(keeper.decline(client, address))):
                        granted[address] = (client, now)
                        blocked[address] = now + 600.0
                continue
            self.assertIn(address, POOL)
            holder = granted.get(address)
            if holder is not None and holder[0] != client:
                self.assertLessEqual(holder[1], now, f"{address} given to {client} while "
                                                     f"{holder[0]} holds it until {holder[1]}")
            self.assertLessEqual(blocked.get(address, 0.0), now)
            # One grant per client: its previous one is over.
            for other in mine:
                if other != address:
                    granted[other] = (client, now)
            granted[address] = (client, got.expires)
