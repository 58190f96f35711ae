# -*- test-case-name: tests.test_http_guard -*-
"""
The file descriptors pxed's limits need, checked against RLIMIT_NOFILE at
start-up.

Each TFTP transfer holds a socket and a file, each HTTP connection a
socket and (while a file is streamed) the file.  With the default limits
that is over a thousand descriptors, and systemd's default soft limit is
1,024: past it, accept() and open() fail with EMFILE in the middle of
boots.  So pxed raises its soft limit as far as the hard limit allows, and
if that is still short it lowers its own limits to fit, saying so once.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass

__all__ = ["Budget", "RESERVED", "fit_descriptors", "needed"]

#: Descriptors for everything else: listening sockets, the log, the state
#: file, the policy API's and the proxy's connections, Python's own.
RESERVED = 128


@dataclass(frozen=True)
class Budget:
    """
    What pxed may use: HTTP connections and TFTP transfers at once, and the
    one line to log about it (C{None} when nothing had to give way).
    """

    max_connections: int
    max_transfers: int
    note: str | None = None


def needed(max_connections: int, max_transfers: int) -> int:
    return RESERVED + 2 * max_connections + 2 * max_transfers


def fit_descriptors(max_connections: int, max_transfers: int,
                    limits: tuple[int, int] | None = None, *, apply: bool = True) -> Budget:
    """
    Make room for C{max_connections} HTTP connections and C{max_transfers}
    TFTP transfers: raise the soft limit up to the hard one if needed, else
    scale both down to what the hard limit allows.

    @param limits: (soft, hard), for tests; default the process's own.
    @param apply: set the raised soft limit (tests pass C{False}).
    """
    soft, hard = limits if limits is not None else resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed(max_connections, max_transfers)
    if soft == resource.RLIM_INFINITY or soft >= want:
        return Budget(max_connections, max_transfers)
    ceiling = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if apply:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
        except (ValueError, OSError):
            ceiling = soft
    if ceiling >= want:
        return Budget(max_connections, max_transfers)
    share = max(ceiling - RESERVED, 4) / (want - RESERVED)
    connections = max(2, int(max_connections * share)) if max_connections else 0
    transfers = max(1, int(max_transfers * share))
    serving = f"{connections} HTTP connections (http.max_connections) and " if connections \
        else ""
    note = (f"only {ceiling} file descriptors allowed (RLIMIT_NOFILE; {want} needed): serving "
            f"at most {serving}{transfers} TFTP transfers (tftp.max_transfers); raise "
            "LimitNOFILE= to lift this")
    return Budget(connections, transfers, note)
