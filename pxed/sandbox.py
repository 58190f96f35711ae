# -*- test-case-name: tests.test_templates -*-
"""
A Jinja2 sandbox whose output is bounded in size and in time.

Jinja's sandbox stops a template from reaching Python's internals, but not
from working forever or building a string of gigabytes (C{'a' * 10**9},
a C{set} that doubles a string forty times, two nested loops over
C{range(100000)}), and a template may come from the policy API rather
than from the administrator.  A render happens in the reactor's thread,
so either would stall every boot.  This environment:

  - checks the size of every result that can grow faster than its inputs
    before it is made (C{*}, C{**}, C{%}, C{+}, C{~}, and calls and
    filters given a number or a string over the bound: C{center},
    C{replace}, C{join}, C{format} ...);
  - stops the output once it passes L{MAX_OUTPUT} characters;
  - stops a render that takes longer than L{MAX_SECONDS} (a timer signal
    in the main thread, where the reactor runs: the only way to stop a
    loop in pure Python code without a check in it).
"""

from __future__ import annotations

import functools
import re
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from jinja2.compiler import CodeGenerator, Frame
from jinja2.nodes import Concat
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

__all__ = ["BoundedEnvironment", "MAX_OUTPUT", "MAX_SECONDS", "Overtime", "time_limit"]

#: The most characters a template may produce, or any value in it hold.
MAX_OUTPUT = 1 << 20
#: The longest a render may take.
MAX_SECONDS = 1.0

#: A width or precision in a format string of seven digits or more.
_HUGE_FIELD = re.compile(r"[0-9]{7,}")


class Overtime(BaseException):
    """
    A render ran out of time.  A BaseException so that no C{except
    Exception} inside Jinja or a filter can swallow it.
    """


def _refuse(why: str) -> SecurityError:
    return SecurityError(f"{why} (templates are limited to {MAX_OUTPUT} characters)")


def _check(size: int) -> None:
    if size > MAX_OUTPUT:
        raise _refuse(f"a result of {size} characters")


#: Functions (filters, str methods) whose numbers are widths or counts
#: of the result: a number over the bound is refused.
_WIDTHS = frozenset({"center", "ljust", "rjust", "zfill", "indent", "wordwrap", "truncate",
                     "format", "format_map", "expandtabs"})


def _length(value: Any) -> int:
    if isinstance(value, str | bytes | list | tuple | dict | set | range):
        return len(value)
    return 0


def _check_arguments(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    for value in (*args, *kwargs.values()):
        if (name in _WIDTHS and isinstance(value, int) and not isinstance(value, bool)
                and abs(value) > MAX_OUTPUT):
            raise _refuse(f"the number {value}")
        _check(_length(value))


def _check_format(text: Any) -> None:
    if isinstance(text, str) and _HUGE_FIELD.search(text):
        raise _refuse("a format field that wide")


def _check_growth(name: str, receiver: Any, args: tuple[Any, ...]) -> None:
    """
    The operations whose result can be much longer than their inputs.
    """
    if not isinstance(receiver, str):
        return
    if name == "replace" and len(args) >= 2:
        _check(len(receiver) + (len(receiver) + 1) * _length(args[1]))
    elif name == "join" and args:
        _check(len(receiver) * _length(args[0]))
    elif name == "indent":
        width = args[0] if args and isinstance(args[0], int) else len(str(args[0])) if args else 4
        _check(len(receiver) + (receiver.count("\n") + 1) * width)
    elif name == "expandtabs":
        size = args[0] if args and isinstance(args[0], int) else 8
        _check(len(receiver) + receiver.count("\t") * size)
    elif name in ("format", "format_map"):
        _check_format(receiver)


def _guard_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    # Filters marked pass_context (or environment, eval context) get that
    # first, then the value they filter.
    first = 1 if getattr(function, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(function)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _check_arguments(name, args[first:], kwargs)
        if len(args) > first:
            value, rest = args[first], args[first + 1:]
            if name == "join":
                separator = rest[0] if rest else kwargs.get("d", "")
                _check(_length(separator) * max(_length(value), 1))
            else:
                _check_growth(name, value, rest)
        return function(*args, **kwargs)

    return guarded


class _BoundedCodeGenerator(CodeGenerator):
    """
    Compiles C{a ~ b} to a join that checks the total first.
    """

    def visit_Concat(self, node: Concat, frame: Frame) -> None:
        self.write("environment.bounded_join((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """
    The sandbox with its results bounded (see the module's docstring).
    """

    code_generator_class = _BoundedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.filters = {name: _guard_filter(name, f) for name, f in self.filters.items()}

    @staticmethod
    def bounded_join(parts: tuple[Any, ...]) -> str:
        texts = [str(part) for part in parts]
        _check(sum(map(len, texts)))
        return "".join(texts)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for sequence, count in ((left, right), (right, left)):
                if isinstance(count, int) and _length(sequence):
                    _check(_length(sequence) * count)
        elif operator == "**":
            if isinstance(right, int | float) and abs(right) > 1024 and left not in (0, 1, -1):
                raise _refuse(f"the power {right}")
        elif operator == "%":
            _check_format(left)
            _check_arguments("format", right if isinstance(right, tuple) else (right,), {})
        elif operator == "+":
            _check(_length(left) + _length(right))
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        target = getattr(__obj, "__wrapped__", __obj)
        name = getattr(target, "__name__", "")
        receiver = getattr(target, "__self__", None)
        _check_arguments(name if isinstance(receiver, str) else "", args, kwargs)
        _check_growth(name, receiver, args)
        return super().call(__context, __obj, *args, **kwargs)


def _overtime(signum: int, frame: Any) -> None:
    raise Overtime()


@contextmanager
def time_limit(seconds: float = MAX_SECONDS) -> Iterator[None]:
    """
    Raise L{Overtime} inside the block once it has run C{seconds}.  Only
    in the main thread (where signals are delivered); elsewhere (an
    embedding program rendering in a thread) the size bounds still hold.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGALRM, _overtime)
    before = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if before[0]:
            signal.setitimer(signal.ITIMER_REAL, *before)
