# -*- test-case-name: tests.test_pg -*-
"""
A real PostgreSQL server for tests and benchmarks: Debian's binaries,
C{initdb} into a temporary directory owned by the C{postgres} user, the
server on a free port of 127.0.0.1 only, removed afterwards.

Tests fail (never skip) when PostgreSQL is missing: C{scripts/setup}
installs it.
"""

from __future__ import annotations

import atexit
import ctypes
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

__all__ = ["PASSWORD_ROLE", "PostgresServer", "free_port", "shared_server"]

LOCAL = "127.0.0.1"

#: The one role that must authenticate with a password (tests of libpq's
#: password file); its password is for the test to set.
PASSWORD_ROLE = "pxed_password"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOCAL, 0))
        return int(s.getsockname()[1])


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]))
    if not found:
        raise RuntimeError("PostgreSQL is not installed: run scripts/setup (Debian package "
                           "'postgresql')")
    return Path(found[-1]).parent


def _die_with_parent() -> None:
    """
    In the server's process before it runs (after the switch to the
    postgres user): a test run killed before it could remove its server
    takes the server down with it (SIGQUIT: an immediate shutdown).
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGQUIT)  # PR_SET_PDEATHSIG


class PostgresServer:
    """
    One throw-away cluster.  C{start()} after C{stop()} brings the same
    cluster back on the same port (a database outage and its end).

    @param durable: keep fsync on (benchmarks measure real commits; tests
        turn it off to run faster).
    """

    def __init__(self, durable: bool = False) -> None:
        self.bindir = _bindir()
        self.port = free_port()
        self.base = Path(tempfile.mkdtemp(prefix="pxed-pg-"))
        self.data = self.base / "data"
        self.log = self.base / "server.log"
        self.durable = durable
        self.process: subprocess.Popen[bytes] | None = None
        user = pwd.getpwnam("postgres")
        self._uid, self._gid = user.pw_uid, user.pw_gid
        os.chown(self.base, self._uid, self._gid)
        self._as_postgres([str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
                           "-A", "trust", "-E", "UTF8", "--no-sync"])
        # Every role connects without a password, except PASSWORD_ROLE, which
        # must give one (the first matching line of pg_hba.conf wins).
        hba = self.data / "pg_hba.conf"
        hba.write_text(f"host all {PASSWORD_ROLE} {LOCAL}/32 scram-sha-256\n" + hba.read_text())

    def _as_postgres(self, argv: list[str]) -> None:
        result = subprocess.run(argv, cwd=self.base, capture_output=True, timeout=120,
                                user=self._uid, group=self._gid, extra_groups=[],
                                env=self._env)
        if result.returncode:
            raise RuntimeError(f"{argv[0]} failed: {result.stderr.decode(errors='replace')}")

    #: The server refuses to run as root: it runs as 'postgres' itself (no
    #: wrapper in between, so signals reach it), with this environment.
    _env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"}

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@{LOCAL}:{self.port}/{dbname}"

    def start(self) -> None:
        settings = ["-c", f"listen_addresses={LOCAL}", "-c", f"unix_socket_directories={self.base}",
                    "-c", "max_connections=60", "-c", "shared_buffers=32MB"]
        if not self.durable:
            settings += ["-c", "fsync=off", "-c", "full_page_writes=off"]
        log = open(self.log, "ab")
        self.process = subprocess.Popen(
            [str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port),
             *settings],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.base, user=self._uid, group=self._gid,
            extra_groups=[], env=self._env, preexec_fn=_die_with_parent)
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited: {self.log.read_text(errors='replace')}")
            try:
                psycopg.connect(self.url(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                time.sleep(0.1)
        raise RuntimeError("postgres did not accept connections within 60 s")

    def stop(self) -> None:
        """
        A fast shutdown (clients are disconnected), waited for.
        """
        process, self.process = self.process, None
        if process is None:
            return
        process.send_signal(2)  # SIGINT: a fast shutdown
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


_shared: PostgresServer | None = None


def shared_server() -> PostgresServer:
    """
    The one server of this test process, started on first use and removed
    when the process exits (trial has no per-class set-up): tests share it
    and each takes a database of its own.
    """
    global _shared
    if _shared is None:
        server = PostgresServer()
        atexit.register(server.remove)
        server.start()
        _shared = server
    elif _shared.process is None:  # a test that stopped it failed half way
        _shared.start()
    return _shared
