# -*- test-case-name: tests.test_config_dhcp -*-
"""
The C{dhcp:} section: ProxyDHCP (the default) or pxed as the LAN's DHCP
server, with its address ranges, options and lease store.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pxed.config.policy import parse_duration
from pxed.config.reader import Reader, type_name
from pxed.dhcp.leases import Pool
from pxed.leasefile import LeaseFileError, read_lease_file
from pxed.net import is_unicast

__all__ = ["DHCPConfig", "LocalRange", "parse_dhcp", "DEFAULT_LEASE_FILE", "PROXY", "FULL"]

PROXY = "proxy"
FULL = "full"
DEFAULT_LEASE_FILE = Path("/var/lib/pxed/leases.json")

Range = tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]


@dataclass(frozen=True)
class LocalRange:
    """
    The C{range:} of the LAN pxed is on: its subnet (and so option 1) is
    the one of the interface a request arrives on, which must hold it.
    """

    ranges: tuple[Range, ...]

    def pool(self, network: ipaddress.IPv4Network) -> Pool | None:
        """
        The pool on C{network}, or C{None} if the ranges are not in it
        (the request came from another LAN).
        """
        if all(first in network and last in network for first, last in self.ranges):
            return Pool(network, self.ranges)
        return None


@dataclass(frozen=True)
class DHCPConfig:
    """
    @ivar mode: C{proxy} (answer network boots beside the LAN's DHCP
        server) or C{full} (be the DHCP server).
    @ivar local: the C{range:} for requests that are not relayed.
    @ivar relayed: C{ranges:}: a pool per subnet, for requests relayed
        from it (by giaddr), or arriving on an interface in it.
    @ivar router: option 3, if set.
    @ivar dns: option 6.
    @ivar lease_time: seconds a lease lasts (option 51).
    @ivar clients: C{all} or C{boot} (only network-booting clients get
        an address).
    @ivar ping: probe an address (ICMP echo) before its first offer.
    @ivar lease_file: where the leases are kept.
    """

    mode: str = PROXY
    local: LocalRange | None = None
    relayed: tuple[Pool, ...] = ()
    router: str | None = None
    dns: tuple[str, ...] = ()
    lease_time: float = 3600.0
    clients: str = "all"
    ping: bool = True
    lease_file: Path = field(default=DEFAULT_LEASE_FILE)

    @property
    def full(self) -> bool:
        return self.mode == FULL


def _address(reader: Reader, value: Any, key: str) -> ipaddress.IPv4Address:
    text = reader.string(value, key) if not isinstance(value, ipaddress.IPv4Address) else value
    try:
        address = ipaddress.IPv4Address(str(text).strip())
    except ValueError:
        raise reader.fail(key, f"{text!r} is not an IPv4 address") from None
    if not is_unicast(str(address)):
        raise reader.fail(key, f"{address} cannot be given to a client")
    return address


def _ranges(reader: Reader, value: Any, key: str) -> tuple[Range, ...]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise reader.fail(key, "must name at least one range like 192.168.77.100-192.168.77.199")
    ranges: list[Range] = []
    for i, item in enumerate(items):
        where = f"{key}[{i}]" if isinstance(value, list) else key
        if not isinstance(item, str) or item.count("-") != 1:
            raise reader.fail(where, f"must be a range like 192.168.77.100-192.168.77.199, "
                                     f"not {item!r}")
        first_text, last_text = item.split("-")
        first = _address(reader, first_text, where)
        last = _address(reader, last_text, where)
        if first > last:
            raise reader.fail(where, f"{first} comes after {last}")
        for other_first, other_last in ranges:
            if first <= other_last and other_first <= last:
                raise reader.fail(where, f"overlaps {other_first}-{other_last}")
        ranges.append((first, last))
    return tuple(ranges)


def _relayed(reader: Reader, value: Any) -> tuple[Pool, ...]:
    section = reader.mapping(value, "dhcp.ranges", None)
    pools: list[Pool] = []
    for subnet, spec in section.items():
        key = f"dhcp.ranges.{subnet}"
        try:
            network = ipaddress.IPv4Network(subnet, strict=True)
        except ValueError:
            raise reader.fail(key, "is not an IPv4 subnet like 10.20.0.0/24") from None
        ranges = _ranges(reader, spec, key)
        for first, last in ranges:
            if first not in network or last not in network:
                raise reader.fail(key, f"{first}-{last} is not inside {network}")
            if network.prefixlen < 31 and (first == network.network_address
                                           or last == network.broadcast_address):
                raise reader.fail(key, f"{first}-{last} includes the subnet's own or broadcast "
                                       "address")
        for other in pools:
            if other.network.overlaps(network):
                raise reader.fail(key, f"overlaps dhcp.ranges.{other.network}")
        pools.append(Pool(network, ranges))
    pools.sort(key=lambda pool: -pool.network.prefixlen)
    return tuple(pools)


def parse_dhcp(reader: Reader, value: Any) -> DHCPConfig:
    section = reader.mapping(value, "dhcp", {"mode", "range", "ranges", "router", "dns",
                                             "lease_time", "clients", "ping", "lease_file"})
    mode = section.get("mode", PROXY)
    if mode not in (PROXY, FULL):
        raise reader.fail("dhcp.mode", f"must be proxy or full, not {mode!r}")
    if mode == PROXY:
        extra = sorted(set(section) - {"mode"})
        if extra:
            raise reader.fail(f"dhcp.{extra[0]}", "only applies with dhcp.mode: full")
        return DHCPConfig()
    local = LocalRange(_ranges(reader, section["range"], "dhcp.range")) \
        if section.get("range") is not None else None
    relayed = _relayed(reader, section.get("ranges"))
    if local is None and not relayed:
        raise reader.fail("dhcp.range", "dhcp.mode full needs addresses to hand out: set "
                                        "dhcp.range (or dhcp.ranges for relayed subnets)")
    router = section.get("router")
    if router is not None:
        router = str(_address(reader, router, "dhcp.router"))
    dns_value = section.get("dns", [])
    dns_items = dns_value if isinstance(dns_value, list) else [dns_value]
    dns = tuple(str(_address(reader, item, f"dhcp.dns[{i}]")) for i, item in enumerate(dns_items))
    lease_time = parse_duration(reader, section.get("lease_time", "1h"), "dhcp.lease_time") \
        if "lease_time" in section else 3600.0
    if lease_time < 60:
        raise reader.fail("dhcp.lease_time", "must be at least a minute")
    clients = section.get("clients", "all")
    if clients not in ("all", "boot"):
        raise reader.fail("dhcp.clients", f"must be all or boot, not {clients!r}")
    ping = section.get("ping", True)
    if not isinstance(ping, bool):
        raise reader.fail("dhcp.ping", f"must be true or false, not {type_name(ping)}")
    lease_file = DEFAULT_LEASE_FILE
    if section.get("lease_file") is not None:
        lease_file = Path(reader.string(section["lease_file"], "dhcp.lease_file"))
        if not lease_file.is_absolute():
            raise reader.fail("dhcp.lease_file", f"{lease_file} must be an absolute path")
    try:
        read_lease_file(lease_file)
    except LeaseFileError as e:
        raise reader.fail("dhcp.lease_file", str(e)) from None
    return DHCPConfig(mode=mode, local=local, relayed=relayed, router=router, dns=dns,
                      lease_time=lease_time, clients=clients, ping=ping, lease_file=lease_file)
