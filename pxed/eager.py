# -*- test-case-name: tests.test_eager -*-
"""
Run a coroutine at once, and make a Deferred only if it has to wait.

A ProxyDHCP answer is a coroutine (the policy may ask a remote API or a
shared store), but nearly always every step is already known: the rules
are in memory and C{await} on a fired Deferred does not suspend.
C{ensureDeferred} still builds a Deferred and Twisted's coroutine driver
around it, and the caller's callback chain another four links, for every
packet of a boot storm.  L{eager} runs the coroutine's first step in
place: a coroutine that finishes there hands back its result as a L{Done}
(no Deferred at all); one that waits is handed to Twisted as it stands, so
from then on it runs exactly as under C{ensureDeferred}.
"""

from __future__ import annotations

from collections.abc import Coroutine, Generator
from typing import Any, Generic, TypeVar

from twisted.internet.defer import Deferred, fail

__all__ = ["Done", "eager"]

T = TypeVar("T")


class Done(Generic[T]):
    """The result of a coroutine that finished without waiting."""

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value


def eager(coro: Coroutine[Any, Any, T]) -> Done[T] | Deferred[T]:
    """
    Start C{coro}: L{Done} with its result if it finished at once, else a
    Deferred of its result (also for an exception, as C{ensureDeferred}
    would give).
    """
    try:
        waiting = coro.send(None)
    except StopIteration as e:
        return Done(e.value)
    except Exception:
        return fail()
    return Deferred.fromCoroutine(_rest(coro, waiting))  # type: ignore[arg-type]


def _rest(coro: Coroutine[Any, Any, T], waiting: Any) -> Generator[Any, Any, T]:
    """
    C{coro} from where it waits on C{waiting}, as a generator Twisted's
    coroutine driver runs: what it waits on is yielded to the driver, and
    the driver's answer (a result sent, a failure thrown) goes on to
    C{coro}, as when the driver runs C{coro} itself.
    """
    while True:
        try:
            value = yield waiting
        except BaseException as e:
            try:
                waiting = coro.throw(e)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            continue
        try:
            waiting = coro.send(value)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
