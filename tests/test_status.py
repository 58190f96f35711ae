"""
Tests for L{pxed.http.status} and L{pxed.http.meter}: the status page,
its JSON API and /metrics, served for real on 127.0.0.1 in front of a
stand-in for pxed's boot routes, and every request counted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import treq
from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.trial import unittest
from twisted.web.client import HTTPConnectionPool
from twisted.web.server import Site

from pxed.http.meter import MeteredResource, request_kind
from pxed.http.status import STATUS_REFRESH, Mount, StatusPages, load_assets
from pxed.metrics import Metrics
from pxed.state import MemoryBootLog
from pxed.testing.http import Inner

MAC = "52:54:00:77:00:20"
OTHER = "52:54:00:77:00:30"


class Served:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def http_served(self, *args: Any) -> None:
        self.calls.append(args)


class StatusTestCase(unittest.TestCase):
    timeout = 30
    page: str | None = "/_/status"

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(10_000)
        self.log = MemoryBootLog(clock=self.clock.seconds)
        self.metrics = Metrics()
        self.inner = Inner()
        self.served = Served()
        self.pages = StatusPages(self.log, self.clock, page=self.page, metrics=self.metrics)
        root = MeteredResource(self.pages.mount(self.inner), self.served, self.clock,
                               status_page=self.page)
        port = reactor.listenTCP(0, Site(root), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.base = f"http://127.0.0.1:{port.getHost().port}"
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(self.pool.closeCachedConnections)

    @defer.inlineCallbacks
    def fetch(self, path: str, method: str = "GET", headers: Any = None) -> Any:
        response = yield treq.request(method, self.base + path, pool=self.pool, timeout=10,
                                      headers=headers, allow_redirects=False)
        body = yield treq.content(response)
        return response, body

    def header(self, response: Any, name: str) -> str | None:
        values = response.headers.getRawHeaders(name.encode())
        return values[0].decode() if values else None

    def boot(self, mac: str = MAC) -> None:
        self.log.record(mac, "proxydhcp", arch="x64-uefi", bootfile="snponly.efi",
                        kind="bootloader")
        self.clock.advance(2)
        self.log.record(mac, "script", arch="x64-uefi", peer="192.168.77.50",
                        action="BootSpec", files={"/_/file/T/vmlinuz": "kernel"})
        self.clock.advance(1)
        self.log.record(mac, "kernel", path="/_/file/T/vmlinuz", file="vmlinuz", bytes=10)
        self.clock.advance(1)
        self.log.record(mac, "booting")


class PageTests(StatusTestCase):
    @defer.inlineCallbacks
    def test_redirects_to_the_folder(self) -> Any:
        response, _ = yield self.fetch("/_/status")
        self.assertEqual(response.code, 301)
        self.assertEqual(self.header(response, "location"), "/_/status/")

    @defer.inlineCallbacks
    def test_index(self) -> Any:
        response, body = yield self.fetch("/_/status/")
        self.assertEqual(response.code, 200)
        self.assertEqual(self.header(response, "content-type"), "text/html; charset=utf-8")
        self.assertIn("default-src 'self'", self.header(response, "content-security-policy") or "")
        text = body.decode()
        self.assertIn('data-api="/_/machines"', text)
        self.assertNotIn("@API@", text)
        self.assertIn('src="status.js"', text)
        self.assertIn('href="status.css"', text)
        self.assertIn('name="viewport"', text)  # readable on a phone

    @defer.inlineCallbacks
    def test_assets(self) -> Any:
        for name, kind in (("status.css", "text/css"), ("status.js", "text/javascript")):
            response, body = yield self.fetch(f"/_/status/{name}")
            self.assertEqual(response.code, 200, name)
            self.assertEqual(self.header(response, "content-type"), f"{kind}; charset=utf-8")
            self.assertEqual(body, load_assets()[name].body)
            tag = self.header(response, "etag")
            again, rest = yield self.fetch(f"/_/status/{name}", headers={"If-None-Match": tag})
            self.assertEqual((again.code, rest), (304, b""))

    @defer.inlineCallbacks
    def test_nothing_else(self) -> Any:
        for path in ("/_/status/nope.js", "/_/status/.hidden", "/_/status/../metrics"):
            response, _ = yield self.fetch(path)
            self.assertEqual(response.code, 404, path)
        response, _ = yield self.fetch("/_/status/", method="POST")
        self.assertEqual(response.code, 405)

    def test_no_cdn(self) -> None:
        """
        The page fetches nothing from anywhere but pxed.
        """
        assets = load_assets()
        self.assertEqual(sorted(assets), ["index.html", "status.css", "status.js"])
        for name in ("index.html", "status.css"):
            self.assertNotIn(b"://", assets[name].body, name)
        for scheme in (b"http://", b"https://", b"//cdn", b"@import"):
            self.assertNotIn(scheme, assets["status.js"].body)


class OtherPathTests(StatusTestCase):
    page = "/ops/boots"

    @defer.inlineCallbacks
    def test_configured_path(self) -> Any:
        response, body = yield self.fetch("/ops/boots/")
        self.assertEqual(response.code, 200)
        self.assertIn(b"status.js", body)
        response, _ = yield self.fetch("/_/status/")
        self.assertEqual(response.code, 404)
        self.assertEqual(self.inner.paths, [b"/_/status/"])
        self.assertEqual(self.served.calls[0][0], "status")


class NoPageTests(StatusTestCase):
    page = None

    @defer.inlineCallbacks
    def test_off(self) -> Any:
        response, _ = yield self.fetch("/_/status/")
        self.assertEqual(response.code, 404)
        self.assertEqual(self.inner.paths, [b"/_/status/"])
        response, _ = yield self.fetch("/_/machines")
        self.assertEqual(response.code, 200)  # the API is its own switch


class APITests(StatusTestCase):
    @defer.inlineCallbacks
    def machines(self, headers: Any = None) -> Any:
        response, body = yield self.fetch("/_/machines", headers=headers)
        return response, (json.loads(body) if response.code == 200 else None)

    @defer.inlineCallbacks
    def test_list(self) -> Any:
        response, data = yield self.machines()
        self.assertEqual(self.header(response, "content-type"), "application/json")
        self.assertEqual(data["machines"], [])
        self.boot(MAC)
        self.log.record(OTHER, "proxydhcp", arch="x86-bios", kind="ipxe-script",
                        bootfile="http://x/_/ipxe")
        _, data = yield self.machines()
        self.assertEqual([m["mac"] for m in data["machines"]], [OTHER, MAC])
        booted = data["machines"][1]
        self.assertEqual({k: booted[k] for k in ("status", "stage", "label", "progress", "arch",
                                                 "address", "loops", "files")},
                         {"status": "booted", "stage": "booting", "label": "beacon",
                          "progress": 1.0, "arch": "x64-uefi", "address": "192.168.77.50",
                          "loops": 0, "files": {"expected": 1, "served": 1}})
        self.assertEqual((booted["started"], booted["last_seen"]), (10_000.0, 10_004.0))
        self.assertEqual(data["now"], 10_004.0)
        other = data["machines"][0]
        self.assertEqual((other["status"], other["label"]), ("booting", "iPXE DHCP"))

    @defer.inlineCallbacks
    def test_not_modified_until_something_happens(self) -> Any:
        """
        A poller is told "nothing new" until an event is recorded, or the
        time comes when a machine may have stalled.
        """
        self.boot(MAC)
        response, _ = yield self.machines()
        tag = self.header(response, "etag")
        response, _ = yield self.machines({"If-None-Match": tag})
        self.assertEqual(response.code, 304)
        self.log.record(OTHER, "proxydhcp", kind="bootloader")
        response, data = yield self.machines({"If-None-Match": tag})
        self.assertEqual(response.code, 200)
        tag = self.header(response, "etag")
        self.clock.advance(STATUS_REFRESH)
        response, data = yield self.machines({"If-None-Match": tag})
        self.assertEqual(response.code, 200)
        self.clock.advance(200)
        _, data = yield self.machines()
        self.assertEqual([m["status"] for m in data["machines"]], ["stalled", "booted"])

    @defer.inlineCallbacks
    def test_one_machine(self) -> Any:
        self.boot(MAC)
        self.clock.advance(100)
        self.log.record(MAC, "proxydhcp", arch="x64-uefi", kind="bootloader", bootfile="b")
        for spelling in (MAC, MAC.upper().replace(":", "-"), MAC.replace(":", "%3A")):
            response, body = yield self.fetch(f"/_/machines/{spelling}")
            self.assertEqual(response.code, 200, spelling)
            data = json.loads(body)
            self.assertEqual(data["mac"], MAC)
            self.assertEqual([e["stage"] for e in data["timeline"]], ["proxydhcp"])
            self.assertEqual([e["stage"] for e in data["events"]],
                             ["proxydhcp", "script", "kernel", "booting", "proxydhcp"])
            self.assertEqual(data["events"][2]["fields"]["bytes"], 10)
            self.assertEqual(data["events"][0]["label"], "ProxyDHCP offer")
            self.assertEqual(data["status"], "booting")

    @defer.inlineCallbacks
    def test_tokens_never_published(self) -> Any:
        """
        A script URL's signed context and a beacon's tokens would let any
        reader of the API act as the machine (end its 'once' rule): they
        are blanked.  Signed file URLs stay, unless file_urls is off.
        """
        self.log.record(MAC, "proxydhcp", arch="x64-uefi", kind="ipxe-script",
                        bootfile="http://h/_/ipxe?mac=m&arch=7&ctx=eyJtIjoi.Tag_-x")
        self.log.record(MAC, "script", files={"/_/file/eyJh.QmN-_x/vmlinuz": "kernel"},
                        beacon="http://h/_/booting?mac=m&boot=AAA.BBB&once=CCC.DDD")
        _, body = yield self.fetch(f"/_/machines/{MAC}")
        text = body.decode()
        for secret in ("eyJtIjoi", "Tag_-x", "AAA.BBB", "CCC.DDD"):
            self.assertNotIn(secret, text)
        self.assertIn("ctx=-", text)
        self.assertIn("/_/file/eyJh.QmN-_x/vmlinuz", text)
        self.pages.file_urls = False
        _, body = yield self.fetch(f"/_/machines/{MAC}")
        self.assertNotIn("eyJh.QmN-_x", body.decode())
        self.assertIn("/_/file/-/vmlinuz", body.decode())

    @defer.inlineCallbacks
    def test_unknown_machines(self) -> Any:
        for path in (OTHER, "nonsense", "52:54:00:77:00", "zz:54:00:77:00:20", "%ff"):
            response, body = yield self.fetch(f"/_/machines/{path}")
            self.assertEqual(response.code, 404, path)
            self.assertEqual(json.loads(body), {"error": "no such machine"})
        self.assertEqual(self.log.machines(), [])

    @defer.inlineCallbacks
    def test_read_only(self) -> Any:
        for method in ("POST", "PUT", "DELETE"):
            response, _ = yield self.fetch("/_/machines", method=method)
            self.assertEqual(response.code, 405, method)
            self.assertEqual(self.header(response, "allow"), "GET, HEAD")

    @defer.inlineCallbacks
    def test_prefix_is_not_a_route(self) -> Any:
        response, _ = yield self.fetch("/_/machinesX")
        self.assertEqual(response.code, 404)
        self.assertEqual(self.inner.paths, [b"/_/machinesX"])


class MetricsPageTests(StatusTestCase):
    @defer.inlineCallbacks
    def test_exposition(self) -> Any:
        self.metrics.loop_detected()
        response, body = yield self.fetch("/metrics")
        self.assertEqual(response.code, 200)
        self.assertTrue((self.header(response, "content-type") or "").startswith("text/plain"))
        self.assertIn(b"pxed_boot_loops_total 1.0", body)
        response, _ = yield self.fetch("/metrics/more")
        self.assertEqual(response.code, 404)

    @defer.inlineCallbacks
    def test_off(self) -> Any:
        pages = StatusPages(self.log, self.clock, page=None, api=False, metrics=None)
        self.assertEqual(pages.routes(), {})
        root = Mount(self.inner, pages.routes())
        port = reactor.listenTCP(0, Site(root), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.base = f"http://127.0.0.1:{port.getHost().port}"
        for path in ("/metrics", "/_/machines", "/_/status/"):
            response, _ = yield self.fetch(path)
            self.assertEqual(response.code, 404, path)
        self.assertEqual(self.inner.paths, [b"/metrics", b"/_/machines", b"/_/status/"])


class MeterTests(StatusTestCase):
    def test_kinds(self) -> None:
        cases = {
            b"/_/ipxe": "script", b"/_/file/T/vmlinuz": "file", b"/_/boot/ipxe.efi": "program",
            b"/_/export/seed/a": "export", b"/_/booting": "beacon", b"/_/admin/reload": "admin",
            b"/_/machines/x": "api", b"/metrics": "metrics", b"/_/status/": "status",
            b"/_/status": "status", b"/_/statusx": "other", b"/": "other",
        }
        for path, kind in cases.items():
            self.assertEqual(request_kind(path, b"/_/status"), kind, path)
        self.assertEqual(request_kind(b"/_/status/", None), "other")

    @defer.inlineCallbacks
    def test_each_request_once_it_ended(self) -> Any:
        self.boot(MAC)
        _, body = yield self.fetch("/_/machines")
        yield self.fetch("/_/file/T/vmlinuz", method="HEAD")
        self.assertEqual(len(self.served.calls), 2)
        kind, peer, method, path, code, size, seconds = self.served.calls[0]
        self.assertEqual((kind, peer, method, path, code, size),
                         ("api", "127.0.0.1", "GET", "/_/machines", 200, len(body)))
        self.assertEqual(seconds, 0.0)  # the test's clock did not move
        self.assertEqual(self.served.calls[1][:5],
                         ("file", "127.0.0.1", "HEAD", "/_/file/T/vmlinuz", 404))


class BrowserTests(StatusTestCase):
    """
    The page in headless Chromium (Debian's chromium, which CI installs),
    against this test's server on 127.0.0.1: its scripts draw the rows
    from the API and open a timeline from the address's fragment.
    """

    timeout = 180

    @defer.inlineCallbacks
    def test_rows_and_timeline(self) -> Any:
        from twisted.internet import threads

        from pxed.lab.browser import render
        from pxed.testing.http import StatusRows

        self.boot(MAC)
        self.log.record(OTHER, "proxydhcp", arch="x86-bios", kind="ipxe-script",
                        bootfile="http://192.168.77.1/_/ipxe?mac=x")
        workdir = Path(self.mktemp()).resolve()
        workdir.mkdir()
        # Chromium blocks: it runs in a thread while the reactor serves it.
        dom = yield threads.deferToThread(render, f"{self.base}/_/status/#{MAC}", workdir,
                                          "dom", budget_ms=3000)
        rows = StatusRows()
        rows.feed(dom)
        self.assertEqual(rows.status, {MAC: "booted", OTHER: "booting"})
        self.assertIn("2 machines", dom)
        self.assertIn('class="live ok"', dom)  # the poll worked
        # The open machine's timeline, each stage with its details.
        self.assertIn(f'data-for="{MAC}"', dom)
        for text in ("ProxyDHCP offer", "iPXE script", "vmlinuz, 10 B", "beacon"):
            self.assertIn(text, dom)
        self.assertIn("width: 100%", dom)  # the booted machine's bar
        self.assertIn("width: 45%", dom)  # the other one, at iPXE DHCP


class ServiceWiringTests(unittest.TestCase):
    """
    C{makeBootService} serves what C{status:} asks for, and nothing else.
    """

    timeout = 30

    @defer.inlineCallbacks
    def serve(self, status: dict[str, Any]) -> Any:
        from pxed.config import parse_config
        from pxed.service import makeBootService

        folder = Path(self.mktemp()).absolute()
        folder.mkdir()
        for name in ("undionly.kpxe", "snponly.efi"):
            (folder / name).write_bytes(b"x")
        config = parse_config({
            "server": {"address": "127.0.0.1", "ports": {"dhcp": 0, "pxe": 0, "tftp": 0,
                                                         "http": 0}},
            "bootloaders": {"x86-bios": str(folder / "undionly.kpxe"),
                            "x64-uefi": str(folder / "snponly.efi")},
            "status": status,
        }, "test")
        http = makeBootService(config).getServiceNamed("http")  # type: ignore[attr-defined]
        http.startService()
        self.addCleanup(http.stopService)
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(pool.closeCachedConnections)
        codes = {}
        for path in ("/_/status/", "/ops/", "/_/machines", "/metrics"):
            response = yield treq.get(f"http://127.0.0.1:{http.port.getHost().port}{path}",
                                      pool=pool, timeout=10)
            yield treq.content(response)
            codes[path] = response.code
        return codes

    @defer.inlineCallbacks
    def test_defaults(self) -> Any:
        codes = yield self.serve({})
        self.assertEqual(codes, {"/_/status/": 200, "/ops/": 404, "/_/machines": 200,
                                 "/metrics": 200})

    @defer.inlineCallbacks
    def test_moved_and_off(self) -> Any:
        codes = yield self.serve({"page": "/ops", "metrics": False})
        self.assertEqual(codes, {"/_/status/": 404, "/ops/": 200, "/_/machines": 200,
                                 "/metrics": 404})

    @defer.inlineCallbacks
    def test_all_off(self) -> Any:
        codes = yield self.serve({"page": False, "api": False, "metrics": False})
        self.assertEqual(set(codes.values()), {404})
