"""
Files the DHCP and responder tests need on disk.
"""

from __future__ import annotations

from pathlib import Path

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
