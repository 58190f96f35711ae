"""
A TFTP server on 127.0.0.1 and the real clients (curl, tftp-hpa, atftp)
run against it, for the interoperability and upload tests.  The clients
come from Debian packages that C{scripts/setup} installs: a missing one
fails the test, never skips it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from twisted.internet import defer, reactor
from twisted.internet.utils import getProcessOutputAndValue

from pxed.tftp.protocol import TFTPServerProtocol
from pxed.tftp.session import TransferResult
from pxed.tftp.source import FilesystemSource

__all__ = ["LOCAL", "InteropMixin"]

LOCAL = "127.0.0.1"
TIMEOUT = shutil.which("timeout")


class InteropMixin:
    """Server on loopback plus a helper to run a client command."""

    timeout = 60
    #: The programs the tests run, beside timeout(1).
    tools: tuple[str, ...] = ()

    def setUp(self) -> None:
        _require("timeout", *self.tools)
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


def _require(*tools: str) -> None:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        raise AssertionError(f"missing {', '.join(missing)}: run scripts/setup")
