# -*- test-case-name: tests.test_pg -*-
"""
Shared state on PostgreSQL, for sites running several pxed: 'once' flags,
the signing key and boot timelines (see L{pxed.pg.store},
L{pxed.pg.bootlog}), selected by C{state.url}.

L{open_shared_state} is what L{pxed.service} calls: it connects once,
blocking (pxed cannot start without the signing key every pxed of the
site shares), migrates the schema, loads the recent timelines, and hands
back the store, the boot log and the service that runs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from twisted.application import service
from twisted.internet.defer import Deferred

from pxed.config import Config, ConfigError
from pxed.config.state import describe_url
from pxed.metrics import Metrics
from pxed.pg.bootlog import PgBootLog
from pxed.pg.db import Database, StateMetrics, connect_options
from pxed.pg.leases import PgLeaseStore
from pxed.pg.schema import SchemaTooNew, migrate
from pxed.pg.store import PgStateStore, shared_signing_key

__all__ = ["SharedState", "open_shared_state"]


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
    try:
        with psycopg.connect(url, autocommit=True, **connect_options(url)) as conn:
            migrate(conn)
            key = shared_signing_key(conn)
            boot_log.load(conn)
    except SchemaTooNew as e:
        raise ConfigError(config.source, "state.url", f"{where}: {e}") from None
    except psycopg.Error as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(config.source, "state.url",
                          f"cannot use the state database {where}: {first}") from None
    store = PgStateStore(db, key, state.instance, state_metrics, claim=state.claim)
    boot_log.on_tick = store.retry
    return SharedState(store, boot_log, PgLeaseStore(db, state.instance),
                       _StateService(db, boot_log))
