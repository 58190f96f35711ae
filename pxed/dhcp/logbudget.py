# -*- test-case-name: tests.test_dhcp_logbudget -*-
"""
A budget for per-client log lines.

Operators want one line per answered client ("52:54:...: proxydhcp
x64-uefi -> snponly.efi"): it is how a boot is followed.  But when a rack
powers on, formatting and writing thousands of lines a second costs more
than answering the clients, and a slow answer costs firmware seconds.  So
lines are spent from a token bucket; when it runs dry the rest are
counted, and the next line that is written says how many were left out.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

__all__ = ["LogBudget", "shown"]


class LogBudget:
    """
    A token bucket of log lines.

    @ivar rate: lines per second refilled.
    @ivar burst: the most lines written back to back.
    """

    def __init__(self, clock: IReactorTime, rate: float = 20.0, burst: int = 50) -> None:
        self.clock = clock
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._last = clock.seconds()
        self._suppressed = 0

    def spend(self) -> int | None:
        """
        Ask to write one line.

        @return: C{None} if the line must be left out (it is counted);
            otherwise how many lines were left out since the last one
            written, for the caller to mention.
        """
        now = self.clock.seconds()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens < 1:
            self._suppressed += 1
            return None
        self._tokens -= 1
        suppressed, self._suppressed = self._suppressed, 0
        return suppressed

    def info(self, log: Logger, message: str, **fields: Any) -> None:
        """
        Log C{message} at info level within the budget, else at debug:
        for lines a client can cause at will (refusals, drops).
        """
        self._emit(log.info, log, message, fields)

    def warn(self, log: Logger, message: str, **fields: Any) -> None:
        """
        As L{info}, at warning level.
        """
        self._emit(log.warn, log, message, fields)

    def _emit(self, write: Any, log: Logger, message: str, fields: dict[str, Any]) -> None:
        left_out = self.spend()
        if left_out is None:
            log.debug(message, **fields)
            return
        if left_out:
            message += " ({left_out} similar lines left out)"
            fields["left_out"] = left_out
        write(message, **fields)


#: The most characters of a client's string (a file name) a log line shows.
SHOWN = 200


def shown(text: str) -> str:
    """
    C{text} cut to L{SHOWN} characters for a log line: a client chooses
    it, and 8 KB names would otherwise make every line 8 KB.
    """
    if len(text) <= SHOWN:
        return text
    return f"{text[:SHOWN]}... ({len(text)} characters)"
