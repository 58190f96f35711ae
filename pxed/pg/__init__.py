# -*- test-case-name: tests.test_pg -*-
"""
Shared state on PostgreSQL, for sites running several pxed: 'once' flags,
the signing key and boot timelines (see L{pxed.pg.store},
L{pxed.pg.bootlog}), selected by C{state.url}.

L{open_shared_state} is what L{pxed.service} calls: it connects once,
blocking, migrates the schema, reads the signing key every pxed of the
site shares, loads the recent timelines, and hands back the store, the
boot log and the service that runs them.

If the server does not answer then, pxed can still start when the key
does not have to come from it (C{policy.signing.key} or C{key_file}): it
starts in the outage state a running pxed enters when the database goes
away, and the periodic poll that first reaches the server migrates the
schema before ending the outage.  Without a configured key it cannot
sign a URL the other pxed accept, so it refuses to start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from twisted.application import service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from pxed.config import Config, ConfigError
from pxed.config.state import describe_url
from pxed.metrics import Metrics
from pxed.pg.bootlog import PgBootLog
from pxed.pg.db import Database, NotReady, StateMetrics, connect_options, first_line
from pxed.pg.leases import PgLeaseStore
from pxed.pg.schema import SchemaTooNew, migrate
from pxed.pg.store import PgStateStore, shared_signing_key

__all__ = ["SharedState", "open_shared_state"]

log = Logger()


class _StateService(service.Service):
    """
    Starts the database before the timelines and stops them the other way
    round, once the queued events are written.
    """

    name = "state"

    def __init__(self, db: Database, boot_log: PgBootLog) -> None:
        self.db = db
        self.boot_log = boot_log

    def startService(self) -> None:
        super().startService()
        self.db.startService()
        self.boot_log.startService()

    def stopService(self) -> Deferred[None]:  # type: ignore[override]
        super().stopService()
        d = self.boot_log.stopService()
        d.addBoth(lambda _: self.db.stopService())
        return d


@dataclass
class SharedState:
    store: PgStateStore
    boot_log: PgBootLog
    #: For the full DHCP mode's allocator (L{pxed.leasestore.ILeaseStore}).
    leases: PgLeaseStore
    service: service.Service


def open_shared_state(config: Config, reactor: Any, metrics: Metrics) -> SharedState:
    """
    Connect to C{config.state.url} and build the shared store and boot log.

    @raise ConfigError: the database cannot be reached, or its schema is
        newer than this pxed (one line, naming C{state.url}).
    """
    state = config.state
    url = state.url
    assert url is not None
    where = describe_url(url)
    state_metrics = StateMetrics(metrics.registry)
    db = Database(url, reactor, state_metrics)
    boot_log = PgBootLog(db, state.instance, state_metrics, reactor,
                         max_machines=config.status.machines, max_events=config.status.events,
                         batch=state.batch, poll=state.poll, keep=state.keep)
    store = PgStateStore(db, None, state.instance, state_metrics, claim=state.claim)

    def prepare(conn: psycopg.Connection[Any]) -> None:
        # Before pxed uses a database: the schema, then the shared key
        # (kept for a reload that drops the configured one).
        migrate(conn)
        store.key = shared_signing_key(conn)

    def prepare_later(conn: psycopg.Connection[Any]) -> None:
        # On a pool thread, when the server first answers after a start
        # without it: anything but "unreachable" keeps the outage going.
        try:
            prepare(conn)
        except SchemaTooNew as e:
            raise NotReady(str(e)) from None
        except psycopg.OperationalError:
            raise
        except psycopg.Error as e:
            raise NotReady(f"cannot prepare it: {first_line(e)}") from None

    try:
        with psycopg.connect(url, autocommit=True, **connect_options(url)) as conn:
            prepare(conn)
            boot_log.load(conn)
    except SchemaTooNew as e:
        raise ConfigError(config.source, "state.url", f"{where}: {e}") from None
    except psycopg.OperationalError as e:
        # Not connected (refused, timed out, and as at run time also a
        # refused login, which may be the site's auth backend being down).
        if config.policy.signing_key is None:
            raise ConfigError(config.source, "state.url",
                              f"cannot use the state database {where}: {first_line(e)} (the "
                              "signing key is in it; configure policy.signing.key_file, the "
                              "same on every pxed, to start without the database)") from None
        log.error("started without the state database {where} ({why}); 'once' rules get no "
                  "answer and timeline events wait in memory until it answers", where=where,
                  why=first_line(e))
        db.start_down(prepare_later)
    except psycopg.Error as e:
        raise ConfigError(config.source, "state.url",
                          f"cannot use the state database {where}: {first_line(e)}") from None
    boot_log.on_tick = store.retry
    return SharedState(store, boot_log, PgLeaseStore(db, state.instance),
                       _StateService(db, boot_log))
