# -*- test-case-name: tests.test_pg_leases -*-
"""
DHCP leases in PostgreSQL: the L{ILeaseStore} that lets several pxed
serve one LAN in full DHCP mode without ever handing out one address
twice.

The table's primary key is the address and the client is unique, so the
database itself holds "one record per address, one per client".  A claim
is one transaction: the client's other records are deleted, then an
upsert takes the address only if the row there is the client's own or has
expired (C{ON CONFLICT ... DO UPDATE ... WHERE}, which PostgreSQL
evaluates on the row it has locked: of two pxed claiming one address at
the same moment, the second sees the first's lease and gets C{False}).
Any failure to reach the database fails the Deferred, and the DHCP server
then answers nothing (the client retransmits).
"""

from __future__ import annotations

from typing import Any, Protocol

import psycopg
from twisted.internet.defer import Deferred
from zope.interface import implementer

from pxed.dhcp.leases import Lease
from pxed.leasestore import ILeaseStore

__all__ = ["PgLeaseStore"]

_SELECT = "SELECT client, mac, address, expires, state FROM pxed_leases"


class _Runner(Protocol):
    def run(self, work: Any) -> Deferred[Any]: ...


class _Lost(Exception):
    """
    The address is someone else's: roll the claim back.
    """


@implementer(ILeaseStore)
class PgLeaseStore:
    """
    @param db: runs a function with a connection (L{pxed.pg.db.Database}).
    @param instance: this pxed's name, kept with the leases it writes.
    """

    def __init__(self, db: _Runner, instance: str) -> None:
        self.db = db
        self.instance = instance

    def _claim(self, conn: psycopg.Connection[Any], lease: Lease, now: float) -> bool:
        try:
            with conn.transaction():
                conn.execute("DELETE FROM pxed_leases WHERE client = %s AND address <> %s",
                             (lease.client, lease.address))
                row = conn.execute(
                    "INSERT INTO pxed_leases AS l (address, client, mac, expires, state, "
                    "instance) VALUES (%s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (address) DO UPDATE SET client = excluded.client, "
                    "mac = excluded.mac, expires = excluded.expires, state = excluded.state, "
                    "instance = excluded.instance, updated = now() "
                    "WHERE l.client = excluded.client OR l.expires <= %s RETURNING 1",
                    (lease.address, lease.client, lease.mac, lease.expires, lease.state,
                     self.instance, now)).fetchone()
                if row is None:
                    raise _Lost()
        except _Lost:
            return False
        return True

    def claim(self, lease: Lease, now: float) -> Deferred[bool]:
        def claim(conn: psycopg.Connection[Any]) -> bool:
            try:
                return self._claim(conn, lease, now)
            except psycopg.errors.UniqueViolation:
                # The same client claimed another address through another pxed
                # at this very moment: now that it committed, this claim
                # moves the client (its other record is deleted).
                return self._claim(conn, lease, now)

        return self.db.run(claim)

    def release(self, client: str, address: str, now: float) -> Deferred[bool]:
        def release(conn: psycopg.Connection[Any]) -> bool:
            row = conn.execute("UPDATE pxed_leases SET expires = least(expires, %s), "
                               "instance = %s, updated = now() WHERE address = %s "
                               "AND client = %s RETURNING 1",
                               (now, self.instance, address, client)).fetchone()
            return row is not None

        return self.db.run(release)

    def lease_of(self, client: str) -> Deferred[Lease | None]:
        return self.db.run(lambda conn: _one(conn, f"{_SELECT} WHERE client = %s", client))

    def holder(self, address: str) -> Deferred[Lease | None]:
        return self.db.run(lambda conn: _one(conn, f"{_SELECT} WHERE address = %s", address))

    def leases(self) -> Deferred[list[Lease]]:
        def every(conn: psycopg.Connection[Any]) -> list[Lease]:
            return [_lease(row) for row in conn.execute(_SELECT).fetchall()]

        return self.db.run(every)


def _lease(row: tuple[Any, ...]) -> Lease:
    client, mac, address, expires, state = row
    return Lease(client, mac, address, float(expires), state)


def _one(conn: psycopg.Connection[Any], query: str, value: str) -> Lease | None:
    row = conn.execute(query, (value,)).fetchone()
    return _lease(row) if row is not None else None
