# -*- test-case-name: tests.test_arm64 -*-
"""
The C{arm64:} section: how pxed builds the GRUB image ARM64 UEFI clients
boot when C{bootloaders.arm64-uefi} names none (see L{pxed.grub.image}).

Every key is optional: by default pxed uses the modules C{scripts/setup}
unpacks (or an arm64 host's own), the host's C{grub-mkimage}, and
C{/var/cache/pxed}.  C{arm64: false} switches the built image off.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pxed.config.reader import Reader
from pxed.grub.image import DEFAULT_CACHE_DIR

__all__ = ["ARM64Config", "parse_arm64"]


@dataclass(frozen=True)
class ARM64Config:
    """
    @ivar build: whether pxed builds GRUB for ARM64 UEFI clients.
    @ivar modules: the GRUB C{arm64-efi} module directory, or C{None} for
        the first of L{pxed.grub.image.ARM64_MODULE_DIRS} that exists.
    @ivar cache_dir: where built images are kept (a C{grub-arm64-efi}
        directory below it is created).
    @ivar mkimage: the C{grub-mkimage} program.
    """

    build: bool = True
    modules: Path | None = None
    cache_dir: Path = DEFAULT_CACHE_DIR
    mkimage: str = "grub-mkimage"


def _absolute(reader: Reader, value: Any, key: str) -> Path:
    path = Path(reader.string(value, key))
    if not path.is_absolute():
        raise reader.fail(key, f"{value!r} must be an absolute path")
    return path


def parse_arm64(reader: Reader, value: Any) -> ARM64Config:
    if value is False:
        return ARM64Config(build=False)
    if value is True:
        value = None
    section = reader.mapping(value, "arm64", {"modules", "cache_dir", "mkimage"})
    settings: dict[str, Any] = {}
    if section.get("modules") is not None:
        modules = _absolute(reader, section["modules"], "arm64.modules")
        if not (modules / "moddep.lst").is_file():
            raise reader.fail("arm64.modules", f"{modules} is not a GRUB module directory "
                              "(no moddep.lst): unpack Debian's grub-efi-arm64-bin (arm64) "
                              "and name its usr/lib/grub/arm64-efi")
        settings["modules"] = modules
    if section.get("cache_dir") is not None:
        settings["cache_dir"] = _absolute(reader, section["cache_dir"], "arm64.cache_dir")
    if section.get("mkimage") is not None:
        settings["mkimage"] = reader.string(section["mkimage"], "arm64.mkimage")
    return ARM64Config(**settings)
