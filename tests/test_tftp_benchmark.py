"""
Tests for the TFTP benchmark (L{benchmarks.tftp}) and its lean client
(L{benchmarks.tftpclient}): the client against pxed's server on
127.0.0.1 (in a thread, while the reactor serves), and one small run of
the whole benchmark, tftpd-hpa included, as CI would run it.
"""

from __future__ import annotations

import json
import os
import sys
import zlib
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor, threads
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SynchronousTestCase, TestCase

from benchmarks.servers import rst_table
from benchmarks.tftp import table
from benchmarks.tftpclient import fetch, fetch_many, request
from pxed.tftp.protocol import TFTPServerProtocol
from pxed.tftp.source import FilesystemSource
from tests.fixtures import settle

REPO = Path(__file__).resolve().parents[1]
LOCAL = "127.0.0.1"


class RequestTests(SynchronousTestCase):
    def test_options(self) -> None:
        self.assertEqual(request("f", 1468, 1), b"\0\1f\0octet\0blksize\x001468\0")
        self.assertEqual(request("a/b", 512, 16),
                         b"\0\1a/b\0octet\0blksize\x00512\0windowsize\x0016\0")


class LeanClientTests(TestCase):
    """The benchmark's client gets exactly the file, whatever was granted."""

    timeout = 60

    def setUp(self) -> None:
        root = Path(self.mktemp()).absolute()
        root.mkdir()
        self.content = os.urandom(700_001)
        (root / "f").write_bytes(self.content)
        (root / "exact").write_bytes(self.content[:1468 * 20])
        self.ends: list[Any] = []
        self.server = TFTPServerProtocol(FilesystemSource(root), reactor, max_windowsize=8,
                                         max_per_client=200,
                                         on_transfer_end=lambda *a: self.ends.append(a[2]))
        port = reactor.listenUDP(0, self.server, interface=LOCAL)  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)
        self.address = (LOCAL, port.getHost().port)

    @defer.inlineCallbacks
    def test_fetch(self) -> Any:
        for name, blksize, windowsize in (("f", 512, 1), ("f", 1468, 4), ("f", 1468, 64),
                                          ("exact", 1468, 8)):
            outcome = yield threads.deferToThread(fetch, self.address, name, blksize, windowsize)
            expected = self.content if name == "f" else self.content[:1468 * 20]
            self.assertEqual((outcome.error, outcome.size, outcome.crc),
                             (None, len(expected), zlib.crc32(expected)))
        yield settle(self.ends, 4)
        # A window above the server's cap is lowered in its OACK, and used.
        self.assertEqual(sorted((r.blksize, r.windowsize, r.outcome) for r in self.ends),
                         [(512, 1, "complete"), (1468, 4, "complete"),
                          (1468, 8, "complete"), (1468, 8, "complete")])

    @defer.inlineCallbacks
    def test_error(self) -> Any:
        outcome = yield threads.deferToThread(fetch, self.address, "missing", 1468, 1)
        self.assertEqual(outcome.error, "ERROR 1: File not found")

    @defer.inlineCallbacks
    def test_fetch_many(self) -> Any:
        outcomes = yield threads.deferToThread(fetch_many, self.address, "f", 30, 1468, 4)
        self.assertEqual({(o.error, o.size, o.crc) for o in outcomes},
                         {(None, len(self.content), zlib.crc32(self.content))})
        yield settle(self.ends, 30)
        self.assertEqual(len(self.ends), 30)


class TableTests(SynchronousTestCase):
    def test_grid(self) -> None:
        self.assertEqual(rst_table([("a", "bb"), ("ccc", "d")]),
                         "===  ==\na    bb\n===  ==\nccc  d\n===  ==")

    def test_ratios(self) -> None:
        single = {"tftpd-hpa": [{"blksize": 1468, "windowsize": 1, "mb_s": 20.0,
                                 "client_cpu": 0.5, "failures": 0}],
                  "pxed": [{"blksize": 1468, "windowsize": 16, "mb_s": 50.0,
                            "client_cpu": 0.5, "failures": 0}]}
        concurrent = {"tftpd-hpa": [{"count": 200, "windowsize": 1, "mb_s": 40.0,
                                     "p50_s": 2.0, "p99_s": 4.0, "failures": 0}],
                      "pxed": [{"count": 200, "windowsize": 1, "mb_s": 80.0, "p50_s": 1.0,
                                "p99_s": 1.0, "failures": 0}]}
        text = table({"single": single, "concurrent": concurrent, "atftp": {}})
        self.assertIn("pxed       1468     16      50.0  2.50x", text)
        self.assertIn("2.00x, 2.00x, 4.00x", text)


class BenchmarkRunTests(TestCase):
    """
    The benchmark as a command, small: it needs tftpd-hpa (in.tftpd), as CI
    has it; a missing server is a failure here, not a skip.
    """

    timeout = 300

    @defer.inlineCallbacks
    def test_small_run(self) -> Any:
        out_json = Path(self.mktemp()).absolute()
        out, err, code = yield getProcessOutputAndValue(
            sys.executable,
            [str(REPO / "benchmarks" / "tftp.py"), "--size-mib", "2", "--concurrent", "20",
             "--repeat", "1", "--json", str(out_json)],
            env=dict(os.environ), reactor=reactor)
        self.assertEqual(code, 0, out + err)
        results = json.loads(out_json.read_text())
        self.assertEqual([(r["blksize"], r["windowsize"]) for r in results["single"]["pxed"]],
                         [(b, w) for b in (512, 1468) for w in (1, 4, 16, 64)])
        self.assertEqual(len(results["single"]["tftpd-hpa"]), 2)
        for rows in (*results["single"].values(), *results["concurrent"].values()):
            for row in rows:
                self.assertEqual(row["failures"], 0, row)
                self.assertGreater(row["mb_s"], 0)
        self.assertIn(b"vs tftpd-hpa", out)
