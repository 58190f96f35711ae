"""
The GRUB image tests' workspace: Debian's arm64-efi modules (which
C{scripts/setup} unpacks; missing ones fail the test, never skip it) and a
C{grub-mkimage} wrapper that counts its builds.  Shared by the image and
the ARM64 tests.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from twisted.trial.unittest import TestCase

from pxed.grub.image import ARM64_MODULE_DIRS, GrubImageCache

__all__ = ["Workspace", "real_modules", "real_mkimage"]


def real_modules() -> Path:
    for candidate in ARM64_MODULE_DIRS:
        if (candidate / "moddep.lst").is_file():
            return candidate
    raise AssertionError("no arm64-efi GRUB modules: run scripts/setup")


def real_mkimage() -> str:
    found = shutil.which("grub-mkimage")
    if found is None:
        raise AssertionError("grub-mkimage is missing: run scripts/setup")
    return found


class Workspace:
    """
    A module directory of symlinks to the real modules (so a test can
    change one module cheaply), a cache directory, and a C{grub-mkimage}
    wrapper that counts its builds.
    """

    def __init__(self, case: TestCase) -> None:
        self.root = Path(case.mktemp()).resolve()
        self.modules = self.root / "arm64-efi"
        self.modules.mkdir(parents=True)
        for entry in real_modules().iterdir():
            if entry.suffix == ".lst":
                shutil.copy(entry, self.modules)  # served by TFTP: no symlinks out
            else:
                (self.modules / entry.name).symlink_to(entry)
        self.cache = self.root / "cache"
        self.builds = self.root / "builds.log"
        self.mkimage = self.root / "grub-mkimage"
        self.wrap(version="grub-mkimage (GRUB) 2.06-test")

    def wrap(self, version: str, before: str = "") -> None:
        """
        (Re)write the wrapper: it answers C{--version} with C{version},
        logs each build, runs C{before}, then the real grub-mkimage.
        """
        self.mkimage.write_text(
            "#!/bin/sh\n"
            f'if [ "$1" = --version ]; then echo "{version}"; exit 0; fi\n'
            f'echo build >> "{self.builds}"\n'
            f"{before}"
            f'exec "{real_mkimage()}" "$@"\n'
        )
        self.mkimage.chmod(0o755)

    def count(self) -> int:
        return len(self.builds.read_text().splitlines()) if self.builds.exists() else 0

    def make(self, **kwargs: Any) -> GrubImageCache:
        return GrubImageCache(self.cache, self.modules, str(self.mkimage), **kwargs)
