"""
Tests for L{benchmarks.dhcpcpu}: it runs, in a process of its own, the
protocol the service builds, and every DISCOVER of every pass is answered.
(What it measures is printed, never asserted: speed lives in benchmarks.)
"""

from __future__ import annotations

import json
from pathlib import Path

from twisted.trial import unittest

from benchmarks import dhcpcpu


class CPUBenchmarkTests(unittest.TestCase):
    def test_small_run(self) -> None:
        """
        A run against this checkout as its own baseline: each checkout's
        runs are recorded, and each answered all of its 4 passes of
        DISCOVERs (a run that lost one would have failed).
        """
        out = Path(self.mktemp())
        checkout = Path(dhcpcpu.__file__).resolve().parent.parent
        code = dhcpcpu.main(["--count", "150", "--repeat", "2", "--baseline", str(checkout),
                             "--json", str(out)])
        self.assertEqual(code, 0)
        runs = json.loads(out.read_text())
        self.assertEqual(sorted(runs), ["pxed", "pxed-baseline"])
        for name in runs:
            self.assertEqual(len(runs[name]), 2)
            for run in runs[name]:
                self.assertEqual(run["replies"], 4 * 150)
                self.assertGreater(run["us_per_discover"], 0)
