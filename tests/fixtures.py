"""
What several test modules share and that only makes sense in this
checkout (the example configuration, the configuration tests' base case,
the stand-in bootloaders): so test modules import this, never each other.
Fakes and builders that do not depend on the checkout are in
L{pxed.testing}.
"""

from __future__ import annotations

import socket
import textwrap
from collections.abc import Sized
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from pxed import config
from pxed.config import Config, ConfigError, load_config, parse_config

#: The commented example configuration of the checkout.
EXAMPLE = Path(__file__).parents[1] / "etc" / "pxed.yaml"

#: Debian's iPXE file names for the two architectures served by default.
BOOTLOADER_NAMES = (("x86-bios", "undionly.kpxe"), ("x64-uefi", "snponly.efi"))


def write_bootloaders(base: Path) -> dict[str, Path]:
    """
    Stand-ins for the default bootloaders in C{base} (each file holds its
    own name), as the C{bootloaders} mapping the responder takes.
    """
    loaders = {}
    for slug, name in BOOTLOADER_NAMES:
        (base / name).write_bytes(name.encode())
        loaders[slug] = base / name
    return loaders


def stand_in_server(case: unittest.TestCase) -> tuple[socket.socket, tuple[str, int]]:
    """
    For the DHCP benchmarks' own tests: a UDP socket on 127.0.0.1 (5 s
    timeout, closed with the test) to play the server, and a free address
    of 127.0.0.1 for the benchmark's relay to bind instead of port 67.
    """
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    case.addCleanup(server.close)
    server.bind(("127.0.0.1", 0))
    server.settimeout(5)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        relay: tuple[str, int] = probe.getsockname()
    return server, relay


@defer.inlineCallbacks
def settle(ends: Sized, n: int) -> Any:
    """
    Wait (10 s at most) until C{ends} holds C{n} items.  A TFTP server reports
    each transfer's end once its transfer port has closed, a moment after
    the client is done, and back-to-back transfers may report in either
    order.
    """
    for _ in range(200):
        if len(ends) >= n:
            return
        yield task.deferLater(reactor, 0.05, lambda: None)  # type: ignore[arg-type]
    raise AssertionError(f"{len(ends)} transfers ended, expected {n}")


class ConfigTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).absolute()
        self.dir.mkdir()
        self.kernel = self.file("vmlinuz")
        self.initrd = self.file("initrd.img")
        self.undionly = self.file("undionly.kpxe")
        self.snponly = self.file("snponly.efi")
        # The defaults must not depend on what this machine has installed.
        self.patch(config.server, "DEFAULT_BOOTLOADERS",
                   {"x86-bios": self.undionly, "x64-uefi": self.snponly})

    def file(self, name: str) -> Path:
        path = self.dir / name
        path.write_bytes(name.encode())
        return path

    def load(self, text: str) -> Config:
        path = self.dir / "pxed.yaml"
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return load_config(path)

    def assertError(self, data: Any, key: str, *problem: str) -> ConfigError:
        """
        Parsing C{data} fails with an error at C{key} whose message holds
        each of C{problem}.
        """
        error = self.assertRaises(ConfigError, parse_config, data, "site.yaml")
        self.assertEqual(error.key, key)
        self.assertEqual(error.source, "site.yaml")
        message = str(error)
        self.assertTrue(message.startswith(f"site.yaml: {key}: "), message)
        for text in problem:
            self.assertIn(text, message)
        return error

    def boot(self, **entry: Any) -> dict[str, Any]:
        spec = {"kernel": str(self.kernel)}
        spec.update(entry)
        return {"boot": {"default": spec}}
