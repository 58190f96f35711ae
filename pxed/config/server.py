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

from pxed.config.reader import Reader, type_name
from pxed.dhcp.menu import MAX_TEXT, PXEMenu
from pxed.machine import ARCHITECTURE_SLUGS, architecture
from pxed.net import is_unicast

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
    @ivar interface: serve only on this interface, if set (the socket is
        bound to it).
    @ivar interfaces: serve DHCP only on these interfaces (requests from
        others are dropped); empty means every interface.
    @ivar relays: (subnet, address) pairs: a relayed request whose giaddr
        is in C{subnet} is told C{address}, for hosts whose relays reach
        pxed on an address the relayed clients cannot.
    @ivar menu: the native PXE boot menu, shown only when configured.
    @ivar log_packets: log every DHCP datagram ignored, and every answer
        (debug level), for diagnosis.
    """

    address: str | None = None
    interface: str | None = None
    ports: Ports = field(default_factory=Ports)
    interfaces: tuple[str, ...] = ()
    relays: tuple[tuple[ipaddress.IPv4Network, str], ...] = ()
    menu: PXEMenu | None = None
    log_packets: bool = False


def _advertisable(reader: Reader, value: Any, key: str) -> str:
    address = reader.string(value, key)
    try:
        ipaddress.IPv4Address(address)
    except ValueError:
        raise reader.fail(key, f"{address!r} is not an IPv4 address") from None
    if not is_unicast(address):
        raise reader.fail(key, f"{address} cannot be advertised to clients")
    return address


def _interfaces(reader: Reader, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not value:
        raise reader.fail("server.interfaces",
                          f"must be a non-empty list of interface names, not {type_name(value)}")
    names = tuple(reader.string(name, f"server.interfaces[{i}]") for i, name in enumerate(value))
    if len(set(names)) != len(names):
        raise reader.fail("server.interfaces", "lists an interface twice")
    return names


def _relays(reader: Reader, value: Any) -> tuple[tuple[ipaddress.IPv4Network, str], ...]:
    section = reader.mapping(value, "server.relays", None)
    relays = []
    for subnet, address in section.items():
        key = f"server.relays.{subnet}"
        try:
            network = ipaddress.IPv4Network(subnet, strict=False)
        except ValueError:
            raise reader.fail(key, "is not an IPv4 subnet like 10.0.2.0/24") from None
        relays.append((network, _advertisable(reader, address, key)))
    # Most specific subnet first, so 10.0.2.0/24 wins over 10.0.0.0/8.
    relays.sort(key=lambda pair: -pair[0].prefixlen)
    return tuple(relays)


def _menu(reader: Reader, value: Any) -> PXEMenu | None:
    if value is None or value is False:
        return None
    if value is True:
        return PXEMenu()
    section = reader.mapping(value, "server.menu", {"prompt", "timeout", "network", "local"})
    texts = {}
    for name in ("prompt", "network", "local"):
        if name in section:
            text = reader.string(section[name], f"server.menu.{name}")
            if not text.isascii() or not text.isprintable() or len(text) > MAX_TEXT:
                raise reader.fail(f"server.menu.{name}",
                                  f"must be printable ASCII of at most {MAX_TEXT} characters")
            texts[name] = text
    timeout = section.get("timeout", PXEMenu.timeout)
    if isinstance(timeout, bool) or not isinstance(timeout, int) or not 0 <= timeout <= 255:
        raise reader.fail("server.menu.timeout",
                          f"must be seconds 0..255 (255: wait for a choice), not {timeout!r}")
    return PXEMenu(
        prompt=texts.get("prompt", PXEMenu.prompt),
        timeout=timeout,
        network_label=texts.get("network", PXEMenu.network_label),
        local_label=texts.get("local", PXEMenu.local_label),
    )


def parse_server(reader: Reader, value: Any) -> ServerConfig:
    section = reader.mapping(value, "server", {"address", "interface", "interfaces", "ports",
                                                "relays", "menu", "log_packets"})
    log_packets = section.get("log_packets", False)
    if not isinstance(log_packets, bool):
        raise reader.fail("server.log_packets", f"must be true or false, not {log_packets!r}")
    address = section.get("address")
    if address is not None:
        address = _advertisable(reader, address, "server.address")
    interface = section.get("interface")
    if interface is not None:
        interface = reader.string(interface, "server.interface")
    interfaces = _interfaces(reader, section.get("interfaces"))
    if interface is not None and interfaces:
        raise reader.fail("server.interfaces",
                          "use either server.interface (one) or server.interfaces (several)")
    ports_section = reader.mapping(section.get("ports"), "server.ports",
                                   {"dhcp", "pxe", "tftp", "http"})
    ports = Ports(**{
        name: reader.port(number, f"server.ports.{name}") for name, number in ports_section.items()
    })
    return ServerConfig(address=address, interface=interface, ports=ports, interfaces=interfaces,
                        relays=_relays(reader, section.get("relays")),
                        menu=_menu(reader, section.get("menu")), log_packets=log_packets)


def _unregistered(slug: str) -> bool:
    """
    Whether C{slug} names an option 93 code the registry does not have, as
    L{pxed.machine.architecture} (and so pxed's log) names it.
    """
    code = slug.removeprefix("unknown-")
    return (code != slug and code.isdigit() and str(int(code)) == code
            and int(code) <= 0xFFFF and architecture(int(code)).slug == slug)


def parse_bootloaders(reader: Reader, value: Any) -> dict[str, Path]:
    section = reader.mapping(value, "bootloaders", None)
    for slug in section:
        # A code the registry does not have yet is named as pxed logs it.
        if slug not in ARCHITECTURE_SLUGS and not _unregistered(slug):
            raise reader.fail(f"bootloaders.{slug}", "unknown key (expected one of: "
                              f"{', '.join(sorted(ARCHITECTURE_SLUGS))}, or unknown-CODE for "
                              "a code the IANA registry does not have)")
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


