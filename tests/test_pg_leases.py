"""
Tests for L{pxed.pg.leases}: the lease store's contract on a real
PostgreSQL (the same contract tests as the memory and file stores), and
two pxed racing for addresses through it.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
from twisted.internet import defer, reactor
from twisted.internet.defer import Deferred, fail, succeed
from twisted.trial import unittest

from pxed.dhcp.leases import BOUND, OFFERED, Lease
from pxed.metrics import Metrics
from pxed.pg.db import Database, StateMetrics
from pxed.pg.leases import PgLeaseStore
from pxed.pg.schema import migrate
from pxed.testing.leases import ContractMixin
from pxed.testing.postgres import shared_server


class Direct:
    """
    Runs the store's work on this thread with one real connection, so the
    contract tests can read results at once (successResultOf).
    """

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def run(self, work: Any) -> Deferred[Any]:
        try:
            return succeed(work(self.conn))
        except Exception:
            return fail()


def fresh_database() -> str:
    url = shared_server().create_database(f"l{uuid.uuid4().hex[:12]}")
    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn)
    return url


class PgLeaseContractTests(ContractMixin, unittest.TestCase):
    def setUp(self) -> None:
        self.conn = psycopg.connect(fresh_database(), autocommit=True)
        self.addCleanup(self.conn.close)

    def make(self) -> PgLeaseStore:
        return PgLeaseStore(Direct(self.conn), "a")

    def test_durable_across_stores(self) -> None:
        lease = Lease("mac:a", "52:54:00:00:00:0a", "192.168.77.10", 100.0, BOUND)
        self.assertTrue(self.successResultOf(self.make().claim(lease, 0.0)))
        other = PgLeaseStore(Direct(self.conn), "b")
        self.assertEqual(self.successResultOf(other.lease_of("mac:a")), lease)


class TwoServersTests(unittest.TestCase):
    def open(self, url: str, instance: str) -> PgLeaseStore:
        db = Database(url, reactor, StateMetrics(Metrics().registry))
        db.startService()
        self.addCleanup(db.stopService)
        return PgLeaseStore(db, instance)

    @defer.inlineCallbacks
    def test_one_address_one_winner(self) -> Any:
        url = fresh_database()
        a, b = self.open(url, "a"), self.open(url, "b")
        claims = [store.claim(Lease(f"mac:{store.instance}{i}", f"m{i}", "192.168.77.10", 100.0,
                                    OFFERED), 0.0)
                  for i in range(20) for store in (a, b)]
        results = yield defer.gatherResults(claims)
        self.assertEqual(sum(results), 1)
        holder = yield b.holder("192.168.77.10")
        self.assertIsNotNone(holder)

    @defer.inlineCallbacks
    def test_storm_never_doubles_an_address(self) -> Any:
        """
        Forty clients through two pxed, each server taking the first
        address its claim wins from the same candidates: every client ends
        with its own address.
        """
        url = fresh_database()
        a, b = self.open(url, "a"), self.open(url, "b")
        pool = [f"192.168.77.{n}" for n in range(10, 60)]

        @defer.inlineCallbacks
        def lease_one(store: PgLeaseStore, client: str) -> Any:
            for address in pool:
                won = yield store.claim(Lease(client, client, address, 1000.0, BOUND), 0.0)
                if won:
                    return address
            return None

        got = yield defer.gatherResults([lease_one((a, b)[i % 2], f"mac:{i}")
                                         for i in range(40)])
        self.assertNotIn(None, got)
        self.assertEqual(len(set(got)), 40)
        leases = yield a.leases()
        self.assertEqual(len(leases), 40)
        self.assertEqual(len({lease.address for lease in leases}), 40)

    @defer.inlineCallbacks
    def test_one_client_through_both(self) -> Any:
        """
        A client whose DISCOVER reached both pxed ends with one record.
        """
        url = fresh_database()
        a, b = self.open(url, "a"), self.open(url, "b")
        results = yield defer.gatherResults([
            a.claim(Lease("mac:x", "x", "192.168.77.10", 100.0, OFFERED), 0.0),
            b.claim(Lease("mac:x", "x", "192.168.77.11", 100.0, OFFERED), 0.0)])
        self.assertEqual(results, [True, True])
        leases = yield a.leases()
        self.assertEqual(len(leases), 1)
