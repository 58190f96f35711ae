"""
Tests for C{twistd pxed-tftp} (L{pxed.tftp.tap}): its options, the service
they make, and the real command run as a process on 127.0.0.1, fetched
from with the package's client.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path
from typing import Any

from twisted.application.service import IServiceMaker
from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.internet.utils import getProcessOutputAndValue
from twisted.logger import LogLevel, textFileLogObserver
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.scripts.twistd import ServerOptions
from twisted.trial.unittest import SynchronousTestCase, TestCase

from pxed import logs
from pxed.ports import UDPService
from pxed.tftp.client import TFTPError, fetch_result
from pxed.tftp.tap import Options, buildService
from tests.twistd import LOCAL, TWISTD, _Ended, _env, _free_port


class OptionsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.root = Path(self.mktemp()).absolute()
        self.root.mkdir()

    def parse(self, *argv: str) -> Options:
        options = Options()
        options.parseOptions(list(argv))
        return options

    def test_defaults(self) -> None:
        options = self.parse("--root", str(self.root))
        config = options["config"]
        self.assertEqual((config.root, options["port"], options["interface"]),
                         (self.root, 69, ""))
        self.assertIsNone(config.upload_root)
        self.assertEqual(config.protocol_options(), {
            "upload": None, "max_blksize": 1468, "max_windowsize": 16, "timeout": 1.0, "retries": 5,
            "patience": 30.0, "max_transfers": 500, "max_per_client": 8})

    def test_everything(self) -> None:
        options = self.parse("-r", str(self.root), "-p", "6969", "-i", LOCAL,
                             "--max-blksize", "8968", "--max-windowsize", "64",
                             "--timeout", "2.5", "--retries", "3", "--patience", "12",
                             "--max-transfers", "1000", "--max-per-client", "2",
                             "--upload-root", str(self.root), "--max-upload-size", "4096",
                             "--upload-overwrite")
        protocol_options = options["config"].protocol_options()
        upload = protocol_options.pop("upload")
        self.assertEqual((upload.root, upload.max_size, upload.overwrite),
                         (self.root.resolve(), 4096, True))
        self.assertEqual(protocol_options, {
            "max_blksize": 8968, "max_windowsize": 64, "timeout": 2.5, "retries": 3,
            "patience": 12.0, "max_transfers": 1000, "max_per_client": 2})
        service = buildService(options)
        self.assertIsInstance(service, UDPService)
        assert isinstance(service, UDPService)
        self.assertEqual((service.port_number, service.interface), (6969, LOCAL))
        self.assertEqual(service.protocol.limits.max_windowsize, 64)
        self.assertEqual(service.protocol.max_per_client, 2)

    def test_mistakes(self) -> None:
        cases = [
            ((), "--root DIR is required"),
            (("--root", str(self.root / "missing")), "--root: directory"),
            (("--root", "relative"), "--root: 'relative' must be an absolute path"),
            (("--root", str(self.root), "--max-blksize", "big"), "--max-blksize must be a number"),
            (("--root", str(self.root), "--max-blksize", "4"), "--max-blksize: must be"),
            (("--root", str(self.root), "--max-windowsize", "0"), "--max-windowsize: must be"),
            (("--root", str(self.root), "--timeout", "0"), "--timeout: must be more than 0"),
            (("--root", str(self.root), "--port", "70000"), "--port must be 0..65535"),
            (("--root", str(self.root), "--upload-root", str(self.root / "none")),
             "--upload-root: directory"),
            (("--root", str(self.root), "--max-upload-size", "-1"), "--max-upload-size: must be"),
        ]
        for argv, message in cases:
            error = self.assertRaises(usage.UsageError, self.parse, *argv)
            self.assertIn(message, str(error))

    def test_log_level(self) -> None:
        """
        twistd is handed pxed's level-filtering text observer (its own
        writes debug events too), unless a --logger was named.
        """
        self.addCleanup(logs.set_level, "info")
        self.addCleanup(logs.write_to, None)
        options = ServerOptions()
        options.parseOptions(["--nodaemon", "pxed-tftp", "--root", str(self.root),
                              "--log-level", "warn"])
        self.assertIs(options["logger"], logs.text_observer)
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        observer = logs.text_observer()
        for name, level in (("quiet", LogLevel.info), ("loud", LogLevel.warn)):
            observer({"log_level": level, "log_format": name, "log_time": 0.0,
                      "log_namespace": "t", "log_system": "-"})
        self.assertNotIn("quiet", out.getvalue())
        self.assertIn("loud", out.getvalue())
        options = ServerOptions()
        options.parseOptions(["--logger", "twisted.logger.textFileLogObserver", "pxed-tftp",
                              "--root", str(self.root)])
        self.assertIs(options["logger"], textFileLogObserver)
        error = self.assertRaises(usage.UsageError, self.parse, "--root", str(self.root),
                                  "--log-level", "chatty")
        self.assertIn("--log-level must be debug", str(error))

    def test_plugin(self) -> None:
        """twistd finds the plugin by name."""
        import twisted.plugins

        makers = {m.tapname: m for m in getPlugins(IServiceMaker, twisted.plugins)}
        self.assertEqual(makers["pxed-tftp"].options, Options)



class ProcessTests(TestCase):
    """The command itself, as a separate process on a high port of 127.0.0.1."""

    timeout = 60

    @defer.inlineCallbacks
    def test_help_lists_options(self) -> Any:
        out, err, code = yield getProcessOutputAndValue(
            sys.executable, ["-c", TWISTD, "pxed-tftp", "--help"], env=_env(), reactor=reactor)
        self.assertEqual(code, 0, err)
        for option in (b"--root=", b"--port=", b"--interface=", b"--max-blksize=",
                       b"--max-windowsize=", b"--max-transfers=", b"--max-per-client="):
            self.assertIn(option, out)

    @defer.inlineCallbacks
    def test_serves_a_directory(self) -> Any:
        root = Path(self.mktemp()).absolute()
        (root / "sub").mkdir(parents=True)
        content = os.urandom(300_001)
        (root / "sub" / "file.bin").write_bytes(content)
        log = root.parent / "twistd.log"
        port = _free_port()
        argv = [sys.executable, "-c", TWISTD, "--nodaemon", "--pidfile=", f"--logfile={log}",
                "pxed-tftp", "--root", str(root), "--port", str(port), "--interface", LOCAL,
                "--max-windowsize", "8"]
        ended = _Ended()
        process = reactor.spawnProcess(  # type: ignore[attr-defined]
            ended, sys.executable, argv, env=_env())
        try:
            result = None
            for _ in range(100):  # about 20 s for the process to come up
                try:
                    result = yield fetch_result(reactor, LOCAL, port, "sub/file.bin",
                                                blksize=1468, windowsize=16, tsize=True,
                                                timeout=0.2, retries=0, interface=LOCAL)
                    break
                except Exception:
                    yield deferLater(reactor, 0.1, lambda: None)  # type: ignore[arg-type]
            assert result is not None, log.read_text() if log.exists() else ended.output
            self.assertEqual(result.data, content)
            self.assertEqual(result.options,
                             {"blksize": "1468", "windowsize": "8", "tsize": "300001"})
            error = yield self.assertFailure(
                fetch_result(reactor, LOCAL, port, "../twistd.log", interface=LOCAL), TFTPError)
            self.assertEqual(error.code, 2)
        finally:
            if ended.reason is None:
                process.signalProcess("TERM")
        yield ended.done
        self.assertIn("TFTP complete: sub/file.bin", log.read_text())
