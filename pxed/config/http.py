# -*- test-case-name: tests.test_http_guard -*-
"""
The C{http:} section: how many connections pxed's HTTP server holds and
how long a client may take (see L{pxed.http.guard}).
"""

from __future__ import annotations

from typing import Any

from pxed.config.policy import parse_duration
from pxed.config.reader import Reader
from pxed.http.guard import HTTPLimits

__all__ = ["HTTPLimits", "parse_http"]

_COUNTS = {"max_connections": (1, 100_000), "max_per_client": (1, 100_000)}
_SECONDS = {"request_timeout": 3600.0, "send_timeout": 3600.0}


def parse_http(reader: Reader, value: Any) -> HTTPLimits:
    section = reader.mapping(value, "http", set(_COUNTS) | set(_SECONDS))
    limits: dict[str, Any] = {}
    for name, (least, most) in _COUNTS.items():
        number = section.get(name)
        if number is None:
            continue
        if isinstance(number, bool) or not isinstance(number, int) or not least <= number <= most:
            raise reader.fail(f"http.{name}",
                              f"must be a whole number {least}..{most}, not {number!r}")
        limits[name] = number
    for name, ceiling in _SECONDS.items():
        if section.get(name) is None:
            continue
        seconds = parse_duration(reader, section[name], f"http.{name}")
        if not 0 < seconds <= ceiling:
            raise reader.fail(f"http.{name}", f"must be more than 0 and at most {ceiling:g} s")
        limits[name] = seconds
    result = HTTPLimits(**limits)
    if result.max_per_client > result.max_connections:
        raise reader.fail("http.max_per_client", "must not exceed http.max_connections "
                                                 f"({result.max_connections})")
    return result
