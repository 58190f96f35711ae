# -*- test-case-name: tests.test_lab -*-
"""
Bounded waiting and PID-exact process control for the lab.

Every loop here is bounded both in iterations and in wall-clock time, and
processes are only ever signalled by PID: the lab must never hang a test run,
and never touch a process it did not start.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

POLL_INTERVAL = 0.2
_ANSI = re.compile(r"\x1b(\[[0-9;?=]*[A-Za-z]|[()][A-Za-z0-9])")


def dnsmasq_argv(*extra: str) -> list[str]:
    """
    dnsmasq in the foreground with no configuration file of the host's, no
    DNS, and nothing read from C{/etc/hosts} or C{resolv.conf}: every use in
    the lab and the benchmarks then says only what that instance is for.
    """
    return [
        "dnsmasq", "--conf-file=/dev/null", "--keep-in-foreground", "--user=root",
        "--port=0", "--no-resolv", "--no-hosts", *extra,
    ]


def tail(path: Path, lines: int = 25) -> str:
    """
    The last C{lines} lines of a log, or a note saying why there are none.

    Terminal escapes (firmware consoles clear the screen a lot) are removed
    so the tail is readable in a test report.
    """
    try:
        text = _ANSI.sub("", path.read_text(errors="replace"))
    except OSError as e:
        return f"({path}: {e.strerror})"
    return "\n".join(text.splitlines()[-lines:])


def wait_until(
    check: Callable[[], bool],
    timeout: float,
    proc: subprocess.Popen[bytes] | None = None,
    interval: float = POLL_INTERVAL,
) -> bool:
    """
    Call C{check} until it returns True (then True) or C{timeout} passes (False).

    If C{proc} exits, C{check} gets one last call and its answer is returned:
    a dead server or QEMU will not produce what we wait for, so a test should
    fail at once instead of sitting out the timeout.
    """
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / interval) + 2):
        exited = proc is not None and proc.poll() is not None
        if check():
            return True
        if exited or time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return False


def wait_for_file(
    path: Path,
    needle: bytes,
    timeout: float,
    proc: subprocess.Popen[bytes] | None = None,
) -> bool:
    """
    Wait until the file at C{path} contains C{needle}; see L{wait_until}.

    Reads only what was appended since the last look (plus an overlap of
    C{len(needle)}), so polling a growing serial log stays cheap.
    """
    seen = 0

    def check() -> bool:
        nonlocal seen
        try:
            with open(path, "rb") as f:
                f.seek(max(0, seen - len(needle)))
                found = needle in f.read()
                seen = f.tell()
                return found
        except FileNotFoundError:
            return False

    return wait_until(check, timeout, proc)


def pid_alive(pid: int) -> bool:
    """True while C{pid} exists (a zombie counts until it is reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_pid(
    pid: int, proc: subprocess.Popen[bytes] | None = None, grace: float = 5.0
) -> bool:
    """
    SIGTERM C{pid}, wait up to C{grace} s, then SIGKILL and wait again.

    SIGTERM first so that dumpcap finishes its pcap and dnsmasq exits cleanly.
    Pass C{proc} when C{pid} is our child, so it is reaped rather than left
    a zombie.  Returns True when the process is gone.
    """

    def gone() -> bool:
        return proc.poll() is not None if proc is not None else not pid_alive(pid)

    for sig in (signal.SIGTERM, signal.SIGKILL):
        if gone():
            return True
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return True
        if wait_until(gone, grace, interval=0.05):
            return True
    return gone()


def netns_list() -> list[str]:
    """Names of all named network namespaces (C{ip netns list})."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30)
    return [line.split()[0] for line in out.stdout.splitlines() if line.strip()]


def netns_pids(namespace: str) -> list[int]:
    """PIDs of the processes inside C{namespace}, never including our own."""
    out = subprocess.run(
        ["ip", "netns", "pids", namespace], capture_output=True, text=True, timeout=30
    )
    return [int(p) for p in out.stdout.split() if p.isdigit() and int(p) != os.getpid()]
