# -*- test-case-name: tests.test_config -*-
"""
The C{server:} and C{bootloaders:} sections: where pxed listens, what it
advertises, and which network bootstrap program each architecture gets.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pxed.config.reader import Reader
from pxed.machine import ARCHITECTURE_SLUGS

__all__ = ["Ports", "ServerConfig", "DEFAULT_BOOTLOADERS", "IPXE_PACKAGE", "parse_server",
           "parse_bootloaders"]

#: Debian's ipxe package; the defaults name its files.
IPXE_PACKAGE = "ipxe"
DEFAULT_BOOTLOADERS: Mapping[str, Path] = {
    "x86-bios": Path("/usr/lib/ipxe/undionly.kpxe"),
    "x64-uefi": Path("/usr/lib/ipxe/snponly.efi"),
}


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


def parse_server(reader: Reader, value: Any) -> ServerConfig:
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


def parse_bootloaders(reader: Reader, value: Any) -> dict[str, Path]:
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


