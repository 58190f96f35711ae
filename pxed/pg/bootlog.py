# -*- test-case-name: tests.test_pg -*-
"""
Boot timelines shared through PostgreSQL.

L{IBootLog} is synchronous (the recorder asks C{last()} on every event,
the status page reads C{machines()} and C{events()}), so each pxed keeps
the site's recent timelines in memory (a L{MemoryBootLog}) and the
database is behind it, never in the way of a request:

  - C{record} adds the event to memory at once and queues it; every
    C{state.batch} seconds the queue is written in one C{COPY} (a boot
    storm of thousands of events a second is a write a second);
  - every C{state.poll} seconds the events other pxed wrote since the last
    poll are read and merged in, so every pxed's status page shows every
    machine of the site, each event naming the pxed that served it
    (field C{pxed});
  - at start the last day of events is loaded, so a restart loses no
    timeline.

What is new is found by the server's insertion time together with the
writing transaction's id (C{xid8}): a poll asks for rows of transactions
that were still open at the previous poll, so a batch that commits late
is not skipped, and rows already merged are recognised by id.

With the database down, events wait in memory (up to L{MAX_PENDING}; the
oldest are dropped and counted beyond that) and go out when it answers
again; stopping pxed writes what is queued.  A C{kill -9} loses at most
the events of the last C{state.batch} seconds.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from twisted.application import service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from pxed.pg.db import Database, StateMetrics
from pxed.state import BootEvent, IBootLog, MemoryBootLog
from pxed.store import StateUnavailable

__all__ = ["PgBootLog", "MAX_PENDING"]

log = Logger()

#: Events kept for writing while the database is unreachable.
MAX_PENDING = 200_000
#: Events written per transaction at most.
BATCH_ROWS = 5_000
#: A batch's transaction is over within this many seconds (the statement
#: timeout), so rows inserted earlier than this before a poll were visible
#: to it.
_COMMIT_WITHIN = 30.0
#: Events loaded at start: this recent.
LOAD_SECONDS = 86400.0
#: Old events are deleted this often.
PRUNE_EVERY = 3600.0

_COLUMNS = "(mac, stage, at, instance, writer, fields)"


def _then(running: Deferred[None], again: Callable[[], Deferred[None]]) -> Deferred[None]:
    """
    Call C{again} once C{running} (a write or read under way) is over.

    A write under way took its events before the caller queued its own, and
    a read under way may have begun before what the caller wants to see was
    committed: joining it would return before the caller's work is done.
    C{running} keeps its own result for its other waiters.
    """
    after: Deferred[None] = Deferred()

    def over(result: object) -> object:
        after.callback(None)
        return result

    running.addBoth(over)
    return after.addCallback(lambda _: again())


@implementer(IBootLog)
class PgBootLog(service.Service):
    """
    An L{IBootLog} kept in memory and shared through the database.

    @param instance: this pxed's name, stored with each of its events.
    """

    name = "state-timelines"

    def __init__(self, db: Database, instance: str, metrics: StateMetrics, reactor: Any,
                 max_machines: int = 4096, max_events: int = 256, batch: float = 1.0,
                 poll: float = 2.0, keep: float = 30 * 86400.0,
                 on_tick: Callable[[], Any] | None = None) -> None:
        self.db = db
        self.instance = instance
        self.writer = uuid.uuid4().hex[:16]
        self.metrics = metrics
        self.reactor = reactor
        self.memory = MemoryBootLog(max_machines, max_events, clock=reactor.seconds)
        self.pending: deque[BootEvent] = deque()
        self.batch = batch
        self.poll = poll
        self.keep = keep
        self.on_tick = on_tick
        self._writing: Deferred[None] | None = None
        self._reading: Deferred[None] | None = None
        self._seen: dict[int, float] = {}
        self._since: tuple[str, datetime] | None = None  # (xmin, server time)
        self._last_prune = 0.0
        self._dropping = False
        self._writes = LoopingCall(self.flush)
        self._writes.clock = reactor
        self._reads = LoopingCall(self.refresh)
        self._reads.clock = reactor

    # -- IBootLog -------------------------------------------------------------

    def record(self, mac: str, stage: str, **fields: Any) -> None:
        self.memory.record(mac, stage, pxed=self.instance, **fields)
        event = self.memory.last(mac)
        assert event is not None
        if len(self.pending) >= MAX_PENDING:
            self.pending.popleft()
            self.metrics.events_dropped.inc()
            if not self._dropping:
                self._dropping = True
                log.warn("state database: {count} timeline events wait unwritten; dropping the "
                         "oldest until it answers", count=len(self.pending))
        self.pending.append(event)

    def events(self, mac: str) -> list[BootEvent]:
        return self.memory.events(mac)

    def machines(self) -> list[str]:
        return self.memory.machines()

    def last(self, mac: str) -> BootEvent | None:
        return self.memory.last(mac)

    def version(self) -> int:
        return self.memory.version()

    # -- the service ----------------------------------------------------------

    def load(self, conn: psycopg.Connection[Any]) -> None:
        """
        Fill memory with the site's recent events (blocking: at start-up).
        """
        self._merge(self._read(conn, initial=True))

    def startService(self) -> None:
        super().startService()
        self._writes.start(self.batch, now=False)
        self._reads.start(self.poll, now=False)

    def stopService(self) -> Deferred[None]:  # type: ignore[override]
        """
        Write what is queued before the database connection closes.
        """
        super().stopService()
        for loop in (self._writes, self._reads):
            if loop.running:
                loop.stop()
        d = self._writing if self._writing is not None else succeed(None)
        return d.addBoth(lambda _: self._drain())

    def _drain(self) -> Deferred[None]:
        if not self.pending:
            return succeed(None)
        d = self.flush()
        return d.addCallback(lambda _: self._drain() if self.pending and not self.db.down
                             else None)

    # -- writing --------------------------------------------------------------

    def flush(self) -> Deferred[None]:
        """
        Write the queued events (at most L{BATCH_ROWS}) in one transaction;
        if a write is under way, after it.
        """
        if self._writing is not None:
            return _then(self._writing, self.flush)
        if not self.pending:
            return succeed(None)
        taken = [self.pending.popleft() for _ in range(min(BATCH_ROWS, len(self.pending)))]
        rows = [(e.mac, e.stage, e.when, self.instance, self.writer, Jsonb(e.fields))
                for e in taken]

        def write(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction(), conn.cursor() as cur:
                with cur.copy(f"COPY pxed_events {_COLUMNS} FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)

        def written(_: object) -> None:
            self.metrics.events_written.inc(len(rows))
            self.metrics.event_batches.inc()
            self._dropping = False

        def failed(failure: Failure) -> None:
            # Back to the front, in order: written when the database answers.
            self.pending.extendleft(reversed(taken))
            while len(self.pending) > MAX_PENDING:
                self.pending.popleft()
                self.metrics.events_dropped.inc()
            if not failure.check(StateUnavailable):
                log.failure("state database: cannot write timeline events", failure)

        def done(result: object) -> None:
            self._writing = None

        d = self.db.run(write, probe=True).addCallbacks(written, failed)
        d.addBoth(done)
        self._writing = d
        return d

    # -- reading --------------------------------------------------------------

    def refresh(self) -> Deferred[None]:
        """
        Merge in what other pxed wrote since the last poll, retry once flags
        that could not be written, and now and then delete old events.

        The retry (C{on_tick}) runs once the read has reached the database,
        and the returned Deferred fires only after it: a poll that finds the
        database back has also written the marks it missed (started at the
        same time, a mark waiting for a second pooled connection would land
        after the poll said it was done), and a poll during an outage tries
        no mark.  Called while a read is under way, it reads again after
        that one (see L{_then}).
        """
        if self._reading is not None:
            return _then(self._reading, self.refresh)
        now = time.time()
        prune = now - self._last_prune > PRUNE_EVERY
        keep = self.keep

        def read(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
            rows = self._read(conn)
            if prune:
                conn.execute("DELETE FROM pxed_events WHERE inserted < now() - "
                             "make_interval(secs => %s)", (keep,))
            return rows

        def merged(rows: list[tuple[Any, ...]]) -> None:
            if prune:
                self._last_prune = now
            self._merge(rows)

        def retry(_: object) -> Any:
            if self.on_tick is None or self.db.down:
                return None
            return self.on_tick()

        def done(result: object) -> None:
            self._reading = None
            if isinstance(result, Failure):  # not an outage: a bug to show
                log.failure("state database: cannot poll", result)

        d = self.db.run(read, probe=True).addCallbacks(
            merged, lambda f: f.trap(StateUnavailable) and None)
        d.addCallback(retry)
        d.addBoth(done)
        self._reading = d
        return d

    def _read(self, conn: psycopg.Connection[Any], initial: bool = False
              ) -> list[tuple[Any, ...]]:
        """
        The rows other pxed wrote since the last read (on a pool thread).
        """
        mark = conn.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text, "
                            "statement_timestamp()").fetchone()
        assert mark is not None
        columns = "SELECT id, mac, stage, at, instance, fields FROM pxed_events"
        if initial or self._since is None:
            rows = conn.execute(f"{columns} WHERE inserted > now() - make_interval(secs => %s) "
                                "ORDER BY id", (LOAD_SECONDS,)).fetchall()
        else:
            xmin, then = self._since
            rows = conn.execute(
                f"{columns} WHERE inserted > %s - make_interval(secs => %s) "
                "AND xact >= %s::xid8 AND writer <> %s ORDER BY id",
                (then, _COMMIT_WITHIN, xmin, self.writer)).fetchall()
        self._since = (mark[0], mark[1])
        return rows

    def _merge(self, rows: list[tuple[Any, ...]]) -> None:
        horizon = time.time() - 2 * (_COMMIT_WITHIN + self.poll)
        for ident, mac, stage, at, instance, fields in rows:
            if ident in self._seen:
                continue
            self._seen[ident] = time.time()
            fields = dict(fields or {})
            fields.setdefault("pxed", instance)
            self.memory.insert(BootEvent(mac, stage, at, fields))
        if len(self._seen) > 10_000 or rows:
            self._seen = {i: t for i, t in self._seen.items() if t > horizon}
