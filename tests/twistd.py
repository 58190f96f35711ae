"""
Running this checkout's C{twistd} plugins as child processes, for the
tests of C{twistd pxed-tftp} (one process, and several workers).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.internet.protocol import ProcessProtocol

__all__ = ["REPO", "LOCAL", "TWISTD", "_Ended", "_env", "_free_port"]

REPO = Path(__file__).resolve().parents[1]
LOCAL = "127.0.0.1"
TWISTD = "from twisted.scripts.twistd import run; run()"


def _env() -> dict[str, str]:
    """This checkout first on the path: the processes run the pxed under test."""
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{path}" if path else str(REPO)}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOCAL, 0))
        port: int = s.getsockname()[1]
    return port


class _Ended(ProcessProtocol):
    """Collects a child's output and fires C{done} when it has exited."""

    def __init__(self) -> None:
        self.done: defer.Deferred[None] = defer.Deferred()
        self.output = b""
        self.reason: Any = None

    def outReceived(self, data: bytes) -> None:
        self.output += data

    errReceived = outReceived

    def processEnded(self, reason: Any) -> None:
        self.reason = reason
        self.done.callback(None)
