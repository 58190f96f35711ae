# -*- test-case-name: tests.test_pg -*-
"""
pxed's connection to PostgreSQL: a psycopg connection pool driven from a
thread pool of its own, so the reactor never waits on the database.

Why threads rather than psycopg's asyncio API: pxed runs on Twisted's
default (epoll) reactor, which C{twistd}, the tests and embedding programs
all install; the asyncio API would need the asyncio reactor installed
before anything imports the reactor, for the whole process.  pxed's
database work is a few short statements per boot (and one batched write
per second), which a handful of threads carry easily; the README gives
the measured cost.

L{Database.run} is the one way in: it runs a function with a pooled
connection on a pool thread and returns a Deferred.  Every failure to
reach the server (refused, timed out, dropped, pool exhausted) becomes
L{StateUnavailable}; the first one of an outage is logged once, the
recovery once, and the C{pxed_state_up} gauge says which it is.  psycopg's
pool reconnects by itself, so pxed recovers without a restart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from prometheus_client import CollectorRegistry, Counter, Gauge
from psycopg_pool import ConnectionPool, PoolTimeout
from twisted.application import service
from twisted.internet.defer import Deferred, fail
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from pxed.config.state import describe_url
from pxed.store import StateUnavailable

__all__ = ["Database", "NotReady", "StateUnavailable", "connect_options", "first_line"]

log = Logger()

# psycopg's pool logs every failed reconnection through the logging module;
# pxed says it once per outage itself (see Database._failed).
logging.getLogger("psycopg.pool").setLevel(logging.CRITICAL)

_T = TypeVar("_T")

#: Seconds to wait for a connection, and for one statement: a database
#: slower than this is treated as down for that request.
WAIT = 3.0
STATEMENT_TIMEOUT_MS = 10_000


class NotReady(StateUnavailable):
    """
    The server answers, but what pxed must do before using it failed (a
    schema newer than this pxed): the outage goes on.
    """


def first_line(e: Exception) -> str:
    """
    The first line of a database error (libpq's carry hints on the next
    ones), or its type when it says nothing: what one log line shows.
    """
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def connect_options(url: str) -> dict[str, Any]:
    """
    Connection keywords pxed adds to the URL's own: a connect timeout
    unless the URL sets one.
    """
    from psycopg.conninfo import conninfo_to_dict

    return {} if "connect_timeout" in conninfo_to_dict(url) else {"connect_timeout": 3}


class StateMetrics:
    """
    The shared state's own metrics, registered in pxed's registry.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.up = Gauge("pxed_state_up", "1 while the state database answers, 0 during an "
                        "outage.", registry=registry)
        self.up.set(1)
        self.once_refused = Counter(
            "pxed_state_once_refused", "Boots given no answer because a 'once' rule matched "
            "and the state database could not be asked or could not record it.",
            registry=registry)
        self.events_written = Counter(
            "pxed_state_events_written", "Timeline events written to the state database.",
            registry=registry)
        self.event_batches = Counter(
            "pxed_state_event_batches", "Batched timeline writes (one transaction each).",
            registry=registry)
        self.events_dropped = Counter(
            "pxed_state_events_dropped", "Timeline events dropped unwritten because the "
            "database stayed unreachable longer than the buffer lasts.", registry=registry)


