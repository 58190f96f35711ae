"""
Two real C{twistd pxed} processes on loopback sharing one real PostgreSQL
(started by the test): they accept each other's signed URLs, see each
other's 'once' flags and timelines, lose nothing to a C{kill -9}, and
behave as documented while the database is stopped and restarted.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
from twisted.trial import unittest

from pxed.lab.procs import stop_pid, wait_until
from pxed.machine import Machine, architecture
from pxed.policy import BootRequest
from pxed.policy.request import sign_context
from pxed.signing import Signer
from pxed.testing.postgres import shared_server

REPO = Path(__file__).resolve().parents[1]
TWISTD = "from twisted.scripts.twistd import run; run()"
LOCAL = "127.0.0.1"
INSTALL = "52:54:00:12:00:01"  # matches the once rule
OTHER = "52:54:00:12:00:02"  # needs no shared state


def _udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOCAL, 0))
        return int(s.getsockname()[1])


def _tcp_port() -> int:
    with socket.socket() as s:
        s.bind((LOCAL, 0))
        return int(s.getsockname()[1])


def get(url: str, timeout: float = 10.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class Pxed:
    """
    One C{twistd pxed} on loopback ports of its own.
    """

    def __init__(self, case: unittest.TestCase, base: Path, name: str, url: str,
                 batch: str = "200ms", key: bytes | None = None) -> None:
        self.name = name
        self.http = _tcp_port()
        self.log = base / f"{name}.log"
        kernel = base / "vmlinuz"
        config = {
            "server": {"address": LOCAL, "interface": "lo",
                       "ports": {"dhcp": _udp_port(), "pxe": _udp_port(), "tftp": _udp_port(),
                                 "http": self.http}},
            "bootloaders": {"x86-bios": str(base / "undionly.kpxe"),
                            "x64-uefi": str(base / "snponly.efi")},
            "state": {"url": url, "instance": name, "batch": batch, "poll": "300ms"},
            "policy": {"rules": [
                {"name": "install", "match": {"mac": INSTALL}, "once": True,
                 "linux": {"kernel": str(kernel)}},
                {"name": "disk", "match": {"mac": INSTALL}, "local": True},
            ]},
            "boot": {"default": {"kernel": str(kernel)}},
        }
        if key is not None:  # the site's key in a file every pxed reads
            key_file = base / f"{name}.key"
            key_file.write_bytes(key)
            key_file.chmod(0o600)
            config["policy"]["signing"] = {"key_file": str(key_file)}  # type: ignore[index]
        self.config = base / f"{name}.yaml"
        self.config.write_text(json.dumps(config))  # JSON is YAML
        self.case = case
        self.url = url
        self.key: bytes | None = key
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.process = subprocess.Popen(
            [sys.executable, "-c", TWISTD, "--nodaemon", "--pidfile=", f"--logfile={self.log}",
             "pxed", "--config", str(self.config)], env=env, cwd=REPO,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.case.addCleanup(self.stop)
        up = wait_until(lambda: self._answers(), 60, self.process)
        assert up, self.log.read_text() if self.log.exists() else "no log"

    def _answers(self) -> bool:
        try:
            return get(f"{self.base}/_/machines", timeout=1)[0] == 200
        except OSError:
            return False

    @property
    def base(self) -> str:
        return f"http://{LOCAL}:{self.http}"

    def script(self, mac: str) -> tuple[int, str]:
        """
        The script, with the context iPXE carries from a DHCP answer (signed
        with the site's key, which the database holds).
        """
        if self.key is None:  # read while the database is up
            with psycopg.connect(self.url) as conn:
                row = conn.execute("SELECT key FROM pxed_signing_key").fetchone()
            assert row is not None
            self.key = bytes(row[0])
        machine = Machine(mac, architecture(7), ipxe=True, user_class="iPXE")
        ctx = sign_context(Signer(self.key), BootRequest(machine, "proxydhcp"))
        return get(f"{self.base}/_/ipxe?mac={mac}&arch=7&ctx={quote(ctx)}")

    def machines(self) -> dict[str, Any]:
        return json.loads(get(f"{self.base}/_/machines")[1])

    def timeline(self, mac: str) -> list[tuple[str, str]]:
        status, body = get(f"{self.base}/_/machines/{mac}")
        if status != 200:
            return []
        return [(e["stage"], e["fields"].get("pxed")) for e in json.loads(body)["events"]]

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            stop_pid(self.process.pid, self.process, grace=15)


def beacon_of(script: str) -> str:
    for word in script.split():
        if "/_/booting?" in word:
            return word
    raise AssertionError(f"no beacon in {script!r}")


class TwoPxedTests(unittest.TestCase):
    def setUp(self) -> None:
        self.server = shared_server()
        self.url = self.server.create_database(f"e{uuid.uuid4().hex[:12]}")
        self.base = Path(self.mktemp()).absolute()
        self.base.mkdir()
        for name in ("undionly.kpxe", "snponly.efi", "vmlinuz"):
            (self.base / name).write_bytes(b"x")
        self.a = Pxed(self, self.base, "pxed-a", self.url)
        self.b = Pxed(self, self.base, "pxed-b", self.url)
        self.a.start()
        self.b.start()

    def test_shared_flags_urls_and_timelines(self) -> None:
        a, b = self.a, self.b
        status, script = a.script(INSTALL)
        self.assertEqual(status, 200)
        self.assertIn("kernel ", script)
        # b refuses the install a handed out while that boot is under way.
        status, refused = b.script(INSTALL)
        self.assertNotIn("kernel ", refused)
        # a's signed file and beacon URLs work on b (one signing key).
        kernel_url = next(w for w in script.split() if "/_/file/" in w)
        self.assertEqual(get(kernel_url.replace(a.base, b.base)), (200, "x"))
        self.assertEqual(get(kernel_url), (200, "x"))  # the machine loads it from a
        beacon = beacon_of(script).replace(a.base, b.base)
        self.assertEqual(get(beacon), (200, "ok\n"))  # committed before this 200
        with psycopg.connect(self.url) as conn:
            self.assertEqual(conn.execute("SELECT state, instance FROM pxed_once").fetchall(),
                             [("done", "pxed-b")])
        # Installed through a and b: the next boot, through either, is local.
        for pxed in (a, b):
            status, script = pxed.script(INSTALL)
            self.assertIn("booting from the local disk", script)
        # Either status page shows the whole boot, each step with its pxed.
        wanted = [("script", "pxed-a"), ("kernel", "pxed-a"), ("booting", "pxed-b")]
        for pxed in (a, b):
            self.assertTrue(wait_until(
                lambda p=pxed: all(step in p.timeline(INSTALL) for step in wanted), 15),
                pxed.timeline(INSTALL))

    def test_kill_9_loses_nothing_written(self) -> None:
        a, b = self.a, self.b
        self.assertEqual(a.script(OTHER)[0], 200)
        # Killed once the batch timer has committed the event (a fixed sleep
        # longer than state.batch is not enough on a loaded machine).
        with psycopg.connect(self.url) as conn:
            self.assertTrue(wait_until(lambda: conn.execute(
                "SELECT count(*) FROM pxed_events WHERE mac = %s AND stage = 'script'",
                (OTHER,)).fetchone() == (1,), 15))
        a.kill()
        self.assertTrue(wait_until(lambda: ("script", "pxed-a") in b.timeline(OTHER), 15))
        again = Pxed(self, self.base, "pxed-a", self.url)
        again.start()
        self.assertIn(("script", "pxed-a"), again.timeline(OTHER))

    def test_stop_writes_what_is_queued(self) -> None:
        """
        A pxed stopped as systemd stops it (SIGTERM) writes the events its
        batch timer has not written yet.
        """
        c = Pxed(self, self.base, "pxed-c", self.url, batch="1h")
        c.start()
        self.assertEqual(c.script(OTHER)[0], 200)
        c.stop()  # (twistd ends by re-raising the SIGTERM it handled: status -15)
        with psycopg.connect(self.url) as conn:
            self.assertEqual(conn.execute("SELECT stage, instance FROM pxed_events WHERE "
                                          "mac = %s", (OTHER,)).fetchall(),
                             [("script", "pxed-c")])

    def test_database_outage(self) -> None:
        a = self.a
        a.script(OTHER)  # (reads the key while the database is up)
        self.server.stop()
        try:
            # Boots that need no shared state go on.
            status, script = a.script(OTHER)
            self.assertEqual(status, 200)
            self.assertIn("kernel ", script)
            # A once install that could not be recorded is not handed out.
            status, script = a.script(INSTALL)
            self.assertIn("no boot entry", script)
            metrics = get(f"{a.base}/metrics")[1]
            self.assertIn("pxed_state_once_refused_total 1.0", metrics)
            self.assertIn("pxed_state_up 0.0", metrics)
        finally:
            self.server.start()
        # Back by itself: the install is handed out, the queued event written.
        self.assertTrue(wait_until(lambda: "kernel " in a.script(INSTALL)[1], 40))
        with psycopg.connect(self.url) as conn:
            self.assertTrue(wait_until(lambda: conn.execute(
                "SELECT count(*) FROM pxed_events WHERE mac = %s", (OTHER,)).fetchone()
                == (2,), 15))  # the script before the outage and the one during it
        log = a.log.read_text()
        self.assertEqual(log.count("state database unreachable"), 1, log)
        self.assertIn("answers again", log)


class StartWithoutDatabaseTests(unittest.TestCase):
    """
    A pxed (re)started while the database is down: with the signing key in
    a file it serves what needs no shared state and recovers by itself;
    without one it exits with one line saying how to avoid that.
    """

    def setUp(self) -> None:
        self.server = shared_server()
        self.url = self.server.create_database(f"e{uuid.uuid4().hex[:12]}")
        self.base = Path(self.mktemp()).absolute()
        self.base.mkdir()
        for name in ("undionly.kpxe", "snponly.efi", "vmlinuz"):
            (self.base / name).write_bytes(b"x")

    def test_starts_and_recovers(self) -> None:
        c = Pxed(self, self.base, "pxed-c", self.url, key=b"site-key-" * 4)
        self.server.stop()
        try:
            c.start()
            status, script = c.script(OTHER)
            self.assertEqual(status, 200)
            self.assertIn("kernel ", script)
            status, script = c.script(INSTALL)
            self.assertIn("no boot entry", script)
            metrics = get(f"{c.base}/metrics")[1]
            self.assertIn("pxed_state_once_refused_total 1.0", metrics)
            self.assertIn("pxed_state_up 0.0", metrics)
            log = c.log.read_text()
            self.assertEqual(log.count("started without the state database"), 1, log)
        finally:
            self.server.start()
        # The poll finds it (migrating the empty database first): the
        # install is handed out, its beacon recorded, the queued event written.
        self.assertTrue(wait_until(lambda: "kernel " in c.script(INSTALL)[1], 40),
                        c.log.read_text())
        status, script = c.script(INSTALL)
        self.assertEqual(get(beacon_of(script)), (200, "ok\n"))
        with psycopg.connect(self.url) as conn:
            self.assertEqual(conn.execute("SELECT rule, state, instance FROM pxed_once "
                                          "WHERE mac = %s", (INSTALL,)).fetchall(),
                             [("install", "done", "pxed-c")])
            self.assertTrue(wait_until(lambda: conn.execute(
                "SELECT count(*) FROM pxed_events WHERE mac = %s", (OTHER,)).fetchone()
                == (1,), 15))
        self.assertIn("pxed_state_up 1.0", get(f"{c.base}/metrics")[1])
        self.assertIn("answers again", c.log.read_text())

    def test_without_a_key_it_exits_with_one_line(self) -> None:
        d = Pxed(self, self.base, "pxed-d", self.url)
        self.server.stop()
        try:
            result = subprocess.run(
                [sys.executable, "-c", TWISTD, "--nodaemon", "--pidfile=",
                 f"--logfile={d.log}", "pxed", "--config", str(d.config)],
                env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO, capture_output=True,
                timeout=60)
        finally:
            self.server.start()
        self.assertNotEqual(result.returncode, 0)
        lines = result.stderr.decode().strip().splitlines()
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("pxed: cannot start:", lines[0])
        self.assertIn("cannot use the state database", lines[0])
        self.assertIn("configure policy.signing.key_file", lines[0])
