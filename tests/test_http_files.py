"""
Tests for L{pxed.http.files}: signed file IDs, streaming with
Content-Length, Range, HEAD, ETag and If-None-Match, and exports that no
path trick can leave.  Served for real on 127.0.0.1.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.trial import unittest

from pxed.http.app import BootHTTP
from pxed.http.files import ExportRefused, FileCatalog, export_path, export_url
from pxed.signing import Signer
from pxed.testing.http import KEY, HTTPTestCase


class SignedFileTests(HTTPTestCase):
    def kernel_path(self) -> str:
        return self.catalog.url("", str(self.kernel))

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
    def test_large_file_streamed(self) -> Any:
        """
        A file bigger than any buffer arrives whole and exact.
        """
        big = self.dir / "big.img"
        data = os.urandom(1 << 20) * 6
        big.write_bytes(data)
        response, body = yield self.fetch(self.catalog.url("", str(big)))
        self.assertEqual(response.length, len(data))
        self.assertEqual(body, data)

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
        self.assertEqual(len(response.headers.getRawHeaders(b"etag")), 1)

    @defer.inlineCallbacks
    def test_etag(self) -> Any:
        response, _ = yield self.fetch(self.kernel_path())
        [etag] = response.headers.getRawHeaders(b"etag")
        self.assertTrue(etag.startswith(b'"') and etag.endswith(b'"'), etag)
        response, body = yield self.fetch(self.kernel_path(),
                                          headers={b"If-None-Match": [etag]})
        self.assertEqual((response.code, body), (304, b""))
        response, body = yield self.fetch(self.kernel_path(),
                                          headers={b"If-None-Match": [b'"other", ' + etag]})
        self.assertEqual(response.code, 304)
        response, body = yield self.fetch(self.kernel_path(),
                                          headers={b"If-None-Match": [b'"other"']})
        self.assertEqual((response.code, body), (200, self.kernel_bytes))
        # A changed file has a new tag.
        self.kernel.write_bytes(b"new kernel")
        response, body = yield self.fetch(self.kernel_path(),
                                          headers={b"If-None-Match": [etag]})
        self.assertEqual((response.code, body), (200, b"new kernel"))
        self.assertNotEqual(response.headers.getRawHeaders(b"etag"), [etag])

    @defer.inlineCallbacks
    def test_tampered_ids(self) -> Any:
        """
        An ID changed in any way, or signed for another purpose, or by
        another key, serves nothing.
        """
        good = self.kernel_path()
        token = good.split("/")[3]
        body, tag = token.split(".")
        passwd = Signer(KEY).sign("once", "/etc/passwd")
        other_key = FileCatalog(Signer(b"q" * 32)).url("", "/etc/passwd")
        flipped = body[:-1] + ("A" if body[-1] != "A" else "B")
        for path in (f"/_/file/{flipped}.{tag}/vmlinuz", f"/_/file/{body}.{tag[::-1]}/vmlinuz",
                     f"/_/file/{body}/vmlinuz", f"/_/file/{passwd}/passwd", other_key,
                     "/_/file/0123456789abcdef0123/vmlinuz", f"/_/file/.{tag}/vmlinuz"):
            response, content = yield self.fetch(path)
            self.assertEqual(response.code, 404, path)
            self.assertNotIn(b"root:", content)

    @defer.inlineCallbacks
    def test_max_age(self) -> Any:
        """
        With policy.signing.max_age, a file URL works for that long after
        it was issued, then never again; IDs without a time are refused.
        """
        now = [1_000_000.0]
        timed = FileCatalog(self.signer, max_age=3600, clock=lambda: now[0])
        self.start(BootHTTP(self.policy, timed, self.boot_log, store=self.store))
        path = timed.url("", str(self.kernel))
        plain = self.kernel_path()
        response, body = yield self.fetch(path)
        self.assertEqual((response.code, body), (200, self.kernel_bytes))
        response, _ = yield self.fetch(plain)
        self.assertEqual(response.code, 404)
        now[0] += 3600
        response, _ = yield self.fetch(path)
        self.assertEqual(response.code, 200)
        now[0] += 1
        response, _ = yield self.fetch(path)
        self.assertEqual(response.code, 404)
        # Issued too far in the future (another pxed's clock): refused too.
        ahead = FileCatalog(self.signer, max_age=3600, clock=lambda: now[0] + 3600)
        response, _ = yield self.fetch(ahead.url("", str(self.kernel)))
        self.assertEqual(response.code, 404)

    @defer.inlineCallbacks
    def test_wrong_name(self) -> Any:
        token = self.kernel_path().split("/")[3]
        for name in ("initrd.img", "vmlinuz.efi", "passwd"):
            response, _ = yield self.fetch(f"/_/file/{token}/{name}")
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
        path = self.kernel_path()
        self.kernel.unlink()
        response, _ = yield self.fetch(path)
        self.assertEqual(response.code, 404)

    @defer.inlineCallbacks
    def test_not_regular_files(self) -> Any:
        """
        A signed path that is (now) a directory or a FIFO is refused
        without blocking the server.
        """
        fifo = self.dir / "fifo"
        os.mkfifo(fifo)
        for path in (self.dir, fifo):
            response, _ = yield self.fetch(self.catalog.url("", str(path)))
            self.assertEqual(response.code, 404, path)

    @defer.inlineCallbacks
    def test_remote_not_proxied_unless_configured(self) -> Any:
        """
        Without the proxy, remote URLs go to the client as they are, and a
        signed remote ID (from a time the proxy was on) serves nothing.
        """
        self.assertEqual(self.catalog.url("http://b", "http://h/x"), "http://h/x")
        proxied = FileCatalog(self.signer, proxy_remote=True).url("", "http://127.0.0.1:9/x")
        self.assertTrue(proxied.startswith("/_/file/"), proxied)
        response, _ = yield self.fetch(proxied)
        self.assertEqual(response.code, 404)


class ExportTests(HTTPTestCase):
    """
    Exported directories: served read-only, and never a byte outside.
    """

    def setUp(self) -> None:
        super().setUp()
        self.root = self.dir / "export"
        (self.root / "sub").mkdir(parents=True)
        (self.root / "user-data").write_text("#cloud-config\n")
        (self.root / "sub" / "a b.cfg").write_text("spaced\n")
        self.secret = self.dir / "secret.txt"
        self.secret.write_text("root:secret\n")
        os.symlink(self.secret, self.root / "escape")
        os.symlink(self.dir, self.root / "updir")
        os.symlink(self.root / "user-data", self.root / "inside")
        self.start(BootHTTP(self.policy, self.catalog, self.boot_log,
                            exports={"seed": self.root}))

    @defer.inlineCallbacks
    def test_serves(self) -> Any:
        response, body = yield self.fetch("/_/export/seed/user-data")
        self.assertEqual((response.code, body), (200, b"#cloud-config\n"))
        self.assertEqual(response.length, len(body))
        response, body = yield self.fetch("/_/export/seed/sub/a%20b.cfg")
        self.assertEqual((response.code, body), (200, b"spaced\n"))
        response, body = yield self.fetch("/_/export/seed/inside")
        self.assertEqual((response.code, body), (200, b"#cloud-config\n"))
        response, body = yield self.fetch("/_/export/seed/user-data", method="HEAD")
        self.assertEqual((response.code, body), (200, b""))
        response, body = yield self.fetch("/_/export/seed/user-data",
                                          headers={b"Range": [b"bytes=1-5"]})
        self.assertEqual((response.code, body), (206, b"cloud"))

    @defer.inlineCallbacks
    def test_traversal(self) -> Any:
        attempts = [
            "/_/export/seed/../secret.txt",
            "/_/export/seed/%2e%2e/secret.txt",
            "/_/export/seed/%2E%2E%2Fsecret.txt",
            "/_/export/seed/sub%2F..%2F..%2Fsecret.txt",
            "/_/export/seed/sub%5C..%5C..%5Csecret.txt",
            "/_/export/seed/..%5Csecret.txt",
            f"/_/export/seed/{self.secret}",
            f"/_/export/seed/%2F{str(self.secret)[1:]}",
            "/_/export/seed//etc/passwd",
            "/_/export/seed/escape",
            "/_/export/seed/updir/secret.txt",
            "/_/export/seed/user-data%00.txt",
            "/_/export/seed/user-data%00",
            "/_/export/seed/%ff%fe",
            "/_/export/seed/sub",
            "/_/export/seed/",
            "/_/export/seed",
            "/_/export/nope/user-data",
            "/_/export/%2e%2e/secret.txt",
            "/_/export/seed/./user-data",
        ]
        for path in attempts:
            response, body = yield self.fetch(path)
            self.assertEqual(response.code, 404, path)
            self.assertNotIn(b"root:", body, path)
            self.assertNotIn(b"cloud-config", body, path)


class ExportPathTests(unittest.TestCase):
    """
    The pure mapping, for the cases an HTTP client cannot even send.
    """

    def setUp(self) -> None:
        self.root = Path(self.mktemp()).absolute()
        self.root.mkdir()
        (self.root / "ok").write_text("ok")
        self.exports = {"e": self.root}

    def test_ok(self) -> None:
        self.assertEqual(export_path(self.exports, b"e/ok"), self.root / "ok")

    def test_refused(self) -> None:
        for raw in (b"e/../ok", b"e/a/../ok", b"e/.", b"e//ok", b"e/ok\x00", b"e/%00ok",
                    b"e/%2e%2e%2fok", b"e", b"x/ok", b"e/\xff", b"e/missing"):
            self.assertRaises(ExportRefused, export_path, self.exports, raw)

    def test_url(self) -> None:
        self.assertEqual(export_url("http://h", "e"), "http://h/_/export/e/")
        self.assertEqual(export_url("http://h", "e", "a/b c"), "http://h/_/export/e/a/b%20c")
        self.assertEqual(export_url("http://h", "e", "dir/"), "http://h/_/export/e/dir/")