class Database(service.Service):
    """
    The pool of connections to the state database, and the threads that
    use them.  Started and stopped with pxed.

    @ivar down: whether the last attempt failed to reach the server.
    """

    name = "state-database"

    def __init__(self, url: str, reactor: Any, metrics: StateMetrics, threads: int = 4,
                 wait: float = WAIT) -> None:
        self.url = url
        self.where = describe_url(url)
        self.reactor = reactor
        self.metrics = metrics
        self.wait = wait
        self.down = False
        #: Run on the first connection that reaches the server, before any
        #: work, when pxed started without the database (L{start_down}).
        self.prepare: Callable[[psycopg.Connection[Any]], None] | None = None
        self._refusal: str | None = None
        self.threads = ThreadPool(minthreads=0, maxthreads=threads, name="pxed-state")
        self.pool = ConnectionPool(
            url, min_size=1, max_size=threads, open=False, timeout=wait,
            kwargs={"autocommit": True, **connect_options(url)},
            configure=self._configure, reconnect_timeout=wait * 4,
            reconnect_failed=lambda pool: None, name="pxed-state")

    @staticmethod
    def _configure(conn: psycopg.Connection[Any]) -> None:
        # A statement that hangs (a locked table, a dying server) must not
        # hold a pool thread for ever.
        conn.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")

    def start_down(self, prepare: Callable[[psycopg.Connection[Any]], None]) -> None:
        """
        Begin in the known-outage state (the server did not answer at
        start-up): only probe calls try it, and the first that reaches it
        runs C{prepare} (the schema migration) before its own work and
        ends the outage only if C{prepare} succeeds.
        """
        self.down = True
        self.metrics.up.set(0)
        self.prepare = prepare

    def startService(self) -> None:
        super().startService()
        self.threads.start()
        self.pool.open(wait=False)

    def stopService(self) -> Deferred[None]:  # type: ignore[override]
        super().stopService()
        d: Deferred[None] = deferToThreadPool(self.reactor, self.threads, self._close)
        d.addBoth(lambda result: self.threads.stop())
        return d

    def _close(self) -> None:
        self.pool.close(timeout=self.wait)

    def run(self, work: Callable[[psycopg.Connection[Any]], _T],
            probe: bool = False) -> Deferred[_T]:
        """
        Call C{work(connection)} on a pool thread with a pooled connection
        (in autocommit mode: C{work} opens its own transactions).

        During an outage requests fail at once rather than each waiting
        for the connection timeout (a burst of them would queue behind one
        another for minutes); only C{probe} calls (the periodic timeline
        poll and write) try the server, and the first that reaches it ends
        the outage.

        @return: C{work}'s result; L{StateUnavailable} if the server cannot
            be reached or answered too slowly.
        """
        if self.down and not probe:
            return fail(StateUnavailable(f"{self.where} is unreachable; retried every poll"))
        d: Deferred[_T] = deferToThreadPool(self.reactor, self.threads, self._call, work)
        d.addCallbacks(self._reached, self._failed)
        return d

    def _call(self, work: Callable[[psycopg.Connection[Any]], _T]) -> _T:
        try:
            with self.pool.connection(timeout=self.wait) as conn:
                prepare = self.prepare
                if prepare is not None:
                    # Idempotent (the migration takes an advisory lock), so
                    # two threads racing here do no harm.
                    prepare(conn)
                    self.prepare = None
                return work(conn)
        except PoolTimeout as e:
            raise StateUnavailable(f"no connection to {self.where} within {self.wait:g}s") from e
        except psycopg.errors.QueryCanceled as e:
            raise StateUnavailable(f"{self.where} answered too slowly") from e
        except psycopg.OperationalError as e:
            raise StateUnavailable(f"{self.where}: {first_line(e)}") from e

    def _reached(self, result: _T) -> _T:
        if self.down:
            self.down = False
            self.metrics.up.set(1)
            log.info("state database {where} answers again", where=self.where)
        return result

    def _failed(self, failure: Failure) -> Failure:
        if failure.check(NotReady):
            why = failure.getErrorMessage()
            if why != self._refusal:  # once, not every poll
                self._refusal = why
                log.error("state database {where}: {why}; pxed stays in outage mode",
                          where=self.where, why=why)
        if failure.check(StateUnavailable) and not self.down:
            self.down = True
            self.metrics.up.set(0)
            log.error("state database unreachable: {why}; 'once' rules get no answer and "
                      "timeline events wait in memory until it answers again",
                      why=failure.getErrorMessage())
        return failure
