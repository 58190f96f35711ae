"""
Tests for L{pxed.http.app}: the Klein application served for real on
127.0.0.1 and fetched with treq, as iPXE would.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import treq
from twisted.internet import defer, reactor
from twisted.trial import unittest
from twisted.web.client import HTTPConnectionPool
from twisted.web.server import Site

from pxed.http.app import BootHTTP, FileCatalog
from pxed.policy import BootSpec, StaticPolicy
from pxed.state import MemoryBootLog

MAC = "52:54:00:ab:cd:12"
OTHER_MAC = "52:54:00:99:88:77"
REQUEST_TIMEOUT = 10


class HTTPTestCase(unittest.TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).absolute()
        self.dir.mkdir()
        self.kernel_bytes = os.urandom(150_000)
        self.kernel = self.dir / "vmlinuz"
        self.kernel.write_bytes(self.kernel_bytes)
        self.initrd = self.dir / "initrd.img"
        self.initrd.write_bytes(b"initrd contents")
        self.spec = BootSpec(str(self.kernel), (str(self.initrd), "http://mirror.invalid/fw.img"),
                             "console=ttyS0")
        self.policy = StaticPolicy({MAC: self.spec})
        self.catalog = FileCatalog(self.policy.local_files())
        self.boot_log = MemoryBootLog()
        self.start(BootHTTP(self.policy, self.catalog, self.boot_log))

    def start(self, app: BootHTTP) -> None:
        self.app = app
        port = reactor.listenTCP(0, Site(app.resource()), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.base = f"http://127.0.0.1:{port.getHost().port}"
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(self.pool.closeCachedConnections)

    @defer.inlineCallbacks
    def fetch(self, path: str, method: str = "GET", **kwargs: Any) -> Any:
        """
        Fetch C{path} (or a full URL) and return (response, body bytes).
        """
        url = path if path.startswith("http://") else self.base + path
        response = yield treq.request(method, url, pool=self.pool, timeout=REQUEST_TIMEOUT,
                                      **kwargs)
        body = yield treq.content(response)
        return response, body

    @defer.inlineCallbacks
    def script(self, mac: str = MAC, arch: int = 7) -> Any:
        response, body = yield self.fetch(f"/_/ipxe?mac={quote(mac)}&arch={arch}")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders(b"content-type"),
                         [b"text/plain; charset=utf-8"])
        return body.decode("utf-8")

    def kernel_url(self, script: str) -> str:
        match = re.search(r"^kernel (\S+)", script, re.MULTILINE)
        assert match is not None, script
        return match.group(1)


class ScriptTests(HTTPTestCase):
    @defer.inlineCallbacks
    def test_script(self) -> Any:
        text = yield self.script()
        lines = text.splitlines()
        self.assertEqual(lines[0], "#!ipxe")
        kernel = self.kernel_url(text)
        self.assertTrue(kernel.startswith(self.base + "/_/file/"), kernel)
        self.assertTrue(kernel.endswith("/vmlinuz"), kernel)
        self.assertIn(f"kernel {kernel} initrd=initrd.img initrd=fw.img console=ttyS0", lines)
        self.assertIn("initrd --name fw.img http://mirror.invalid/fw.img", lines)
        self.assertEqual(lines[-1], "boot")
        self.assertEqual([e.stage for e in self.boot_log.events(MAC)], ["script"])
        self.assertEqual(self.boot_log.events(MAC)[0].fields, {"arch": "x64-uefi"})

    @defer.inlineCallbacks
    def test_every_local_url_works(self) -> Any:
        """
        Every URL the script names on pxed is served, with the right bytes.
        """
        text = yield self.script(mac=MAC.upper(), arch=0)
        urls = re.findall(r"(http://127\.0\.0\.1:\d+/\S+)", text)
        self.assertEqual(len(urls), 3, urls)
        kernel, initrd, beacon = urls
        response, body = yield self.fetch(kernel)
        self.assertEqual((response.code, body), (200, self.kernel_bytes))
        response, body = yield self.fetch(initrd)
        self.assertEqual((response.code, body), (200, b"initrd contents"))
        self.assertIn("/_/booting?", beacon)
        response, body = yield self.fetch(beacon)
        self.assertEqual((response.code, body), (200, b"ok\n"))
        self.assertEqual([e.stage for e in self.boot_log.events(MAC)], ["script", "booting"])

    @defer.inlineCallbacks
    def test_catalog_filled_by_script(self) -> Any:
        """
        A file the catalog did not know beforehand is reachable once a
        script named it.
        """
        self.start(BootHTTP(self.policy, FileCatalog(), self.boot_log))
        text = yield self.script()
        response, body = yield self.fetch(self.kernel_url(text))
        self.assertEqual((response.code, body), (200, self.kernel_bytes))

    @defer.inlineCallbacks
    def test_unknown_mac_exits(self) -> Any:
        text = yield self.script(mac=OTHER_MAC)
        self.assertTrue(text.startswith("#!ipxe\n"))
        self.assertIn("exit", text)
        self.assertNotIn("kernel", text)
        self.assertNotIn("boot\n", text)
        self.assertEqual(self.boot_log.machines(), [])

    @defer.inlineCallbacks
    def test_default_entry(self) -> Any:
        self.policy.default = BootSpec(str(self.initrd))
        text = yield self.script(mac=OTHER_MAC)
        self.assertTrue(self.kernel_url(text).endswith("/initrd.img"))

    @defer.inlineCallbacks
    def test_configured_address(self) -> Any:
        self.start(BootHTTP(self.policy, self.catalog, self.boot_log, address="192.0.2.7"))
        text = yield self.script()
        port = self.base.rsplit(":", 1)[1]
        self.assertTrue(self.kernel_url(text).startswith(f"http://192.0.2.7:{port}/_/file/"))

    @defer.inlineCallbacks
    def test_post_not_allowed(self) -> Any:
        response, _ = yield self.fetch(f"/_/ipxe?mac={MAC}", method="POST")
        self.assertEqual(response.code, 405)


class FileTests(HTTPTestCase):
    def kernel_path(self) -> str:
        return f"/_/file/{FileCatalog.file_id(str(self.kernel))}/vmlinuz"

    @defer.inlineCallbacks
    def test_content_length(self) -> Any:
        response, body = yield self.fetch(self.kernel_path())
        self.assertEqual(response.code, 200)
        # Twisted's client keeps Content-Length out of the headers, in
        # length (which is UNKNOWN_LENGTH when the server sent none).
        self.assertEqual(response.length, len(self.kernel_bytes))
        self.assertEqual(body, self.kernel_bytes)
        self.assertEqual(response.headers.getRawHeaders(b"content-type"),
                         [b"application/octet-stream"])

    @defer.inlineCallbacks
    def test_range(self) -> Any:
        response, body = yield self.fetch(self.kernel_path(),
                                          headers={b"Range": [b"bytes=1000-65535"]})
        self.assertEqual(response.code, 206)
        self.assertEqual(body, self.kernel_bytes[1000:65536])
        self.assertEqual(response.headers.getRawHeaders(b"content-range"),
                         [f"bytes 1000-65535/{len(self.kernel_bytes)}".encode()])
        self.assertEqual(response.length, 64536)

    @defer.inlineCallbacks
    def test_suffix_range(self) -> Any:
        response, body = yield self.fetch(self.kernel_path(), headers={b"Range": [b"bytes=-10"]})
        self.assertEqual(response.code, 206)
        self.assertEqual(body, self.kernel_bytes[-10:])

    @defer.inlineCallbacks
    def test_head(self) -> Any:
        response, body = yield self.fetch(self.kernel_path(), method="HEAD")
        self.assertEqual(response.code, 200)
        self.assertEqual(body, b"")
        self.assertEqual(response.headers.getRawHeaders(b"content-length"),
                         [str(len(self.kernel_bytes)).encode()])

    @defer.inlineCallbacks
    def test_unknown_id(self) -> Any:
        response, _ = yield self.fetch("/_/file/0123456789abcdef0123/vmlinuz")
        self.assertEqual(response.code, 404)

    @defer.inlineCallbacks
    def test_wrong_name(self) -> Any:
        fid = FileCatalog.file_id(str(self.kernel))
        for name in ("initrd.img", "vmlinuz.efi", "passwd"):
            response, _ = yield self.fetch(f"/_/file/{fid}/{name}")
            self.assertEqual(response.code, 404, name)

    @defer.inlineCallbacks
    def test_no_traversal(self) -> Any:
        for path in ("/_/file/../../etc/passwd", "/etc/passwd", f"/_/file/x{self.kernel}",
                     "/_/file/" + "%2e%2e%2f" * 6 + "etc/passwd"):
            response, body = yield self.fetch(path)
            self.assertEqual(response.code, 404, path)
            self.assertNotIn(b"root:", body)

    @defer.inlineCallbacks
    def test_name_needing_quotes(self) -> Any:
        odd = self.dir / "my kernel+1.img"
        odd.write_bytes(b"odd")
        url = self.catalog.url(self.base, str(odd))
        self.assertIn("my%20kernel", url)
        response, body = yield self.fetch(url)
        self.assertEqual((response.code, body), (200, b"odd"))

    @defer.inlineCallbacks
    def test_file_gone(self) -> Any:
        self.kernel.unlink()
        response, _ = yield self.fetch(self.kernel_path())
        self.assertEqual(response.code, 404)


class BeaconTests(HTTPTestCase):
    @defer.inlineCallbacks
    def test_booting(self) -> Any:
        response, body = yield self.fetch(f"/_/booting?mac={quote(MAC.upper())}")
        self.assertEqual((response.code, body), (200, b"ok\n"))
        events = self.boot_log.events(MAC)
        self.assertEqual([e.stage for e in events], ["booting"])

    @defer.inlineCallbacks
    def test_head(self) -> Any:
        response, _ = yield self.fetch(f"/_/booting?mac={MAC}", method="HEAD")
        self.assertEqual(response.code, 200)
        self.assertEqual([e.stage for e in self.boot_log.events(MAC)], ["booting"])

    @defer.inlineCallbacks
    def test_no_mac(self) -> Any:
        response, body = yield self.fetch("/_/booting")
        self.assertEqual((response.code, body), (200, b"ok\n"))
        self.assertEqual(self.boot_log.machines(), [])


class CatalogTests(unittest.TestCase):
    def test_ids_stable(self) -> None:
        self.assertEqual(FileCatalog.file_id("/srv/vmlinuz"), FileCatalog.file_id("/srv/vmlinuz"))
        self.assertNotEqual(FileCatalog.file_id("/srv/vmlinuz"), FileCatalog.file_id("/srv/x"))
        self.assertRegex(FileCatalog.file_id("/srv/vmlinuz"), r"^[0-9a-f]{20}$")

    def test_url(self) -> None:
        catalog = FileCatalog()
        url = catalog.url("http://h:8", "/srv/vmlinuz")
        fid = FileCatalog.file_id("/srv/vmlinuz")
        self.assertEqual(url, f"http://h:8/_/file/{fid}/vmlinuz")
        self.assertEqual(catalog.get(fid), Path("/srv/vmlinuz"))
        self.assertEqual(catalog.url("http://h:8", "https://x/y"), "https://x/y")
        self.assertIsNone(catalog.get("0" * 20))
