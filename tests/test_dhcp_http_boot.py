"""
UEFI HTTP Boot, unit level: the program route of pxed's HTTP server,
served on 127.0.0.1 and fetched with treq as EDK2 would (HEAD for the
size, then GET).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import treq
from twisted.internet import defer
from twisted.trial import unittest

from pxed.http.app import BootHTTP
from pxed.http.files import FileCatalog
from pxed.policy import StaticPolicy
from pxed.signing import Signer
from pxed.state import MemoryBootLog
from pxed.testing.http import listen_on_loopback

EFI = b"MZ" + bytes(range(256)) * 8
TIMEOUT = 10


class ProgramRouteTests(unittest.TestCase):
    timeout = 30

    def setUp(self) -> None:
        base = Path(self.mktemp()).absolute()
        base.mkdir()
        self.efi = base / "snponly.efi"
        self.efi.write_bytes(EFI)
        self.kpxe = base / "undionly.kpxe"
        self.kpxe.write_bytes(b"kpxe")
        app = BootHTTP(StaticPolicy({}), FileCatalog(Signer(b"k" * 32)), MemoryBootLog(),
                       programs={"snponly.efi": self.efi, "undionly.kpxe": self.kpxe})
        self.base, self.pool = listen_on_loopback(self, app.resource())

    @defer.inlineCallbacks
    def get(self, path: str, method: str = "GET") -> Any:
        response = yield treq.request(method, self.base + path, pool=self.pool, timeout=TIMEOUT)
        body = yield treq.content(response)
        headers = dict(response.headers.getAllRawHeaders())
        # Twisted's client takes Content-Length out of the headers into
        # the response's length.
        if isinstance(response.length, int) and b"Content-Length" not in headers:
            headers[b"Content-Length"] = [str(response.length).encode()]
        return response.code, headers, body

    @defer.inlineCallbacks
    def test_efi_program(self) -> Any:
        code, headers, body = yield self.get("/_/boot/snponly.efi")
        self.assertEqual(code, 200)
        self.assertEqual(body, EFI)
        self.assertEqual(headers[b"Content-Type"], [b"application/efi"])
        self.assertEqual(headers[b"Content-Length"], [str(len(EFI)).encode()])

    @defer.inlineCallbacks
    def test_head_gives_size(self) -> Any:
        """
        EDK2 asks with HEAD first ("retrieve NBP file size").
        """
        code, headers, body = yield self.get("/_/boot/snponly.efi", "HEAD")
        self.assertEqual((code, body), (200, b""))
        self.assertEqual(headers[b"Content-Length"], [str(len(EFI)).encode()])

    @defer.inlineCallbacks
    def test_other_program(self) -> Any:
        code, headers, body = yield self.get("/_/boot/undionly.kpxe")
        self.assertEqual((code, body), (200, b"kpxe"))
        self.assertEqual(headers[b"Content-Type"], [b"application/octet-stream"])

    @defer.inlineCallbacks
    def test_unknown_names(self) -> Any:
        for path in ("/_/boot/ipxe.efi", "/_/boot/..%2Fsnponly.efi", "/_/boot/",
                     "/_/boot/SNPONLY.EFI"):
            code, _, body = yield self.get(path)
            self.assertEqual(code, 404, path)
            self.assertNotEqual(body, EFI)
