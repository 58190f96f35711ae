"""
Clearing a machine's 'once' flags: C{POST /_/machines/MAC/reinstall} with
the admin token, through the whole HTTP stack C{makeBootService} builds
(on 127.0.0.1), and C{pxed reinstall MAC} against that server or, with no
server, the state file.
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
from pathlib import Path
from typing import Any

import treq
from twisted.internet import defer, reactor, threads
from twisted.trial import unittest
from twisted.web.client import HTTPConnectionPool

from pxed.cli import main
from pxed.config import load_config
from pxed.service import makeBootService

MAC = "52:54:00:12:34:56"
TOKEN = "reinstall-token-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ReinstallTestCase(unittest.TestCase):
    timeout = 60

    def write_config(self, admin: bool = True, port: int | None = None) -> Path:
        base = Path(self.mktemp()).absolute()
        base.mkdir()
        for name in ("undionly.kpxe", "snponly.efi", "vmlinuz"):
            (base / name).write_bytes(b"x")
        self.state = base / "state.json"
        self.state.write_text(json.dumps({"version": 1, "once": {
            MAC: ["install", "firmware"], "52:54:00:00:00:01": ["install"]}}))
        self.port = port or free_port()
        text = (f"server: {{address: 127.0.0.1, ports: {{dhcp: 0, pxe: 0, tftp: 0, "
                f"http: {self.port}}}}}\n"
                f"bootloaders: {{x86-bios: {base}/undionly.kpxe, x64-uefi: {base}/snponly.efi}}\n"
                "policy:\n"
                f"  state_file: {self.state}\n"
                "  rules:\n"
                "  - {name: install, once: true, match: {firmware: ipxe}, "
                f"linux: {{kernel: {base}/vmlinuz}}}}\n")
        if admin:
            text += f"  admin: {{token: {TOKEN}}}\n"
        path = base / "pxed.yaml"
        path.write_text(text)
        return path

    def flags(self) -> dict[str, list[str]]:
        return dict(json.loads(self.state.read_text())["once"])

    def serve(self, path: Path) -> Any:
        top = makeBootService(load_config(path))
        http = top.getServiceNamed("http")  # type: ignore[attr-defined]
        http.startService()
        self.addCleanup(http.stopService)
        self.store = top.getServiceNamed("policy").store  # type: ignore[attr-defined]
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(self.pool.closeCachedConnections)
        return f"http://127.0.0.1:{self.port}"

    @defer.inlineCallbacks
    def post(self, url: str, token: str | None = TOKEN) -> Any:
        headers = {b"Authorization": [f"Bearer {token}".encode()]} if token else {}
        response = yield treq.post(url, headers=headers, pool=self.pool, timeout=10)
        body = yield treq.content(response)
        return response.code, body.decode()


class EndpointTests(ReinstallTestCase):
    @defer.inlineCallbacks
    def test_token_required_then_cleared(self) -> Any:
        base = self.serve(self.write_config())
        url = f"{base}/_/machines/{MAC}/reinstall"
        for token in (None, "wrong", TOKEN + "x"):
            code, _ = yield self.post(url, token)
            self.assertEqual(code, 403, token)
        self.assertEqual(self.flags()[MAC], ["firmware", "install"])
        code, body = yield self.post(url)
        self.assertEqual((code, body), (200, f"{MAC}: cleared all 'once' flags\n"))
        self.assertNotIn(MAC, self.flags())
        self.assertIn("52:54:00:00:00:01", self.flags())  # other machines keep theirs
        done = yield self.store.once_done(MAC, "install")
        self.assertFalse(done)

    @defer.inlineCallbacks
    def test_one_rule_and_bad_mac(self) -> Any:
        base = self.serve(self.write_config())
        code, body = yield self.post(f"{base}/_/machines/52-54-00-12-34-56/reinstall?rule=install")
        self.assertEqual((code, body), (200, f"{MAC}: cleared the 'once' flag of rule install\n"))
        self.assertEqual(self.flags()[MAC], ["firmware"])
        code, _ = yield self.post(f"{base}/_/machines/nonsense/reinstall")
        self.assertEqual(code, 400)
        # The status API beside it is still read-only, and still answers.
        response = yield treq.get(f"{base}/_/machines", pool=self.pool)
        yield treq.content(response)
        self.assertEqual(response.code, 200)
        code, _ = yield self.post(f"{base}/_/machines/{MAC}")
        self.assertEqual(code, 405)
        metrics = yield treq.get(f"{base}/metrics", pool=self.pool)
        text = (yield treq.content(metrics)).decode()
        self.assertIn('pxed_http_requests_total{code="200",kind="admin"} 1.0', text)

    @defer.inlineCallbacks
    def test_off_without_token(self) -> Any:
        base = self.serve(self.write_config(admin=False))
        code, _ = yield self.post(f"{base}/_/machines/{MAC}/reinstall")
        self.assertEqual(code, 404)
        self.assertEqual(self.flags()[MAC], ["firmware", "install"])


class CommandTests(ReinstallTestCase):
    def run_cli(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = main(["reinstall", *argv], out, err)
        return code, out.getvalue(), err.getvalue()

    @defer.inlineCallbacks
    def test_through_the_running_server(self) -> Any:
        """
        With a token, the command asks the server, whose memory is what
        counts (it would rewrite the file from it).
        """
        path = self.write_config()
        self.serve(path)
        code, out, err = yield threads.deferToThread(self.run_cli, MAC, "--config", str(path))
        self.assertEqual((code, out, err), (0, f"pxed: {MAC}: cleared all 'once' flags\n", ""))
        done = yield self.store.once_done(MAC, "firmware")
        self.assertFalse(done)
        self.assertNotIn(MAC, self.flags())

    def test_no_server_edits_the_state_file(self) -> None:
        path = self.write_config()
        code, out, err = self.run_cli(MAC, "--config", str(path), "--rule", "install")
        self.assertEqual(code, 0, err)
        self.assertIn(f"no pxed answers at http://127.0.0.1:{self.port}; {MAC}: cleared the "
                      f"'once' flag of rule install in {self.state}", out)
        self.assertEqual(self.flags()[MAC], ["firmware"])

    def test_without_token_edits_the_file_and_says_reload(self) -> None:
        path = self.write_config(admin=False)
        code, out, _ = self.run_cli("52-54-00-12-34-56", "--config", str(path))
        self.assertEqual(code, 0)
        self.assertIn("systemctl reload pxed", out)
        self.assertNotIn(MAC, self.flags())

    def test_bad_mac(self) -> None:
        path = self.write_config()
        err = io.StringIO()
        with contextlib.redirect_stderr(err), self.assertRaises(SystemExit):
            main(["reinstall", "nonsense", "--config", str(path)], io.StringIO(), io.StringIO())
        self.assertIn("'nonsense' is not a MAC address", err.getvalue())
