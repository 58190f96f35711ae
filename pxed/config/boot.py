# -*- test-case-name: tests.test_config -*-
"""
The C{boot:} section: what each machine boots, the simple way (a default
and a per-MAC table of Linux boots).  The C{policy:} section builds on it.
"""

from __future__ import annotations

from typing import Any

from pxed.config.reader import Reader, join_key, type_name
from pxed.machine import is_mac
from pxed.policy import BootSpec
from pxed.templates import check_template

__all__ = ["parse_boot", "parse_linux", "normal_mac", "template"]



def normal_mac(mac: str) -> str:
    """
    Lower-case colon form, so C{52-54-00-...} and C{52:54:00:...} are one
    machine.
    """
    return mac.strip().lower().replace("-", ":")


def template(reader: Reader, value: Any, key: str) -> str:
    """
    A string that will be rendered as a template: checked for syntax now.
    """
    if not isinstance(value, str):
        raise reader.fail(key, f"must be a string, not {type_name(value)}")
    problem = check_template(value)
    if problem is not None:
        raise reader.fail(key, problem)
    reader.templates.append((key, value))
    return value


def parse_linux(reader: Reader, value: Any, key: str) -> BootSpec:
    """
    A Linux boot: kernel, initrd (one or a list), cmdline, and optionally
    initrd_args (add C{initrd=NAME}, default true) and message.
    """
    entry = reader.mapping(value, key, {"kernel", "initrd", "cmdline", "initrd_args", "message"})
    if "kernel" not in entry:
        raise reader.fail(key, "missing key 'kernel'")
    initrds = entry.get("initrd", [])
    if isinstance(initrds, str):
        initrds = [initrds]
    if not isinstance(initrds, list):
        raise reader.fail(join_key(key, "initrd"),
                          f"must be a list of files, not {type_name(initrds)}")
    initrd_args = entry.get("initrd_args", True)
    if not isinstance(initrd_args, bool):
        raise reader.fail(join_key(key, "initrd_args"), "must be true or false")
    return BootSpec(
        kernel=reader.file(entry["kernel"], join_key(key, "kernel"), urls=True),
        initrds=tuple(
            reader.file(item, f"{key}.initrd[{i}]", urls=True) for i, item in enumerate(initrds)
        ),
        cmdline=template(reader, entry.get("cmdline", ""), join_key(key, "cmdline")),
        initrd_args=initrd_args,
        message=template(reader, entry.get("message", ""), join_key(key, "message")),
    )


def parse_boot(
    reader: Reader, value: Any
) -> tuple[BootSpec | None, dict[str, BootSpec]]:
    """
    The default boot and the per-MAC table (MACs normalised).
    """
    boot = reader.mapping(value, "boot", {"default", "machines"})
    default = None
    if boot.get("default") is not None:
        default = parse_linux(reader, boot["default"], "boot.default")
    machines: dict[str, BootSpec] = {}
    for mac, entry in reader.mapping(boot.get("machines"), "boot.machines", None).items():
        normal = normal_mac(mac)
        if not is_mac(normal):
            raise reader.fail(f"boot.machines.{mac}", "is not a MAC address like 52:54:00:12:34:56")
        if normal in machines:
            raise reader.fail(f"boot.machines.{mac}", "is listed twice")
        machines[normal] = parse_linux(reader, entry, f"boot.machines.{mac}")
    return default, machines
