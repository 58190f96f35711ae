# -*- test-case-name: tests.test_config_state -*-
"""
The C{state:} section: where the state that several pxed share lives.

Without it (the default) each pxed keeps its 'once' flags in memory or in
C{policy.state_file} and its boot timelines in memory.  With C{state.url}
naming a PostgreSQL database, every pxed pointing at it shares the flags,
the signing key and the timelines (see L{pxed.pg}).

The URL is checked here for its syntax only (libpq's own parser): that a
server answers is checked when pxed starts, so a configuration can be
validated on a machine that cannot reach the database.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from typing import Any

from pxed.config.policy import parse_duration
from pxed.config.reader import Reader

__all__ = ["StateConfig", "parse_state", "describe_url"]

_INSTANCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


@dataclass(frozen=True)
class StateConfig:
    """
    @ivar url: a libpq connection string or URL (C{postgresql://...}), or
        C{None}: nothing shared.
    @ivar instance: this pxed's name on the shared timelines (which pxed
        served each step); the host name by default.
    @ivar batch: timeline events are written at most this often (a boot
        storm is a few large writes, not one per event).
    @ivar poll: other pxed's events are read this often.
    @ivar keep: timeline events older than this are deleted.
    @ivar claim: a 'once' install handed out by one pxed is that pxed's to
        finish for this long; another pxed refuses it meanwhile.
    """

    url: str | None = None
    instance: str = ""
    batch: float = 1.0
    poll: float = 2.0
    keep: float = 30 * 86400.0
    claim: float = 600.0


def describe_url(url: str) -> str:
    """
    Where C{url} points (host, port, database), never its password: for
    logs and error messages.
    """
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(url)
    except Exception:
        return "the state database"
    host = params.get("host") or params.get("hostaddr") or "local socket"
    port = params.get("port") or "5432"
    dbname = params.get("dbname") or params.get("user") or ""
    return f"{host}:{port}/{dbname}"


def parse_state(reader: Reader, value: Any) -> StateConfig:
    section = reader.mapping(value, "state", {"url", "instance", "batch", "poll", "keep",
                                              "claim"})
    defaults = StateConfig()
    url = section.get("url")
    if url is not None:
        url = reader.string(url, "state.url")
        if "://" in url and not url.startswith(("postgresql://", "postgres://")):
            raise reader.fail("state.url", "must be a postgresql:// URL or a libpq "
                                           "connection string")
        from psycopg import ProgrammingError
        from psycopg.conninfo import conninfo_to_dict

        try:
            conninfo_to_dict(url)
        except ProgrammingError as e:
            why = str(e).strip().splitlines()[0] if str(e).strip() else "unparsable"
            raise reader.fail("state.url", f"not a PostgreSQL connection string or URL: "
                                           f"{why}") from None
    instance = section.get("instance")
    if instance is None:
        instance = socket.gethostname().split(".")[0] or "pxed"
    else:
        instance = reader.string(instance, "state.instance")
        if not _INSTANCE.match(instance):
            raise reader.fail("state.instance", f"{instance!r} must be a name of letters, "
                                                "digits, '.', '_' and '-' (at most 63)")

    def duration(key: str, default: float) -> float:
        given = section.get(key)
        return default if given is None else parse_duration(reader, given, f"state.{key}")

    keep = section.get("keep")
    keep_seconds = defaults.keep
    if keep is not None:
        keep_seconds = _days(reader, keep)
    return StateConfig(url=url, instance=instance, batch=duration("batch", defaults.batch),
                       poll=duration("poll", defaults.poll), keep=keep_seconds,
                       claim=duration("claim", defaults.claim))


def _days(reader: Reader, value: Any) -> float:
    """
    C{state.keep}: a number of days (C{30}, C{30d}), longer than the day
    that L{parse_duration} allows.
    """
    text = str(value).strip().removesuffix("d")
    try:
        days = float(text)
    except ValueError:
        days = -1.0
    if isinstance(value, bool) or not 0 < days <= 3650:
        raise reader.fail("state.keep", f"must be a number of days like 30 or 30d, not "
                                        f"{value!r}")
    return days * 86400.0
