"""
Tests for L{pxed.lab.browser}: headless Chromium against a page on
127.0.0.1 (CI installs Debian's chromium; these fail without it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor, threads
from twisted.trial import unittest
from twisted.web.resource import Resource
from twisted.web.server import Site

from pxed.lab.browser import QUIET_FLAGS, chromium_argv, render

PAGE = b"""<!doctype html><html><head><meta charset="utf-8"></head>
<body><p id="out">before</p>
<script>setTimeout(() => { document.getElementById("out").textContent = "after " +
  location.hash.slice(1); }, 500);</script></body></html>"""


class Page(Resource):
    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        return PAGE


class ArgvTests(unittest.TestCase):
    def test_quiet_and_fresh(self) -> None:
        argv = chromium_argv("http://127.0.0.1:1/", Path("/tmp/profile"), budget_ms=1234)
        for flag in ("--headless", "--no-sandbox", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--disable-quic"):
            self.assertIn(flag, argv)
            self.assertIn(flag, QUIET_FLAGS)
        self.assertIn("--user-data-dir=/tmp/profile", argv)
        self.assertIn("--virtual-time-budget=1234", argv)
        self.assertEqual(argv[-2:], ["--dump-dom", "http://127.0.0.1:1/"])

    def test_screenshot(self) -> None:
        argv = chromium_argv("http://127.0.0.1:1/", Path("/p"), screenshot=Path("/s.png"),
                             window=(390, 844))
        self.assertEqual(argv[-2:], ["--screenshot=/s.png", "http://127.0.0.1:1/"])
        self.assertIn("--window-size=390,844", argv)


class RenderTests(unittest.TestCase):
    timeout = 180

    def setUp(self) -> None:
        port = reactor.listenTCP(0, Site(Page()), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.url = f"http://127.0.0.1:{port.getHost().port}/#hello"
        self.workdir = Path(self.mktemp()).resolve()
        self.workdir.mkdir()

    @defer.inlineCallbacks
    def test_dom_after_scripts(self) -> Any:
        # Chromium blocks: it runs in a thread while the reactor serves it.
        dom = yield threads.deferToThread(render, self.url, self.workdir, "dom")
        self.assertIn('<p id="out">after hello</p>', dom)
        self.assertFalse((self.workdir / "dom.profile").exists())

    @defer.inlineCallbacks
    def test_screenshot(self) -> Any:
        shot = yield threads.deferToThread(render, self.url, self.workdir, "shot",
                                           screenshot=True, window=(320, 200))
        self.assertEqual(shot, str(self.workdir / "shot.png"))
        data = Path(shot).read_bytes()
        self.assertEqual(data[:8], b"\x89PNG\r\n\x1a\n")
        self.assertEqual(int.from_bytes(data[16:20], "big"), 320)  # the PNG's width

    def test_failure_names_the_log(self) -> None:
        error = self.assertRaises(RuntimeError, render, "http://127.0.0.1:1/", self.workdir,
                                  "bad", screenshot=True, prefix=["false"])
        self.assertIn(str(self.workdir / "bad.log"), str(error))
