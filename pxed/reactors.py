# -*- test-case-name: tests.test_reactors -*-
"""
The reactor (or clock) a part of pxed runs on.

Every part that schedules or listens takes its reactor as an argument, so
that tests pass a L{twisted.internet.task.Clock} or a memory reactor and a
program embedding pxed passes its own; given none, it runs on Twisted's
global reactor, imported only then (importing it installs the default
reactor, which a program choosing another must be free to do first).
"""

from __future__ import annotations

from typing import Any, TypeVar

__all__ = ["given_or_global"]

T = TypeVar("T")


def given_or_global(reactor: T | None) -> T:
    """
    C{reactor}, or Twisted's global reactor when it is C{None}.
    """
    if reactor is not None:
        return reactor
    from twisted.internet import reactor as global_reactor

    found: Any = global_reactor
    return found  # type: ignore[no-any-return]
