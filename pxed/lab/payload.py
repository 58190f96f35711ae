# -*- test-case-name: tests.test_lab -*-
"""
The payload a lab client boots: Debian's kernel and a tiny busybox initramfs.

The initramfs proves that a boot went all the way through: its ``/init`` prints
L{MARKER} followed by the token found on the kernel command line, so a test
that puts a fresh random token into the boot script knows that *this* boot, and
not a stale log, reached userspace.  It then powers the machine off, which
ends QEMU.

Only the standard library is used: the cpio archive is written here rather
than with the C{cpio} binary, so the lab needs no extra packages.
"""

from __future__ import annotations

import gzip
import io
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

MARKER = "PXED-BOOT-OK token="
"""The line prefix /init prints on the console; the token follows it."""

TOKEN_ARGUMENT = "pxed.token"
"""Kernel command line argument that carries the token (C{pxed.token=XYZ})."""

NO_TOKEN_LINE = "PXED-BOOT-NO-TOKEN"
"""Printed instead of L{MARKER} when the command line had no token, so a
search for L{MARKER} cannot succeed by accident."""

INIT_SCRIPT = f"""#!/bin/busybox sh
# pxed lab /init: report the boot token on the console, then power off.
B=/bin/busybox
$B mount -t proc proc /proc
$B mount -t sysfs sysfs /sys
$B mount -t devtmpfs devtmpfs /dev 2>/dev/null
token=""
for arg in $($B cat /proc/cmdline); do
    case "$arg" in
        {TOKEN_ARGUMENT}=*) token="${{arg#{TOKEN_ARGUMENT}=}}" ;;
    esac
done
if [ -n "$token" ]; then
    line="{MARKER}$token"
else
    line="{NO_TOKEN_LINE}"
fi
echo "$line" > /dev/console 2>/dev/null || echo "$line"
$B sync
$B poweroff -f
# poweroff should not return; never let init exit (that would panic the kernel).
while :; do $B sleep 3600; done
"""


def _version_key(path: Path) -> list[tuple[int, int | str]]:
    """
    Sort key that orders C{vmlinuz-6.1.0-9} before C{vmlinuz-6.1.0-10}.

    Plain string order would pick the wrong "newest" kernel as soon as a
    version component reaches two digits.
    """
    parts = re.split(r"(\d+)", path.name)
    return [(0, int(p)) if p.isdigit() else (1, p) for p in parts if p]


def find_kernel(boot: Path = Path("/boot")) -> Path:
    """
    Return the newest C{vmlinuz-*} in C{/boot}.

    @raise FileNotFoundError: when there is none, naming the package to install.
    """
    kernels = sorted(boot.glob("vmlinuz-*"), key=_version_key)
    if not kernels:
        raise FileNotFoundError(
            f"no kernel {boot}/vmlinuz-* found: install the Debian package "
            "linux-image-amd64 (apt-get install linux-image-amd64)"
        )
    return kernels[-1]


#: Where C{scripts/setup} unpacks Debian's arm64 packages (never installed).
ARM64_ROOT = Path("/usr/local/lib/pxed/arm64")


def arm64_payload(root: Path = ARM64_ROOT) -> tuple[Path, Path]:
    """
    The arm64 kernel (Debian's C{linux-image-*-arm64}: an uncompressed
    C{Image} with an EFI stub) and static busybox unpacked below C{root}.

    @raise FileNotFoundError: naming what is missing and C{scripts/setup}.
    """
    kernels = sorted((root / "boot").glob("vmlinuz-*"), key=_version_key)
    busybox = root / "bin" / "busybox"
    if not kernels or not busybox.is_file():
        raise FileNotFoundError(
            f"no arm64 kernel and busybox below {root}: run scripts/setup (it unpacks Debian's "
            "linux-image-arm64 and busybox-static for arm64 there)"
        )
    return kernels[-1], busybox


@dataclass(frozen=True)
class CpioEntry:
    """One member of a newc archive: a directory, regular file or device node."""

    name: str
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


def _pad4(n: int) -> bytes:
    return b"\0" * (-n % 4)


def write_newc(entries: Iterable[CpioEntry]) -> bytes:
    """
    Serialise C{entries} as a cpio archive in the "newc" (070701) format.

    That is the only format the kernel's initramfs unpacker accepts: a 110-byte
    ASCII header of 13 eight-digit hex fields, the NUL-terminated name padded
    to a multiple of 4, the data padded to a multiple of 4, and a final
    C{TRAILER!!!} entry.
    """
    out = io.BytesIO()
    members = [*entries, CpioEntry("TRAILER!!!", 0)]
    for ino, entry in enumerate(members, start=1):
        name = entry.name.lstrip("/").encode() + b"\0"
        is_trailer = entry.name == "TRAILER!!!"
        fields = (
            0 if is_trailer else ino,  # c_ino
            entry.mode,  # c_mode
            0,  # c_uid
            0,  # c_gid
            2 if stat.S_ISDIR(entry.mode) else 1,  # c_nlink
            0,  # c_mtime: fixed, so the archive is reproducible
            len(entry.data),  # c_filesize
            0,  # c_devmajor
            0,  # c_devminor
            entry.rdev[0],  # c_rdevmajor
            entry.rdev[1],  # c_rdevminor
            len(name),  # c_namesize, NUL included
            0,  # c_check: only used by the "crc" variant
        )
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        out.write(header + name + _pad4(len(header) + len(name)))
        out.write(entry.data + _pad4(len(entry.data)))
    return out.getvalue()


def initrd_entries(busybox: Path) -> list[CpioEntry]:
    """
    The members of the lab initramfs.

    C{/dev/console} is included as a device node because the kernel opens it
    for init's stdin/stdout before C{/init} runs and before devtmpfs can be
    mounted; without it the marker line would go nowhere.
    """
    directory = stat.S_IFDIR | 0o755
    return [
        CpioEntry("bin", directory),
        CpioEntry("dev", directory),
        CpioEntry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)),
        CpioEntry("dev/null", stat.S_IFCHR | 0o666, rdev=(1, 3)),
        CpioEntry("proc", directory),
        CpioEntry("sys", directory),
        CpioEntry("bin/busybox", stat.S_IFREG | 0o755, busybox.read_bytes()),
        CpioEntry("init", stat.S_IFREG | 0o755, INIT_SCRIPT.encode()),
    ]


def build_initrd(path: Path, busybox: Path = Path("/usr/bin/busybox")) -> Path:
    """
    Write the gzip'd newc initramfs to C{path} and return C{path}.

    C{busybox} must be statically linked: the initramfs has no C library.

    @raise FileNotFoundError: when busybox is missing, naming the package.
    """
    if not busybox.is_file():
        raise FileNotFoundError(
            f"{busybox} not found: install the Debian package busybox-static"
        )
    archive = write_newc(initrd_entries(busybox))
    path.write_bytes(gzip.compress(archive, compresslevel=6, mtime=0))
    return path
