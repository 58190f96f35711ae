"""
Tests for L{pxed.logs} and C{--log-format}: structured log events as one
JSON object per line, and twistd writing them.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from twisted.logger import (
    Logger,
    LogLevel,
    LogPublisher,
    globalLogPublisher,
    textFileLogObserver,
)
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.scripts.twistd import ServerOptions
from twisted.trial import unittest

from pxed import logs, tap
from pxed.logs import JSONLinesObserver, event_record

REPO = Path(__file__).resolve().parents[1]
MAC = "52:54:00:77:00:20"


def logged(emit: Any) -> list[dict[str, Any]]:
    """
    The JSON lines a JSONLinesObserver writes for what C{emit(log)} logs.
    """
    out = io.StringIO()
    publisher = LogPublisher(JSONLinesObserver(out))
    emit(Logger(namespace="pxed.test", observer=publisher))
    return [json.loads(line) for line in out.getvalue().splitlines()]


class RecordTests(unittest.TestCase):
    def test_fields_become_keys(self) -> None:
        [line] = logged(lambda log: log.info("{mac}: served {what}, {bytes} bytes", mac=MAC,
                                             stage="kernel", what="kernel", bytes=1234,
                                             peer=("192.168.77.50", 40000), arch="x64-uefi"))
        self.assertEqual(line["message"], f"{MAC}: served kernel, 1234 bytes")
        self.assertEqual((line["level"], line["namespace"]), ("info", "pxed.test"))
        self.assertEqual((line["mac"], line["stage"], line["arch"], line["bytes"]),
                         (MAC, "kernel", "x64-uefi", 1234))
        self.assertEqual(line["peer"], ["192.168.77.50", 40000])
        self.assertRegex(line["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$")
        self.assertFalse([key for key in line if key.startswith("log_")])

    def test_levels(self) -> None:
        lines = logged(lambda log: (log.debug("d"), log.warn("w"), log.error("e")))
        self.assertEqual([line["level"] for line in lines], ["debug", "warn", "error"])

    def test_reserved_names_are_kept_aside(self) -> None:
        [line] = logged(lambda log: log.info("at {time}: {message}", time="noon",
                                             message="hi", traceback=3))
        self.assertEqual((line["field_time"], line["field_message"], line["field_traceback"]),
                         ("noon", "hi", 3))
        self.assertEqual((line["message"], line["level"]), ("at noon: hi", "info"))
        self.assertNotIn("traceback", line)

    def test_odd_values(self) -> None:
        class Thing:
            def __repr__(self) -> str:
                return "<thing>"

        [line] = logged(lambda log: log.info("x", thing=Thing(), raw=b"\xffab", nested={1: (2,)}))
        self.assertEqual((line["thing"], line["raw"], line["nested"]),
                         ("<thing>", "\ufffdab", {"1": [2]}))

    def test_failure(self) -> None:
        def emit(log: Logger) -> None:
            try:
                raise ZeroDivisionError("division by zero")
            except ZeroDivisionError:
                log.failure("{mac}: answering failed", mac=MAC)

        [line] = logged(emit)
        self.assertEqual((line["level"], line["mac"]), ("critical", MAC))
        self.assertIn("ZeroDivisionError", line["traceback"])

    def test_legacy_events(self) -> None:
        """
        Events from twisted.python.log (Twisted's own modules) carry the
        old keys, which are not fields.
        """
        record = event_record({"message": ("hello",), "isError": 0, "system": "-",
                               "log_legacy": True, "log_format": "hello", "log_level":
                               LogLevel.info, "log_time": 0.0, "port": 67})
        self.assertEqual(record, {"time": "1970-01-01T00:00:00.000+00:00", "level": "info",
                                  "namespace": None, "message": "hello", "port": 67})

    def test_broken_events_still_make_lines(self) -> None:
        """
        A format string that does not format, or a failure caught
        elsewhere, still gives one line each.
        """
        out = io.StringIO()
        observer = JSONLinesObserver(out)
        observer({"log_format": "{x}", "log_level": LogLevel.error, "x": 1,
                  "log_failure": Failure(ValueError("boom"))})
        observer({"log_format": "bad {", "log_level": LogLevel.info})
        lines = [json.loads(line) for line in out.getvalue().splitlines()]
        self.assertEqual(len(lines), 2)
        self.assertEqual(lines[0]["message"], "1")
        self.assertIn("ValueError: boom", lines[0]["traceback"])
        self.assertIn("Unable to format event", lines[1]["message"])


class OptionTests(unittest.TestCase):
    def setUp(self) -> None:
        self.config = REPO / "etc" / "pxed.yaml"
        self.addCleanup(logs.write_to, None)
        # Parsing twistd's options makes pxed's observer the only one and
        # sets the level: module state that must not reach later tests.
        self.addCleanup(setattr, logs, "_sole", logs._sole)
        self.addCleanup(logs.set_level, logs._level.name)

    def test_json_sets_twistds_logger(self) -> None:
        options = ServerOptions()
        options.parseOptions(["--nodaemon", "--logfile", "/tmp/x.log", "pxed", "--config",
                              str(self.config), "--log-format", "json"])
        self.assertIs(options["logger"], logs.json_observer)
        self.assertEqual(logs._logfile, "/tmp/x.log")

    def test_text_is_twistds_format_filtered(self) -> None:
        """
        Text stays twistd's own line format, but through pxed's observer so
        per-packet debug events are not written by default.
        """
        options = ServerOptions()
        options.parseOptions(["--nodaemon", "pxed", "--config", str(self.config)])
        self.assertIs(options["logger"], logs.text_observer)
        self.assertEqual(options.subOptions["log-format"], "text")
        self.assertEqual(options.subOptions["log-level"], "info")

    def test_another_logger_is_kept_for_text(self) -> None:
        options = ServerOptions()
        options.parseOptions(["--logger", "twisted.logger.textFileLogObserver", "pxed",
                              "--config", str(self.config)])
        self.assertIs(options["logger"], textFileLogObserver)

    def test_bad_level(self) -> None:
        options = ServerOptions()
        self.assertRaises(usage.UsageError, options.parseOptions,
                          ["pxed", "--config", str(self.config), "--log-level", "chatty"])

    def test_level_filters(self) -> None:
        """
        At the default level debug events are dropped and info events
        written; C{--log-level debug} writes both.
        """
        self.addCleanup(logs.set_level, "info")
        for level, expected in (("info", ["shown"]), ("debug", ["hidden", "shown"])):
            logs.set_level(level)
            out = io.StringIO()
            self.patch(sys, "stdout", out)
            observer = logs.text_observer()
            for name, lvl in (("hidden", LogLevel.debug), ("shown", LogLevel.info)):
                observer({"log_level": lvl, "log_format": name, "log_time": 0.0,
                          "log_namespace": "t", "log_system": "-"})
            written = [word for word in ("hidden", "shown") if word in out.getvalue()]
            self.assertEqual(written, expected, level)

    def test_bad_format(self) -> None:
        options = ServerOptions()
        self.assertRaises(usage.UsageError, options.parseOptions,
                          ["pxed", "--config", str(self.config), "--log-format", "xml"])

    def test_not_with_another_logger(self) -> None:
        options = ServerOptions()
        self.assertRaises(usage.UsageError, options.parseOptions,
                          ["--logger", "twisted.logger.textFileLogObserver", "pxed", "--config",
                           str(self.config), "--log-format", "json"])

    def test_alone(self) -> None:
        """
        Without twistd around it (C{python -m pxed.tap}), the option is
        only checked.
        """
        options = tap.Options()
        options.parseOptions(["--config", str(self.config), "--log-format", "json"])
        self.assertEqual(options["log-format"], "json")

    def test_stdout_without_a_file(self) -> None:
        logs.write_to(None)
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        observer = logs.json_observer()
        observer({"log_level": LogLevel.info, "log_format": "to stdout", "log_time": 0.0,
                  "log_namespace": "t"})
        self.assertEqual(json.loads(out.getvalue())["message"], "to stdout")


class TwistdTests(unittest.TestCase):
    """
    twistd, started for real with --log-format json, on loopback only.
    """

    timeout = 60

    def test_json_lines(self) -> None:
        workdir = Path(self.mktemp()).resolve()
        workdir.mkdir()
        program = workdir / "undionly.kpxe"
        program.write_bytes(b"x")
        config = workdir / "pxed.yaml"
        # Every port is picked by the kernel and the sockets are bound to
        # the loopback interface: nothing outside this host can reach it.
        config.write_text(
            "server:\n  address: 127.0.0.1\n  interface: lo\n"
            "  ports: {dhcp: 0, pxe: 0, tftp: 0, http: 0}\n"
            f"bootloaders: {{x86-bios: {program}, x64-uefi: {program}}}\n"
        )
        out = workdir / "twistd.log"
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        with open(out, "wb") as f:
            proc = subprocess.Popen(
                [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
                 "--nodaemon", "--pidfile=", "pxed", "--config", str(config),
                 "--log-format", "json"],
                stdout=f, stderr=subprocess.STDOUT, cwd=workdir, env=env)
        try:
            lines: list[dict[str, Any]] = []
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and proc.poll() is None:
                text = out.read_text(errors="replace")
                if "Starting" in text and text.count("\n") >= 4:
                    break
                time.sleep(0.1)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
        raw = out.read_text(errors="replace").splitlines()
        lines = [json.loads(line) for line in raw if line.strip()]
        self.assertGreaterEqual(len(lines), 4, raw)
        self.assertTrue(all({"time", "level", "message"} <= line.keys() for line in lines))
        self.assertTrue(any("twistd" in line["message"] for line in lines), raw)


class WantedTests(unittest.SynchronousTestCase):
    """
    L{logs.wanted}: a per-request debug line is skipped before it is built
    only when pxed's filtered observer is the only one (under twistd).
    """

    def setUp(self) -> None:
        self.addCleanup(setattr, logs, "_sole", logs._sole)
        self.addCleanup(logs.set_level, "info")
        logs._sole = False

    def test_everything_wanted_by_default(self) -> None:
        logs.set_level("critical")
        self.assertTrue(logs.wanted(LogLevel.debug))

    def test_under_twistd(self) -> None:
        config = Path(self.mktemp())
        config.write_text("boot: {default: {kernel: /vmlinuz}}\n")
        options = ServerOptions()
        options.parseOptions(["pxed", "--config", str(config)])
        self.assertEqual((logs.wanted(LogLevel.debug), logs.wanted(LogLevel.info)),
                         (False, True))
        logs.set_level("debug")
        self.assertTrue(logs.wanted(LogLevel.debug))

    def test_policy_line(self) -> None:
        """The policy's "matched rule" line follows it; the answer does not."""
        from pxed.machine import Machine, architecture
        from pxed.policy.actions import LocalBoot
        from pxed.policy.match import Match
        from pxed.policy.request import BootRequest
        from pxed.policy.rules import Rule, RulePolicy

        policy = RulePolicy([Rule("all", Match(), LocalBoot())])
        request = BootRequest(Machine("52:54:00:00:00:01", architecture(7)), "proxydhcp")
        for sole, expected in ((False, 1), (True, 0)):
            logs._sole = sole
            seen: list[Any] = []
            globalLogPublisher.addObserver(seen.append)
            try:
                answer = self.successResultOf(policy.boot_spec(request))
            finally:
                globalLogPublisher.removeObserver(seen.append)
            self.assertEqual(answer.rule, "all")
            self.assertEqual(sum("matched rule" in e.get("log_format", "") for e in seen),
                             expected)
