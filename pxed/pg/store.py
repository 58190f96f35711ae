# -*- test-case-name: tests.test_pg -*-
"""
'Once' flags and the signing key in PostgreSQL, shared by every pxed that
points at the database.

A flag is one row of C{pxed_once} per machine and rule, in one of two
states:

  - C{claimed}: a pxed handed the rule's script out (L{PgStateStore.claim_once},
    an atomic upsert when the policy decides at the script stage) and the
    machine's beacon has not come yet.  For C{state.claim} seconds only that
    pxed hands the install out again (the machine retrying through it);
    another pxed gives no answer.  After that the boot counts as abandoned
    and any pxed may take the claim over.
  - C{done}: the beacon came; every pxed falls through the rule from then on.

Marking is a committed transaction before the beacon's HTTP 200; a mark
that cannot be committed is kept in memory and retried until the database
answers (the beacon gets a 503 meanwhile).
"""

from __future__ import annotations

import secrets
from typing import Any

import psycopg
from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from pxed.pg.db import Database, StateMetrics
from pxed.store import KEY_BYTES, IStateStore, StateUnavailable

__all__ = ["PgStateStore", "shared_signing_key"]

log = Logger()


def shared_signing_key(conn: psycopg.Connection[Any]) -> bytes:
    """
    The site's signing key: the first pxed creates it, every other one
    reads that one (the insert does nothing if a row exists), so all of
    them accept each other's URLs.
    """
    with conn.transaction():
        conn.execute("INSERT INTO pxed_signing_key (id, key) VALUES (1, %s) "
                     "ON CONFLICT (id) DO NOTHING", (secrets.token_bytes(KEY_BYTES),))
        row = conn.execute("SELECT key FROM pxed_signing_key WHERE id = 1").fetchone()
    assert row is not None
    return bytes(row[0])


@implementer(IStateStore)
class PgStateStore:
    """
    L{IStateStore} on the shared database.

    @param key: the signing key, read when pxed started (the interface's
        C{signing_key} cannot wait for the database); C{None} until the
        database first answers when pxed started without it (then the
        configuration gives the key pxed signs with).
    @param instance: this pxed's name, kept with the flags it sets.
    @param claim: seconds a claim holds (C{state.claim}).
    """

    def __init__(self, db: Database, key: bytes | None, instance: str, metrics: StateMetrics,
                 claim: float = 600.0) -> None:
        self.db = db
        self.key = key
        self.instance = instance
        self.metrics = metrics
        self.claim = claim
        #: Marks the database could not take yet: retried by L{retry}.
        self.unrecorded: set[tuple[str, str]] = set()

    def _refused(self, failure: Failure) -> Failure:
        if failure.check(StateUnavailable):
            self.metrics.once_refused.inc()
        return failure

    def once_done(self, mac: str, rule: str) -> Deferred[bool]:
        if (mac, rule) in self.unrecorded:
            # Booted through this pxed; the database just does not know yet.
            return succeed(True)

        def ask(conn: psycopg.Connection[Any]) -> bool:
            row = conn.execute("SELECT 1 FROM pxed_once WHERE mac = %s AND rule = %s "
                               "AND state = 'done'", (mac, rule)).fetchone()
            return row is not None

        return self.db.run(ask).addErrback(self._refused)

    def claim_once(self, mac: str, rule: str) -> Deferred[bool]:
        instance, claim = self.instance, self.claim

        def take(conn: psycopg.Connection[Any]) -> tuple[bool, str | None]:
            # One statement: concurrent claims serialise on the primary key,
            # and exactly one of two pxed racing for a row wins it.
            row = conn.execute(
                "INSERT INTO pxed_once AS o (mac, rule, state, instance) "
                "VALUES (%s, %s, 'claimed', %s) ON CONFLICT (mac, rule) DO UPDATE "
                "SET instance = excluded.instance, at = now() "
                "WHERE o.state = 'claimed' AND (o.instance = excluded.instance "
                "OR o.at < now() - make_interval(secs => %s)) RETURNING 1",
                (mac, rule, instance, claim)).fetchone()
            if row is not None:
                return True, None
            holder = conn.execute("SELECT state, instance FROM pxed_once WHERE mac = %s "
                                  "AND rule = %s", (mac, rule)).fetchone()
            return False, (f"{holder[1]} ({holder[0]})" if holder else None)

        def taken(result: tuple[bool, str | None]) -> bool:
            ok, holder = result
            if not ok:
                log.info("{mac}: once-rule {rule} is held by {holder}", mac=mac, rule=rule,
                         holder=holder)
            return ok

        return self.db.run(take).addCallbacks(taken, self._refused)

    def _mark(self, mac: str, rule: str) -> Deferred[None]:
        instance = self.instance

        def mark(conn: psycopg.Connection[Any]) -> None:
            conn.execute("INSERT INTO pxed_once (mac, rule, state, instance) "
                         "VALUES (%s, %s, 'done', %s) ON CONFLICT (mac, rule) DO UPDATE "
                         "SET state = 'done', instance = excluded.instance, at = now()",
                         (mac, rule, instance))

        return self.db.run(mark)

    def mark_once(self, mac: str, rule: str) -> Deferred[None]:
        """
        Commit the flag; if the database cannot take it now, fail (the
        beacon says so) and keep retrying it from memory.
        """

        def failed(failure: Failure) -> Failure:
            if failure.check(StateUnavailable):
                self.unrecorded.add((mac, rule))
            return failure

        return self._mark(mac, rule).addErrback(failed)

    def retry(self) -> Deferred[None] | None:
        """
        Write the marks that failed before (called periodically).
        """
        if not self.unrecorded:
            return None
        return ensureDeferred(self._retry(sorted(self.unrecorded)))

    async def _retry(self, pending: list[tuple[str, str]]) -> None:
        for mac, rule in pending:
            try:
                await self._mark(mac, rule)
            except StateUnavailable:
                return
            self.unrecorded.discard((mac, rule))
            log.info("{mac}: once-rule {rule} recorded now that the state database answers",
                     mac=mac, rule=rule)

    def clear_once(self, mac: str, rule: str | None = None) -> Deferred[None]:
        self.unrecorded = {(m, r) for m, r in self.unrecorded
                           if m != mac or (rule is not None and r != rule)}

        def clear(conn: psycopg.Connection[Any]) -> None:
            if rule is None:
                conn.execute("DELETE FROM pxed_once WHERE mac = %s", (mac,))
            else:
                conn.execute("DELETE FROM pxed_once WHERE mac = %s AND rule = %s", (mac, rule))

        return self.db.run(clear)

    def signing_key(self) -> bytes:
        if self.key is None:
            # Only a reload that drops policy.signing while pxed has not
            # reached the database yet asks: rejected, the old key signs on.
            raise StateUnavailable("no policy.signing key configured, and the state database "
                                   "(which holds the shared one) has not answered since pxed "
                                   "started")
        return self.key

    def reload(self) -> None:
        """
        Nothing to re-read: every question goes to the database.
        """
