"""
Files the DHCP and responder tests need on disk.
"""

from __future__ import annotations

from collections.abc import Sized
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor, task

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
