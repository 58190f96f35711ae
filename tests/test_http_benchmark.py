"""
Tests for the HTTP benchmark (L{benchmarks.http}): one small run of the
whole benchmark, nginx included, as CI would run it (nginx is installed by
C{scripts/setup}; a missing one is a failure here, not a skip).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SynchronousTestCase, TestCase

from benchmarks.http import table

REPO = Path(__file__).resolve().parents[1]


class TableTests(SynchronousTestCase):
    def test_ratios(self) -> None:
        rows = {"nginx": [{"connections": 1, "mb_s": 400.0, "failures": 0}],
                "pxed": [{"connections": 1, "mb_s": 300.0, "failures": 0}]}
        text = table({"rows": rows})
        self.assertIn("pxed    1            300.0  0.75x     0", text)


class BenchmarkRunTests(TestCase):
    timeout = 300

    @defer.inlineCallbacks
    def test_small_run(self) -> Any:
        out_json = Path(self.mktemp()).absolute()
        out, err, code = yield getProcessOutputAndValue(
            sys.executable,
            [str(REPO / "benchmarks" / "http.py"), "--size-mib", "2", "--downloads", "2",
             "--repeat", "1", "--json", str(out_json)],
            env=dict(os.environ), reactor=reactor)
        self.assertEqual(code, 0, out + err)
        results = json.loads(out_json.read_text())
        for server in ("nginx", "pxed"):
            rows = results["rows"][server]
            self.assertEqual([r["connections"] for r in rows], [1, 4])
            for row in rows:
                self.assertEqual(row["failures"], 0, row)
                self.assertGreater(row["mb_s"], 0)
        self.assertIn(b"vs nginx", out)
