# -*- test-case-name: tests.test_config -*-
"""
The C{boot:} section: what each machine boots.
"""

from __future__ import annotations

import re
from typing import Any

from pxed.config.reader import Reader, join_key, type_name
from pxed.policy import BootSpec

__all__ = ["parse_boot"]

_MAC = re.compile(r"^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$")


def _boot_spec(reader: Reader, value: Any, key: str) -> BootSpec:
    entry = reader.mapping(value, key, {"kernel", "initrd", "cmdline"})
    if "kernel" not in entry:
        raise reader.fail(key, "missing key 'kernel'")
    initrds = entry.get("initrd", [])
    if isinstance(initrds, str):
        initrds = [initrds]
    if not isinstance(initrds, list):
        raise reader.fail(join_key(key, "initrd"),
                          f"must be a list of files, not {type_name(initrds)}")
    cmdline = entry.get("cmdline", "")
    if not isinstance(cmdline, str):
        raise reader.fail(join_key(key, "cmdline"), f"must be a string, not {type_name(cmdline)}")
    return BootSpec(
        kernel=reader.file(entry["kernel"], join_key(key, "kernel"), urls=True),
        initrds=tuple(
            reader.file(item, f"{key}.initrd[{i}]", urls=True) for i, item in enumerate(initrds)
        ),
        cmdline=cmdline,
    )




def parse_boot(
    reader: Reader, value: Any
) -> tuple[BootSpec | None, dict[str, BootSpec]]:
    """
    The default boot and the per-MAC table (MACs normalised to lower-case
    colon form, so C{52-54-00-...} and C{52:54:00:...} are one machine).
    """
    boot = reader.mapping(value, "boot", {"default", "machines"})
    default = None
    if boot.get("default") is not None:
        default = _boot_spec(reader, boot["default"], "boot.default")
    machines: dict[str, BootSpec] = {}
    for mac, entry in reader.mapping(boot.get("machines"), "boot.machines", None).items():
        normal = mac.strip().lower().replace("-", ":")
        if not _MAC.match(normal):
            raise reader.fail(f"boot.machines.{mac}", "is not a MAC address like 52:54:00:12:34:56")
        if normal in machines:
            raise reader.fail(f"boot.machines.{mac}", "is listed twice")
        machines[normal] = _boot_spec(reader, entry, f"boot.machines.{mac}")
    return default, machines
