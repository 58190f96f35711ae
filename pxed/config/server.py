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
from pxed.net import interface_address, is_unicast

__all__ = ["Ports", "ServerConfig", "DEFAULT_BOOTLOADERS", "IPXE_PACKAGE", "parse_server",
           "parse_bootloaders", "served_name", "program_files", "shim_companions", "SHIM",
           "SHIM_GRUB", "SHIM_GRUB_NAME"]

#: Debian's ipxe package; the defaults name its files.
IPXE_PACKAGE = "ipxe"
DEFAULT_BOOTLOADERS: Mapping[str, Path] = {
    "x86-bios": Path("/usr/lib/ipxe/undionly.kpxe"),
    "x64-uefi": Path("/usr/lib/ipxe/snponly.efi"),
}


#: The Secure Boot chain C{bootloaders: {x64-uefi: shim}} names: Debian's
#: shim signed by Microsoft (C{shim-signed}; scripts/setup unpacks it
#: below /usr/local/lib/pxed/shim rather than installing it, because its
#: maintainer script reinstalls the host's own bootloader), and Debian's
#: signed netboot GRUB (C{grub-efi-amd64-signed}), which shim fetches as
#: C{grubx64.efi} from the directory it was loaded from.
SHIM = (Path("/usr/lib/shim/shimx64.efi.signed"),
        Path("/usr/local/lib/pxed/shim/usr/lib/shim/shimx64.efi.signed"))
SHIM_GRUB = Path("/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed")
SHIM_GRUB_NAME = "grubx64.efi"
#: The architectures the keyword is for.
_SHIM_SLUGS = ("x64-uefi",)


def served_name(path: Path) -> str:
    """
    The name TFTP (and C{/_/boot/} over HTTP) serves a boot program under:
    its file name, without the C{.signed} of Debian's signed EFI binaries
    (C{shimx64.efi.signed} is served as C{shimx64.efi}).
    """
    return path.name.removesuffix(".signed") or path.name


def program_files(bootloaders: Mapping[str, Path],
                  companions: Mapping[str, Path] | None = None) -> dict[str, Path]:
    """
    Every boot program by the name it is served under, and the files that
    go with them (shim's C{grubx64.efi}).
    """
    files = {served_name(path): path for path in bootloaders.values()}
    files.update(companions or {})
    return files


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
        is in C{subnet} is told C{address} (C{None}: the usual one), for
        hosts whose relays reach pxed on an address the relayed clients
        cannot.  When any are listed, only relays in these subnets are
        answered (see L{pxed.dhcp.sanity}).
    @ivar menu: the native PXE boot menu, shown only when configured.
    @ivar log_packets: log every DHCP datagram ignored, and every answer
        (debug level), for diagnosis.
    """

    address: str | None = None
    interface: str | None = None
    ports: Ports = field(default_factory=Ports)
    interfaces: tuple[str, ...] = ()
    relays: tuple[tuple[ipaddress.IPv4Network, str | None], ...] = ()
    menu: PXEMenu | None = None
    log_packets: bool = False

    def advertised(self) -> str | None:
        """
        The address the DHCP ports are told to advertise: C{address}, else
        (with C{interface}) that interface's address as the host has it
        now, else C{None} (each request's arrival address decides).  The
        server and C{pxed explain} both ask here.
        """
        if self.address is None and self.interface is not None:
            return interface_address(self.interface)
        return self.address


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


def _relays(reader: Reader, value: Any) -> tuple[tuple[ipaddress.IPv4Network, str | None], ...]:
    section = reader.mapping(value, "server.relays", None)
    relays: list[tuple[ipaddress.IPv4Network, str | None]] = []
    for subnet, address in section.items():
        key = f"server.relays.{subnet}"
        try:
            network = ipaddress.IPv4Network(subnet, strict=False)
        except ValueError:
            raise reader.fail(key, "is not an IPv4 subnet like 10.0.2.0/24") from None
        # true: answered, with the address pxed would advertise anyway.
        relays.append((network, None if address is True else _advertisable(reader, address, key)))
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
        if location == "shim":
            chosen[slug] = _shim(reader, slug)
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
        name = served_name(path)
        other = names.setdefault(name, slug)
        if other != slug and chosen[other] != path:
            raise reader.fail(f"bootloaders.{slug}",
                              f"file name {name!r} is already used by bootloaders.{other}")
        if name == SHIM_GRUB_NAME and "shim" in section.values():
            raise reader.fail(f"bootloaders.{slug}",
                              f"file name {name!r} is the GRUB that shim loads")
    return chosen


def _shim(reader: Reader, slug: str) -> Path:
    key = f"bootloaders.{slug}"
    if slug not in _SHIM_SLUGS:
        raise reader.fail(key, f"'shim' is only for {', '.join(_SHIM_SLUGS)} (Debian's signed "
                          "x64 shim and GRUB)")
    shim = next((path for path in SHIM if path.is_file()), None)
    if shim is None:
        raise reader.fail(key, f"shim: {SHIM[0]} is missing: install Debian's 'shim-signed' "
                          "package (apt-get install --no-install-recommends shim-signed)")
    if not SHIM_GRUB.is_file():
        raise reader.fail(key, f"shim: {SHIM_GRUB} is missing: install Debian's "
                          "'grub-efi-amd64-signed' package (apt-get install "
                          "--no-install-recommends grub-efi-amd64-signed)")
    return shim


def shim_companions(bootloaders: Any) -> dict[str, Path]:
    """
    The files that go with the C{shim} keyword: Debian's signed netboot
    GRUB, served as C{grubx64.efi} beside shim (the name shim fetches).
    Called on the section already checked by L{parse_bootloaders}.
    """
    if isinstance(bootloaders, Mapping) and "shim" in bootloaders.values():
        return {SHIM_GRUB_NAME: SHIM_GRUB}
    return {}


