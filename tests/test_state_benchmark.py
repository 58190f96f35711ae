"""
Tests for L{benchmarks.state}: a small run against its own PostgreSQL
prints every figure the README quotes (the figures themselves are the
benchmark's business, not a test's).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from twisted.trial import unittest

from benchmarks.state import ratio

REPO = Path(__file__).resolve().parents[1]


class RatioTests(unittest.TestCase):
    def test_ratio(self) -> None:
        self.assertEqual(ratio(3.0, 2.0), "1.50x")
        self.assertEqual(ratio(1.0, 0.0), "n/a")


class SmallRunTests(unittest.TestCase):
    def test_small_run(self) -> None:
        out = subprocess.run([sys.executable, "-m", "benchmarks.state", "--machines", "30",
                              "--repeat", "1", "--json", str(Path(self.mktemp()).absolute())],
                             cwd=REPO, capture_output=True, text=True, timeout=300,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
        self.assertEqual(out.returncode, 0, out.stderr)
        for needle in ("offers/s (plain)", "offers/s (once )", "boot storm, 300 timeline",
                       "one INSERT+commit per event", "once marks/s", "bound leases/s",
                       "query round trip"):
            self.assertIn(needle, out.stdout)
        self.assertIn(", 1 batches", out.stdout)  # 300 events, one write
