"""
Tests for the boot-storm benchmark's own parts (L{benchmarks.dhcp}): the
DISCOVERs it sends, its percentile, and its accounting of replies, against
a stand-in server on 127.0.0.1 that answers some requests and drops others.
"""

from __future__ import annotations

import threading

from twisted.trial import unittest

from benchmarks.dhcp import discovers, drive, percentile
from pxed.dhcp.classify import classify
from pxed.dhcp.packet import decode
from tests.fixtures import stand_in_server


class DiscoverTests(unittest.TestCase):
    def test_distinct_relayed_pxe_clients(self) -> None:
        packets = [decode(raw) for raw in discovers(300)]
        self.assertEqual([p.xid for p in packets], list(range(300)))
        self.assertEqual(len({p.mac for p in packets}), 300)
        for packet in packets:
            self.assertEqual((packet.giaddr, packet.message_type), ("127.0.0.1", 1))
            machine = classify(packet)
            self.assertEqual((machine.arch.slug, machine.ipxe), ("x86-bios", False))


class PercentileTests(unittest.TestCase):
    def test_nearest_rank(self) -> None:
        values = [float(v) for v in range(100, 0, -1)]
        self.assertEqual(percentile(values, 0.5), 50.0)
        self.assertEqual(percentile(values, 0.99), 99.0)
        self.assertEqual(percentile(values, 1.0), 100.0)
        self.assertEqual(percentile([7.0], 0.99), 7.0)
        self.assertNotEqual(percentile([], 0.5), percentile([], 0.5))  # NaN


class DriveTests(unittest.TestCase):
    def test_counts_replies_and_losses(self) -> None:
        """
        A stand-in server answers every request but those whose xid is a
        multiple of 7, and answers xid 3 twice: the driver counts exactly
        that.
        """
        server, relay_address = stand_in_server(self)
        n = 200

        def answer() -> None:
            for _ in range(n):
                try:
                    data = server.recv(2048)
                except OSError:
                    return
                xid = int.from_bytes(data[4:8], "big")
                if xid % 7 == 0:
                    continue
                reply = b"\x02" + data[1:]
                for _ in range(2 if xid == 3 else 1):
                    server.sendto(reply, relay_address)

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        result = drive(server.getsockname(), discovers(n), rate=4000, window=0, timeout=1.0,
                       bind=relay_address)
        thread.join(10)
        lost = len([i for i in range(n) if i % 7 == 0])
        self.assertEqual((result["sent"], result["offers"], result["lost"]), (n, n - lost, lost))
        self.assertEqual(result["duplicates"], 1)
        self.assertGreater(result["offers_per_s"], 0)
        self.assertLessEqual(result["p50_ms"], result["p99_ms"])
        self.assertLessEqual(result["p99_ms"], result["max_ms"])


class CombineTests(unittest.TestCase):
    def test_medians_worst_and_losses(self) -> None:
        from benchmarks.dhcp import combine

        runs = [
            {"offers_per_s": 10.0, "p50_ms": 1.0, "p99_ms": 9.0, "max_ms": 12.0, "seconds": 1.0,
             "lost": 0, "duplicates": 0, "strays": 1, "machines": 5},
            {"offers_per_s": 30.0, "p50_ms": 3.0, "p99_ms": 3.0, "max_ms": 4.0, "seconds": 3.0,
             "lost": 2, "duplicates": 1, "strays": 0, "machines": 5},
            {"offers_per_s": 20.0, "p50_ms": 2.0, "p99_ms": 5.0, "max_ms": 6.0, "seconds": 2.0,
             "lost": 0, "duplicates": 0, "strays": 0, "machines": 5},
        ]
        out = combine(runs)
        self.assertEqual((out["offers_per_s"], out["p50_ms"], out["p99_ms"], out["seconds"]),
                         (20.0, 2.0, 5.0, 2.0))
        self.assertEqual((out["max_ms"], out["lost"], out["duplicates"], out["strays"]),
                         (12.0, 2, 1, 1))
        self.assertEqual((out["machines"], out["runs"]), (5, runs))
