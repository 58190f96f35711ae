"""
Tests for L{pxed.eager}: coroutines that finish at once give their result
without a Deferred; those that wait behave as under C{ensureDeferred}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase

from pxed.eager import Done, eager


class EagerTests(SynchronousTestCase):
    def test_finished_at_once(self) -> None:
        async def answer() -> int:
            return await succeed(41) + 1

        result = eager(answer())
        assert isinstance(result, Done)
        self.assertEqual(result.value, 42)

    def test_raises_at_once(self) -> None:
        async def broken() -> int:
            raise ValueError("no")

        result = eager(broken())
        assert isinstance(result, Deferred)
        self.failureResultOf(result, ValueError)

    def test_waits(self) -> None:
        first: Deferred[int] = Deferred()
        second: Deferred[int] = Deferred()
        seen: list[Any] = []

        async def two_steps() -> int:
            a = await first
            seen.append(a)
            b = await second
            return a + b

        result = eager(two_steps())
        assert isinstance(result, Deferred)
        self.assertNoResult(result)
        first.callback(1)
        self.assertEqual(seen, [1])
        self.assertNoResult(result)
        second.callback(2)
        self.assertEqual(self.successResultOf(result), 3)

    def test_failure_reaches_the_coroutine(self) -> None:
        waiting: Deferred[int] = Deferred()

        async def recovers() -> str:
            try:
                await waiting
            except KeyError as e:
                return f"caught {e.args[0]}"
            return "not reached"

        result = eager(recovers())
        assert isinstance(result, Deferred)
        waiting.errback(KeyError("k"))
        self.assertEqual(self.successResultOf(result), "caught k")

    def test_failure_not_caught(self) -> None:
        waiting: Deferred[int] = Deferred()

        async def gives_up() -> int:
            return await waiting

        result = eager(gives_up())
        assert isinstance(result, Deferred)
        waiting.errback(RuntimeError("down"))
        self.assertEqual(self.failureResultOf(result, RuntimeError).value.args, ("down",))
