# -*- test-case-name: tests.test_config -*-
"""
Load and validate pxed's YAML configuration.

Every user mistake becomes one L{ConfigError} naming the file, the key and
what is wrong, so C{twistd} can print a single line instead of a traceback.
Validation happens entirely at load time, including checks that files
exist, so a bad setting fails at startup rather than in the middle of a
machine's boot.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pxed.machine import ARCHITECTURE_SLUGS
from pxed.policy import BootSpec, is_url

__all__ = ["Config", "ConfigError", "Ports", "ServerConfig", "load_config", "parse_config"]

#: Debian's ipxe package; the defaults name its files.
IPXE_PACKAGE = "ipxe"
DEFAULT_BOOTLOADERS: Mapping[str, Path] = {
    "x86-bios": Path("/usr/lib/ipxe/undionly.kpxe"),
    "x64-uefi": Path("/usr/lib/ipxe/snponly.efi"),
}

_MAC = re.compile(r"^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$")


class ConfigError(Exception):
    """
    A configuration mistake: where it is and what is wrong.
    """

    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source = source
        self.key = key
        self.problem = problem
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class Ports:
    dhcp: int = 67
    pxe: int = 4011
    tftp: int = 69
    http: int = 80


@dataclass(frozen=True)
class ServerConfig:
    """
    @ivar address: the address advertised to clients; C{None} means the
        address of the interface each request arrived on.
    @ivar interface: serve only on this interface, if set.
    """

    address: str | None = None
    interface: str | None = None
    ports: Ports = field(default_factory=Ports)


@dataclass(frozen=True)
class Config:
    source: str
    server: ServerConfig
    default: BootSpec | None
    machines: Mapping[str, BootSpec]
    bootloaders: Mapping[str, Path]


class _Reader:
    """
    Walks the parsed YAML with the dotted path of the current key, so each
    error names exactly where it is.
    """

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.source, key, problem)

    def mapping(self, value: Any, key: str, allowed: set[str] | None) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(key or "(top level)", f"must be a mapping, not {_kind(value)}")
        for name in value:
            if not isinstance(name, str):
                raise self.fail(key or "(top level)",
                                f"key {name!r} must be a string (quote MAC addresses: "
                                "YAML reads some unquoted ones as numbers)")
            if allowed is not None and name not in allowed:
                expected = ", ".join(sorted(allowed))
                raise self.fail(_join(key, name), f"unknown key (expected one of: {expected})")
        return value

    def string(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(key, f"must be a non-empty string, not {_kind(value)}")
        return value

    def port(self, value: Any, key: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
            raise self.fail(key, f"must be a port number 0..65535, not {value!r}")
        return value

    def file(self, value: Any, key: str, *, urls: bool) -> str:
        location = self.string(value, key)
        if urls and is_url(location):
            return location
        path = Path(location)
        if not path.is_absolute():
            raise self.fail(key, f"{location!r} must be an absolute path" +
                            (" or an http(s) URL" if urls else ""))
        if not path.is_file():
            raise self.fail(key, f"file {location} does not exist")
        if not os.access(path, os.R_OK):
            raise self.fail(key, f"file {location} is not readable")
        return str(path)


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _boot_spec(reader: _Reader, value: Any, key: str) -> BootSpec:
    entry = reader.mapping(value, key, {"kernel", "initrd", "cmdline"})
    if "kernel" not in entry:
        raise reader.fail(key, "missing key 'kernel'")
    initrds = entry.get("initrd", [])
    if isinstance(initrds, str):
        initrds = [initrds]
    if not isinstance(initrds, list):
        raise reader.fail(_join(key, "initrd"), f"must be a list of files, not {_kind(initrds)}")
    cmdline = entry.get("cmdline", "")
    if not isinstance(cmdline, str):
        raise reader.fail(_join(key, "cmdline"), f"must be a string, not {_kind(cmdline)}")
    return BootSpec(
        kernel=reader.file(entry["kernel"], _join(key, "kernel"), urls=True),
        initrds=tuple(
            reader.file(item, f"{key}.initrd[{i}]", urls=True) for i, item in enumerate(initrds)
        ),
        cmdline=cmdline,
    )


def _server(reader: _Reader, value: Any) -> ServerConfig:
    section = reader.mapping(value, "server", {"address", "interface", "ports"})
    address = section.get("address")
    if address is not None:
        address = reader.string(address, "server.address")
        try:
            parsed = ipaddress.IPv4Address(address)
        except ValueError:
            raise reader.fail("server.address", f"{address!r} is not an IPv4 address") from None
        if parsed.is_unspecified or parsed.is_multicast:
            raise reader.fail("server.address", f"{address} cannot be advertised to clients")
    interface = section.get("interface")
    if interface is not None:
        interface = reader.string(interface, "server.interface")
    ports_section = reader.mapping(section.get("ports"), "server.ports",
                                   {"dhcp", "pxe", "tftp", "http"})
    ports = Ports(**{
        name: reader.port(number, f"server.ports.{name}") for name, number in ports_section.items()
    })
    return ServerConfig(address=address, interface=interface, ports=ports)


def _bootloaders(reader: _Reader, value: Any) -> dict[str, Path]:
    section = reader.mapping(value, "bootloaders", set(ARCHITECTURE_SLUGS))
    chosen = dict(DEFAULT_BOOTLOADERS)
    for slug, location in section.items():
        if location is None:
            chosen.pop(slug, None)  # explicitly switched off
            continue
        chosen[slug] = Path(reader.file(location, f"bootloaders.{slug}", urls=False))
    for slug, path in chosen.items():
        if slug not in section and not path.is_file():
            raise reader.fail(
                f"bootloaders.{slug}",
                f"default {path} is missing: install Debian's '{IPXE_PACKAGE}' package "
                f"(apt-get install {IPXE_PACKAGE}) or name another file",
            )
    names: dict[str, str] = {}
    for slug, path in chosen.items():
        other = names.setdefault(path.name, slug)
        if other != slug and chosen[other] != path:
            raise reader.fail(f"bootloaders.{slug}",
                              f"file name {path.name!r} is already used by bootloaders.{other}")
    return chosen


def parse_config(data: Any, source: str = "<config>") -> Config:
    """
    Validate an already-parsed YAML document.
    """
    reader = _Reader(source)
    top = reader.mapping(data, "", {"server", "boot", "bootloaders"})
    boot = reader.mapping(top.get("boot"), "boot", {"default", "machines"})
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
    return Config(
        source=source,
        server=_server(reader, top.get("server")),
        default=default,
        machines=machines,
        bootloaders=_bootloaders(reader, top.get("bootloaders")),
    )


def load_config(path: str | os.PathLike[str]) -> Config:
    """
    Read, parse and validate a configuration file.

    @raise ConfigError: for every problem, including unreadable files and
        YAML syntax errors.
    """
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError(source, "", f"cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ConfigError(source, "", "is not UTF-8 text") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(source, "", f"invalid YAML: {where}{problem}") from None
    return parse_config(data, source)
