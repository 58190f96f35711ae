"""
Tests for L{pxed.http.leases}: C{GET /_/leases}, served for real on
127.0.0.1 from a lease store, through L{StatusPages}.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import treq
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial import unittest

from pxed.dhcp.leases import BOUND, DECLINED, OFFERED, Lease
from pxed.http.leases import leases_json
from pxed.http.status import StatusPages
from pxed.leasestore import MemoryLeaseStore
from pxed.state import MemoryBootLog
from pxed.testing.http import Inner, listen_on_loopback

NOW = 10_000.0


class ServedTestCase(unittest.TestCase):
    """
    A lease store with held, expired and declined records, served with
    the status pages on 127.0.0.1.
    """

    timeout = 30

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.store = MemoryLeaseStore([
            Lease("mac:a", "52:54:00:00:00:0a", "192.168.77.110", NOW + 3600, BOUND),
            Lease("mac:b", "52:54:00:00:00:0b", "192.168.77.9", NOW + 30, OFFERED),
            Lease("mac:c", "52:54:00:00:00:0c", "192.168.77.100", NOW - 1, BOUND),
            Lease("declined:192.168.77.101", "", "192.168.77.101", NOW + 600, DECLINED),
        ])
        pages = StatusPages(MemoryBootLog(), self.clock, leases=self.store)
        self.base, self.pool = listen_on_loopback(self, pages.mount(Inner()))

    @defer.inlineCallbacks
    def fetch(self, path: str, method: str = "GET") -> Any:
        response = yield treq.request(method, self.base + path, pool=self.pool, timeout=10)
        body = yield treq.content(response)
        return response, body


class LeasesAPITests(ServedTestCase):
    @defer.inlineCallbacks
    def test_held_leases_by_address(self) -> Any:
        response, body = yield self.fetch("/_/leases")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["application/json"])
        data = json.loads(body)
        self.assertEqual([(item["mac"], item["address"], item["expires"])
                          for item in data["leases"]],
                         [("52:54:00:00:00:0b", "192.168.77.9", NOW + 30),
                          ("52:54:00:00:00:0a", "192.168.77.110", NOW + 3600)])

    @defer.inlineCallbacks
    def test_read_only(self) -> Any:
        response, _ = yield self.fetch("/_/leases", method="POST")
        self.assertEqual(response.code, 405)
        response, _ = yield self.fetch("/_/leases/x")
        self.assertEqual(response.code, 404)

    def test_no_store_no_route(self) -> None:
        self.assertNotIn("/_/leases", StatusPages(MemoryBootLog(), self.clock).routes())

    def test_json_empty(self) -> None:
        self.assertEqual(leases_json([], 1.0), {"now": 1.0, "leases": []})


class LeaseTableBrowserTests(ServedTestCase):
    """
    The status page in headless Chromium draws the lease table from
    C{/_/leases} (and shows no table where there is no lease store).
    """

    timeout = 180

    @defer.inlineCallbacks
    def test_table(self) -> Any:
        from twisted.internet import threads

        from pxed.lab.browser import render

        workdir = Path(self.mktemp()).resolve()
        workdir.mkdir()
        dom = yield threads.deferToThread(render, f"{self.base}/_/status/", workdir, "dom",
                                          budget_ms=3000)
        self.assertIn('<section id="leases" class="leases">', dom)  # shown: not hidden
        for text in ("192.168.77.110", "52:54:00:00:00:0a", "bound", "192.168.77.9",
                     "offered"):
            self.assertIn(text, dom)
        # Expired and declined records are not listed.
        self.assertNotIn("192.168.77.100<", dom)
        self.assertNotIn("192.168.77.101", dom)
