# -*- test-case-name: tests.test_config_status -*-
"""
The C{status:} section: the status page, its JSON API, C{/metrics}, and
how much boot history is kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pxed.config.policy import parse_duration
from pxed.config.reader import Reader, type_name

__all__ = ["StatusConfig", "parse_status", "RESERVED_PATHS"]

#: Paths the status page cannot take: pxed's own routes live there.
RESERVED_PATHS = ("/_/ipxe", "/_/file", "/_/export", "/_/boot", "/_/booting", "/_/admin",
                  "/_/machines", "/_/leases", "/metrics")

_PATH = re.compile(r"^(/[A-Za-z0-9._~-]+)+$")


@dataclass(frozen=True)
class StatusConfig:
    """
    @ivar page: the status page's path, or C{None} for no page.
    @ivar api: serve the JSON API (C{/_/machines}); the page needs it.
    @ivar api_file_urls: show signed file URLs in the API's events
        (C{status.api: {file_urls: false}} leaves them out).
    @ivar metrics: serve C{/metrics}.
    @ivar machines: how many machines' timelines are kept (the least
        recently active is forgotten first).
    @ivar events: how many events are kept per machine.
    @ivar loop_after: the same boot program fetched this many times without
        the boot finishing is reported as a loop ...
    @ivar loop_window: ... when it happens within this many seconds.
    """

    page: str | None = "/_/status"
    api: bool = True
    api_file_urls: bool = True
    metrics: bool = True
    machines: int = 4096
    events: int = 256
    loop_after: int = 3
    loop_window: float = 600.0


def _page(reader: Reader, value: Any) -> str | None:
    if value is False or value is None:
        return None
    path = reader.string(value, "status.page").rstrip("/")
    if not _PATH.match(path) or any(part in (".", "..") for part in path.split("/")):
        raise reader.fail("status.page", f"{value!r} must be a path like /_/status, or false "
                                         "for no status page")
    for reserved in RESERVED_PATHS:
        # Neither on nor above a route of pxed's: the page's mount would
        # take every request below it (/_ would swallow /_/ipxe).
        if path == reserved or path.startswith(reserved + "/") or reserved.startswith(path + "/"):
            raise reader.fail("status.page", f"{path} is taken by pxed's {reserved}")
    return path


def _flag(reader: Reader, value: Any, key: str, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise reader.fail(key, f"must be true or false, not {type_name(value)}")
    return value


def _count(reader: Reader, value: Any, key: str, default: int, least: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise reader.fail(key, f"must be a whole number of at least {least}, not {value!r}")
    return value


def parse_status(reader: Reader, value: Any) -> StatusConfig:
    section = reader.mapping(value, "status", {"page", "api", "metrics", "history", "loops"})
    defaults = StatusConfig()
    page = _page(reader, section.get("page", defaults.page))
    api_value = section.get("api")
    file_urls = defaults.api_file_urls
    if isinstance(api_value, dict):
        options = reader.mapping(api_value, "status.api", {"file_urls"})
        file_urls = _flag(reader, options.get("file_urls"), "status.api.file_urls", file_urls)
        api_value = True
    api = _flag(reader, api_value, "status.api", defaults.api)
    if page is not None and not api:
        raise reader.fail("status.page", "the status page reads the JSON API: set status.api "
                                         "to true, or status.page to false")
    history = reader.mapping(section.get("history"), "status.history", {"machines", "events"})
    loops = reader.mapping(section.get("loops"), "status.loops", {"after", "within"})
    within = loops.get("within")
    return StatusConfig(
        page=page,
        api=api,
        api_file_urls=file_urls,
        metrics=_flag(reader, section.get("metrics"), "status.metrics", defaults.metrics),
        machines=_count(reader, history.get("machines"), "status.history.machines",
                        defaults.machines, 1),
        events=_count(reader, history.get("events"), "status.history.events", defaults.events,
                      16),
        loop_after=_count(reader, loops.get("after"), "status.loops.after", defaults.loop_after,
                          2),
        loop_window=(defaults.loop_window if within is None
                     else parse_duration(reader, within, "status.loops.within")),
    )
