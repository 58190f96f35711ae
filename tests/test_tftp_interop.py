"""
Interoperability of L{pxed.tftp.protocol} with real TFTP clients (curl,
tftp-hpa, atftp) on 127.0.0.1.  Each client runs as a child process while
the reactor serves it; every run is bounded by C{timeout(1)}.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from pxed.tftp.protocol import TFTPServerProtocol
from pxed.tftp.session import TransferResult
from pxed.tftp.source import FilesystemSource

LOCAL = "127.0.0.1"
TIMEOUT = shutil.which("timeout")


class InteropMixin:
    """Server on loopback plus a helper to run a client command."""

    timeout = 60

    def setUp(self) -> None:
        self.root = Path(self.mktemp()).absolute()  # type: ignore[attr-defined]
        self.root.mkdir()
        self.out = self.root.parent / "out"
        self.out.mkdir()
        self.files = {
            "odd.bin": os.urandom(1_000_003),
            "exact512.bin": os.urandom(512 * 40),
            "exact1468.bin": os.urandom(1468 * 30),
            "one.txt": b"x",
            "empty": b"",
        }
        for name, content in self.files.items():
            (self.root / name).write_bytes(content)
        self.ends: list[TransferResult] = []
        self.server = TFTPServerProtocol(
            FilesystemSource(self.root),
            reactor,
            on_transfer_end=lambda peer, name, result: self.ends.append(result),
        )
        self.port = reactor.listenUDP(0, self.server, interface=LOCAL)  # type: ignore[attr-defined]
        self.addCleanup(self.port.stopListening)  # type: ignore[attr-defined]
        self.portNumber = self.port.getHost().port

    def runClient(self, *argv: str) -> defer.Deferred[tuple[bytes, bytes, int]]:
        assert TIMEOUT is not None
        return getProcessOutputAndValue(
            TIMEOUT, ["30", *argv], env=dict(os.environ), path=str(self.out), reactor=reactor
        )

    def check(self, name: str, output: str = "got") -> None:
        got = (self.out / output).read_bytes()
        assert got == self.files[name], (
            f"{name}: {len(got)} bytes, expected {len(self.files[name])}"
        )


def _sleep(seconds: float) -> defer.Deferred[None]:
    d: defer.Deferred[None] = defer.Deferred()
    reactor.callLater(seconds, d.callback, None)  # type: ignore[attr-defined]
    return d


@defer.inlineCallbacks
def _settle(ends: list[TransferResult], n: int) -> Any:
    for _ in range(200):
        if len(ends) >= n:
            return
        yield _sleep(0.05)
    raise AssertionError(f"{len(ends)} transfers ended, expected {n}")


class CurlTests(InteropMixin, TestCase):
    if not shutil.which("curl") or not TIMEOUT:
        skip = "curl not installed"

    def url(self, name: str) -> str:
        return f"tftp://{LOCAL}:{self.portNumber}/{name}"

    @defer.inlineCallbacks
    def test_files(self) -> Any:
        # curl refuses an OACK with tsize 0 ("invalid tsize"), which is what
        # an empty file correctly gets, so it fetches that one without options.
        runs = [
            (name, ["--tftp-blksize", b])
            for name in self.files
            if name != "empty"
            for b in ("512", "1468")
        ] + [("empty", ["--tftp-no-options"])]
        for name, args in runs:
            out, err, code = yield self.runClient(
                "curl", "-s", "-S", self.url(name), *args, "-o", "got"
            )
            self.assertEqual(code, 0, err)
            self.check(name)
        yield _settle(self.ends, len(runs))
        self.assertEqual({r.outcome for r in self.ends}, {"complete"})

    @defer.inlineCallbacks
    def test_notFound(self) -> Any:
        out, err, code = yield self.runClient("curl", "-s", "-S", self.url("missing"), "-o", "got")
        self.assertEqual(code, 68)  # CURLE_TFTP_NOTFOUND

    @defer.inlineCallbacks
    def test_rollover(self) -> Any:
        """curl accepts block numbers wrapping to 0."""
        content = os.urandom(8 * 65540 + 5)
        (self.root / "huge").write_bytes(content)
        self.files["huge"] = content
        out, err, code = yield self.runClient(
            "curl", "-s", "-S", self.url("huge"), "--tftp-blksize", "8", "-o", "got"
        )
        self.assertEqual(code, 0, err)
        self.check("huge")
        yield _settle(self.ends, 1)


class TftpHpaTests(InteropMixin, TestCase):
    if not shutil.which("tftp") or not TIMEOUT:
        skip = "tftp-hpa not installed"

    @defer.inlineCallbacks
    def test_files(self) -> Any:
        for name in self.files:
            out, err, code = yield self.runClient(
                "tftp", LOCAL, str(self.portNumber), "-m", "binary", "-c", "get", name, "got"
            )
            self.assertEqual(code, 0, err)
            self.assertEqual(out + err, b"")
            self.check(name)
        yield _settle(self.ends, len(self.files))
        self.assertEqual({r.outcome for r in self.ends}, {"complete"})

    @defer.inlineCallbacks
    def test_rollover(self) -> Any:
        """tftp-hpa (no options: 512-byte blocks) accepts block numbers wrapping to 0."""
        content = os.urandom(512 * 65540 + 7)
        (self.root / "huge").write_bytes(content)
        self.files["huge"] = content
        out, err, code = yield self.runClient(
            "tftp", LOCAL, str(self.portNumber), "-m", "binary", "-c", "get", "huge", "got"
        )
        self.assertEqual(out + err, b"")
        self.check("huge")
        yield _settle(self.ends, 1)
        self.assertEqual(self.ends[0].blocks, 65541)

    @defer.inlineCallbacks
    def test_notFound(self) -> Any:
        out, err, code = yield self.runClient(
            "tftp", LOCAL, str(self.portNumber), "-m", "binary", "-c", "get", "missing", "got"
        )
        self.assertIn(b"File not found", out + err)


class AtftpTests(InteropMixin, TestCase):
    if not shutil.which("atftp") or not TIMEOUT:
        skip = "atftp not installed"

    @defer.inlineCallbacks
    def test_windowsize(self) -> Any:
        for name in self.files:
            out, err, code = yield self.runClient(
                "atftp",
                "--option",
                "windowsize 8",
                "--option",
                "blksize 1428",
                "-g",
                "-r",
                name,
                "-l",
                "got",
                LOCAL,
                str(self.portNumber),
            )
            self.assertEqual(code, 0, err)
            self.check(name)
        yield _settle(self.ends, len(self.files))
        self.assertEqual(
            {(r.outcome, r.windowsize, r.blksize) for r in self.ends}, {("complete", 8, 1428)}
        )

    @defer.inlineCallbacks
    def test_tsize(self) -> Any:
        out, err, code = yield self.runClient(
            "atftp",
            "--option",
            "tsize 0",
            "-g",
            "-r",
            "odd.bin",
            "-l",
            "got",
            LOCAL,
            str(self.portNumber),
        )
        self.assertEqual(code, 0, err)
        self.check("odd.bin")
        yield _settle(self.ends, 1)
        self.assertEqual(self.ends[0].tsize, 1_000_003)
