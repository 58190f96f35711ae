"""
Tests for TFTP on several processes (L{pxed.tftp.workers}, C{twistd
pxed-tftp --workers N}): the limits shared out, the children's log events
published in the parent, and the real command on 127.0.0.1 with two
processes on one port, serving downloads from many addresses.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

from twisted.application.service import MultiService
from twisted.internet import defer, reactor, threads
from twisted.internet.task import deferLater
from twisted.logger import Logger, eventAsJSON, globalLogPublisher
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase

from benchmarks.tftpclient import fetch_many
from pxed.config.tftp import TFTPConfig
from pxed.ports import UDPService
from pxed.tftp.tap import Options, buildService
from pxed.tftp.workers import WorkerPool, _Child, share, worker_argv
from tests.twistd import LOCAL, TWISTD, _Ended, _env, _free_port


class ShareTests(SynchronousTestCase):
    def test_max_transfers_shared_out(self) -> None:
        config = TFTPConfig(max_transfers=500, max_per_client=8)
        self.assertEqual(share(config, 2).max_transfers, 250)
        self.assertEqual(share(config, 3).max_transfers, 167)
        self.assertEqual(share(TFTPConfig(max_transfers=1), 4).max_transfers, 1)
        # Per client holds in each process.
        self.assertEqual(share(config, 2).max_per_client, 8)

    def test_argv_carries_the_config(self) -> None:
        config = TFTPConfig(root=Path("/srv/tftp"), max_windowsize=32)
        argv = worker_argv(config, 6969, "127.0.0.1", "warn", 3)
        self.assertEqual(argv[:3], [sys.executable, "-m", "pxed.tftp.workers"])
        spec = json.loads(argv[3])
        self.assertEqual((spec["port"], spec["interface"], spec["level"], spec["index"]),
                         (6969, "127.0.0.1", "warn", 3))
        self.assertEqual(TFTPConfig(**{**spec["config"], "root": Path(spec["config"]["root"])}),
                         config)


class OptionsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.root = Path(self.mktemp()).absolute()
        self.root.mkdir()

    def parse(self, *argv: str) -> Options:
        options = Options()
        options.parseOptions(["--root", str(self.root), *argv])
        return options

    def test_one_by_default(self) -> None:
        options = self.parse()
        self.assertEqual(options["workers"], 1)
        self.assertIsInstance(buildService(options), UDPService)

    def test_several(self) -> None:
        service = buildService(self.parse("--workers", "3", "--port", "6969"))
        self.assertIsInstance(service, MultiService)
        udp, pool = list(service)  # type: ignore[call-overload]
        self.assertTrue(udp.reuse_port)
        self.assertEqual(udp.protocol.max_transfers, 167)
        self.assertIsInstance(pool, WorkerPool)
        self.assertEqual((pool.count, pool.port), (2, 6969))

    def test_mistakes(self) -> None:
        for argv, message in ((("--workers", "0"), "--workers must be 1..256, not 0"),
                              (("--workers", "2", "--port", "0"), "--workers needs a fixed")):
            with self.assertRaises(usage.UsageError) as caught:
                self.parse(*argv)
            self.assertIn(message, str(caught.exception))


class ChildLogTests(SynchronousTestCase):
    """A child's JSON lines become events of the parent, tagged with the worker."""

    def test_lines_published(self) -> None:
        seen: list[Any] = []
        globalLogPublisher.addObserver(seen.append)
        self.addCleanup(globalLogPublisher.removeObserver, seen.append)
        captured: list[Any] = []
        Logger(namespace="pxed.tftp.protocol", observer=captured.append).info(
            "TFTP {outcome}: {filename}", outcome="complete", filename="a.bin")
        line = eventAsJSON(captured[0]).encode() + b"\n"
        child = _Child(WorkerPool(1, TFTPConfig(), 69, "", "info"), 2)
        child.outReceived(line[:10])
        self.assertEqual([e for e in seen if e.get("worker") == 2], [])
        child.outReceived(line[10:] + b"not json\n")
        mine = [e for e in seen if e.get("worker") == 2 and "line" not in e]
        self.assertEqual([(e["log_namespace"], e["filename"]) for e in mine],
                         [("pxed.tftp.protocol", "a.bin")])
        self.assertTrue(any("not json" in str(e.get("line")) for e in seen))


class ProcessTests(TestCase):
    """C{twistd pxed-tftp --workers 2}: two processes, one port, every download served."""

    timeout = 120

    @defer.inlineCallbacks
    def test_two_processes_serve(self) -> Any:
        root = Path(self.mktemp()).absolute()
        root.mkdir(parents=True)
        content = os.urandom(200_001)
        (root / "file.bin").write_bytes(content)
        log = root.parent / "twistd.log"
        port = _free_port()
        argv = [sys.executable, "-c", TWISTD, "--nodaemon", "--pidfile=", f"--logfile={log}",
                "pxed-tftp", "--root", str(root), "--port", str(port), "--interface", LOCAL,
                "--workers", "2"]
        ended = _Ended()
        process = reactor.spawnProcess(  # type: ignore[attr-defined]
            ended, sys.executable, argv, env=_env())
        pids: set[str] = set()
        try:
            for _ in range(100):  # about 20 s for both processes to come up
                pids = _holders(port)
                if len(pids) == 2:
                    break
                yield deferLater(reactor, 0.2, lambda: None)  # type: ignore[arg-type]
            self.assertEqual(len(pids), 2, log.read_text() if log.exists() else ended.output)
            # Each download from its own address and port: the kernel spreads
            # them over both processes (all 30 on one: one chance in 2**30).
            outcomes = yield threads.deferToThread(fetch_many, (LOCAL, port), "file.bin", 30,
                                                   1468, 1)
            self.assertEqual({(o.error, o.size, o.crc) for o in outcomes},
                             {(None, len(content), zlib.crc32(content))})
        finally:
            if ended.reason is None:
                process.signalProcess("TERM")
        yield ended.done
        # Every transfer's line reached the parent's log, the children's too.
        self.assertEqual(log.read_text().count("TFTP complete: file.bin"), 30)
        # The child ended with its parent.
        for _ in range(50):
            if not _holders(port):
                break
            yield deferLater(reactor, 0.1, lambda: None)  # type: ignore[arg-type]
        self.assertEqual(_holders(port), set())


def _holders(port: int) -> set[str]:
    """The PIDs holding UDP C{port} on 127.0.0.1."""
    out = subprocess.run(["ss", "-Hlunp", f"sport = :{port}"], capture_output=True, text=True,
                         timeout=30).stdout
    return set(re.findall(r"pid=(\d+)", out))
