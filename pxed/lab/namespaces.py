# -*- test-case-name: tests.test_lab -*-
"""
The bookkeeping half of the lab: network namespaces it created, processes
it started inside them, and taking all of that down again.

Why a module of its own: what a lab I{is} (its LANs, addresses, DHCP server,
relay, QEMU; L{pxed.lab.netns.Lab}) changes with every new test network,
while how it owns namespaces and processes (refuse a namespace it did not
create, record every PID for C{cleanup} after a crash, stop exactly those
PIDs, delete exactly those namespaces) must not.

L{Namespaces.close} (and so C{__exit__}) stops every process the lab
started, by PID, and deletes the namespaces, which destroys the veths,
bridges and taps inside them.
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from pxed.lab.procs import netns_list, netns_pids, stop_pid, wait_for_file, wait_until

__all__ = ["Namespaces", "ip"]


def ip(*args: str) -> None:
    """Run one C{ip} command; raise with its stderr so setup errors are legible."""
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")


class Namespaces:
    """
    Namespaces and processes owned by one lab, stopped and deleted by
    L{close}; a subclass builds its network in L{_create}.

    @ivar procs: every process started by this lab, in start order, with a label.
    """

    def __init__(self, workdir: Path, name: str) -> None:
        """
        @param workdir: where logs and workdir/lab.json go; created on
            C{__enter__} and kept afterwards for diagnosis.
        @param name: the prefix of the lab's namespaces, already checked.
        """
        self.workdir = workdir
        self.name = name
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._files: list[IO[bytes]] = []
        self._created: list[str] = []
        self._closed = False

    # -- set-up ---------------------------------------------------------------

    def __enter__(self) -> Self:
        self.workdir.mkdir(parents=True, exist_ok=True)
        atexit.register(self.close)
        try:
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _create(self) -> None:
        """Build the lab's network; see L{pxed.lab.netns.Lab}."""
        raise NotImplementedError

    def _add_namespaces(self, namespaces: list[str]) -> None:
        """Create C{namespaces} (none may exist yet), each with C{lo} up."""
        existing = netns_list()
        for ns in namespaces:
            # Refuse rather than adopt: deleting it later would break whoever owns it.
            if ns in existing:
                raise RuntimeError(f"namespace {ns} already exists")
        for ns in namespaces:
            ip("netns", "add", ns)
            self._created.append(ns)
            self._save_state()
            ip("-n", ns, "link", "set", "lo", "up")

    def _save_state(self) -> None:
        """Record namespaces and PIDs in workdir/lab.json for C{cleanup} after a crash."""
        state = {
            "name": self.name,
            "namespaces": self._created,
            "pids": {str(p.pid): label for label, p in self.procs},
        }
        try:
            (self.workdir / "lab.json").write_text(json.dumps(state, indent=2) + "\n")
        except OSError:
            pass  # best effort: it is a crash-recovery aid, never a reason to fail

    # -- processes ------------------------------------------------------------

    def run_in(
        self, namespace: str, argv: list[str], timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        """Run a short command (sysctl, nft, ip ...) inside one of our namespaces."""
        self._check_ours(namespace)
        result = subprocess.run(
            ["ip", "netns", "exec", namespace, *argv],
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"{argv} in {namespace} failed: {result.stderr.strip()}")
        return result

    def spawn_in(
        self,
        namespace: str,
        argv: list[str],
        log: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        label: str | None = None,
    ) -> subprocess.Popen[bytes]:
        """
        Start a long-running process inside one of our namespaces.

        C{ip netns exec} execs the command, so the PID we record is the
        program's own and L{close} can stop exactly it.  It gets its own
        session so a terminal's ^C reaches only us, and we tear down in order.

        @param log: receives stdout and stderr; truncated first, so that
            L{wait_for} never matches a line left by an earlier run.  Use one
            log per process.
        @param env: extra variables, added to this process's environment.
        """
        self._check_ours(namespace)
        full_env = {**os.environ, **(env or {})}
        out = open(log, "wb")  # closed in close()
        self._files.append(out)
        proc = subprocess.Popen(
            ["ip", "netns", "exec", namespace, *argv],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env=full_env, cwd=cwd, start_new_session=True,
        )  # fmt: skip
        self.procs.append((label or Path(argv[0]).name, proc))
        self._save_state()
        return proc

    def _check_ours(self, namespace: str) -> None:
        if namespace not in self._created:
            raise ValueError(f"{namespace} is not a namespace of this lab")

    # -- waiting --------------------------------------------------------------

    def wait_for(
        self,
        path: Path,
        needle: bytes,
        timeout: float,
        proc: subprocess.Popen[bytes] | None = None,
    ) -> bool:
        """
        Poll C{path} until it contains C{needle}; False on timeout.

        Returns early (after one last look) when C{proc} exits, because a dead
        QEMU or server will never write the line and a test should not sit
        out the whole timeout.
        """
        return wait_for_file(Path(path), needle, timeout, proc)

    def wait_listening(
        self,
        namespace: str,
        port: int,
        udp: bool,
        timeout: float,
        proc: subprocess.Popen[bytes] | None = None,
    ) -> bool:
        """
        Wait until something in C{namespace} listens on C{port}; False on timeout.

        Servers log "listening" before or after they bind depending on the
        program; asking the kernel (C{ss}) is the only check that is always
        right, so a test never sends its first packet into the void.
        """
        self._check_ours(namespace)
        flags = "-Hlnu" if udp else "-Hlnt"
        argv = ["ip", "netns", "exec", namespace, "ss", flags, f"sport = :{port}"]

        def listening() -> bool:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
            return bool(out.stdout.strip())

        return wait_until(listening, timeout, proc)

    # -- tear-down ------------------------------------------------------------

    def close(self) -> None:
        """
        Stop every process we started, then delete our namespaces.

        Idempotent.  Processes get SIGTERM (so dumpcap finishes the pcap and
        dnsmasq exits cleanly), then SIGKILL after a few seconds.  Anything
        still inside our namespaces afterwards was started by one of our
        processes (e.g. a server that daemonised), so it is stopped too,
        by PID, before the namespaces go.
        """
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        for label, proc in reversed(self.procs):
            if not stop_pid(proc.pid, proc):
                print(f"pxed.lab: {label} (pid {proc.pid}) did not exit", file=sys.stderr)
        for ns in self._created:
            for pid in netns_pids(ns):
                print(f"pxed.lab: stopping stray pid {pid} in {ns}", file=sys.stderr)
                stop_pid(pid)
        errors = []
        for ns in reversed(self._created):
            try:
                ip("netns", "del", ns)
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                errors.append(str(e))
        for f in self._files:
            f.close()
        self._created = [ns for ns in self._created if ns in netns_list()]
        self._save_state()
        if errors:
            raise RuntimeError("lab teardown: " + "; ".join(errors))
