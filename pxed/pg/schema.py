# -*- test-case-name: tests.test_pg -*-
"""
pxed's tables in PostgreSQL, created and migrated by pxed itself.

The schema is versioned: C{pxed_schema} holds the version the database is
at, and L{migrate} applies the steps after it, in one transaction under an
advisory lock, so several pxed starting together migrate once.  A database
at a newer version than this code knows was migrated by a newer pxed: this
one refuses to start rather than write rows the newer one may misread.

Every table starts with C{pxed_} so the schema can share a database with
others; pxed never touches tables that are not its own.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SCHEMA_VERSION", "MIGRATIONS", "SchemaTooNew", "migrate"]

#: Taken (transaction-scoped) while migrating: any constant of our own.
_LOCK = 0x70786564  # "pxed"

#: The steps from one version to the next; version N is after step N-1.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        # 'once' flags: done (the beacon came), or claimed (a pxed handed the
        # install out and its beacon has not come yet).
        """CREATE TABLE pxed_once (
            mac text NOT NULL,
            rule text NOT NULL,
            state text NOT NULL CHECK (state IN ('claimed', 'done')),
            instance text NOT NULL,
            at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (mac, rule))""",
        # The key that signs pxed's URLs: one row, created by the first pxed.
        """CREATE TABLE pxed_signing_key (
            id integer PRIMARY KEY CHECK (id = 1),
            key bytea NOT NULL,
            created timestamptz NOT NULL DEFAULT now())""",
        # Boot timelines.  'inserted' is the server's clock when the row was
        # written, which readers use to find what is new; 'xact' the writing
        # transaction, so a reader never misses a row committed late.
        """CREATE TABLE pxed_events (
            id bigserial PRIMARY KEY,
            mac text NOT NULL,
            stage text NOT NULL,
            at double precision NOT NULL,
            instance text NOT NULL,
            writer text NOT NULL,
            fields jsonb NOT NULL DEFAULT '{}',
            inserted timestamptz NOT NULL DEFAULT clock_timestamp(),
            xact xid8 NOT NULL DEFAULT pg_current_xact_id())""",
        "CREATE INDEX pxed_events_inserted ON pxed_events (inserted)",
        "CREATE INDEX pxed_events_mac ON pxed_events (mac, id)",
    ),
    (
        # DHCP leases of the full DHCP mode: one row per address, one per
        # client; the constraints are what make two pxed never hand out one
        # address twice.
        """CREATE TABLE pxed_leases (
            address text PRIMARY KEY,
            client text NOT NULL UNIQUE,
            mac text NOT NULL,
            expires double precision NOT NULL,
            state text NOT NULL CHECK (state IN ('offered', 'bound', 'declined')),
            instance text NOT NULL,
            updated timestamptz NOT NULL DEFAULT now())""",
    ),
)

#: The version this code writes and reads.
SCHEMA_VERSION = len(MIGRATIONS)


class SchemaTooNew(Exception):
    """
    The database was migrated by a newer pxed.
    """


def migrate(conn: Any, known: int = SCHEMA_VERSION) -> tuple[int, int]:
    """
    Bring the database behind C{conn} (a psycopg connection in autocommit
    mode) to version C{known}.

    @return: the versions before and after.
    @raise SchemaTooNew: the database is at a version above C{known}.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS pxed_schema (version integer NOT NULL)")
        row = conn.execute("SELECT max(version) FROM pxed_schema").fetchone()
        current = row[0] if row and row[0] is not None else 0
        if current > known:
            raise SchemaTooNew(f"the database's pxed schema is version {current}, newer than "
                               f"this pxed knows ({known}): upgrade pxed, or point it at "
                               "another database")
        for version in range(current, known):
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
        if current != known:
            conn.execute("DELETE FROM pxed_schema")
            conn.execute("INSERT INTO pxed_schema (version) VALUES (%s)", (known,))
    return current, known
