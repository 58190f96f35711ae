# -*- test-case-name: tests.test_policy_match -*-
"""
Match keys: each is a small L{IMatcher}, and a rule's C{match} is all of
them at once.

Every matcher is built from already-validated values (the configuration
checks syntax), and a key the request cannot answer (no relay, no
interface) simply does not match: a rule that names a relay never applies
to a client on the local segment.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar

from zope.interface import Attribute, Interface, implementer

from pxed.machine import Firmware
from pxed.policy.request import BootRequest

__all__ = [
    "IMatcher", "Match", "MacMatcher", "ArchMatcher", "FirmwareMatcher", "UUIDMatcher",
    "UserClassMatcher", "InterfaceMatcher", "SubnetMatcher", "RelayMatcher",
]

Network = ipaddress.IPv4Network


class IMatcher(Interface):
    reads = Attribute(
        "The L{BootRequest} fields the match looks at (C{mac}, C{uuid}, C{arch}, ...): "
        "what a cached answer must be keyed by (L{pxed.policy.cache})."
    )

    def matches(request: BootRequest) -> bool:
        """
        Whether C{request} has this key's property.
        """


def _is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


@implementer(IMatcher)
@dataclass(frozen=True)
class MacMatcher:
    """
    MAC addresses (lower-case colon form): exact (C{52:54:00:12:34:56}),
    an OUI prefix of three octets (C{52:54:00}), or a glob (C{52:54:00:*}).
    """

    reads: ClassVar[frozenset[str]] = frozenset({"mac"})

    patterns: tuple[str, ...]

    def matches(self, request: BootRequest) -> bool:
        mac = request.mac.lower()
        for pattern in self.patterns:
            if _is_glob(pattern):
                if fnmatch.fnmatchcase(mac, pattern):
                    return True
            elif pattern.count(":") == 2:
                if mac.startswith(pattern + ":"):
                    return True
            elif mac == pattern:
                return True
        return False


@implementer(IMatcher)
@dataclass(frozen=True)
class ArchMatcher:
    """
    Architectures by slug (C{x64-uefi}) or option 93 code (C{7}).
    """

    reads: ClassVar[frozenset[str]] = frozenset({"arch"})

    slugs: frozenset[str] = frozenset()
    codes: frozenset[int] = frozenset()

    def matches(self, request: BootRequest) -> bool:
        return request.arch.slug in self.slugs or request.arch.code in self.codes


@implementer(IMatcher)
@dataclass(frozen=True)
class FirmwareMatcher:
    """
    The kind of firmware: C{bios}, C{uefi} or C{other}; C{ipxe} matches
    a client that is iPXE itself.
    """

    reads: ClassVar[frozenset[str]] = frozenset({"firmware", "ipxe"})

    kinds: frozenset[Firmware] = frozenset()
    ipxe: bool = False

    def matches(self, request: BootRequest) -> bool:
        return request.firmware in self.kinds or (self.ipxe and request.ipxe)


@implementer(IMatcher)
@dataclass(frozen=True)
class UUIDMatcher:
    """
    The client machine GUID (option 97), compared without regard to case.
    """

    reads: ClassVar[frozenset[str]] = frozenset({"uuid"})

    uuids: frozenset[str]

    def matches(self, request: BootRequest) -> bool:
        return request.uuid is not None and request.uuid.lower() in self.uuids


@dataclass(frozen=True)
class _GlobMatcher:
    patterns: tuple[str, ...]

    def _value(self, request: BootRequest) -> str | None:
        raise NotImplementedError

    def matches(self, request: BootRequest) -> bool:
        value = self._value(request)
        return value is not None and any(fnmatch.fnmatchcase(value, p) for p in self.patterns)


@implementer(IMatcher)
class UserClassMatcher(_GlobMatcher):
    """
    The DHCP user class (option 77), e.g. C{iPXE}; globs allowed.
    """

    reads: ClassVar[frozenset[str]] = frozenset({"user_class"})

    def _value(self, request: BootRequest) -> str | None:
        return request.user_class


@implementer(IMatcher)
class InterfaceMatcher(_GlobMatcher):
    """
    The interface the request arrived on, by name; globs allowed.
    """

    reads: ClassVar[frozenset[str]] = frozenset({"interface"})

    def _value(self, request: BootRequest) -> str | None:
        return request.interface


def _in_any(address: str | None, networks: Iterable[Network]) -> bool:
    if address is None:
        return False
    try:
        parsed = ipaddress.IPv4Address(address)
    except ValueError:
        return False
    return any(parsed in network for network in networks)


@implementer(IMatcher)
@dataclass(frozen=True)
class SubnetMatcher:
    """
    The client's network (see L{BootRequest.network_address}) lies in one
    of these subnets.
    """

    reads: ClassVar[frozenset[str]] = frozenset({"network"})

    networks: tuple[Network, ...]

    def matches(self, request: BootRequest) -> bool:
        return _in_any(request.network_address, self.networks)


@implementer(IMatcher)
@dataclass(frozen=True)
class RelayMatcher:
    """
    The request came through a relay whose address is in one of these
    networks (a single address is a /32).
    """

    reads: ClassVar[frozenset[str]] = frozenset({"relay"})

    networks: tuple[Network, ...]

    def matches(self, request: BootRequest) -> bool:
        return _in_any(request.relay, self.networks)


@implementer(IMatcher)
@dataclass(frozen=True)
class Match:
    """
    All of its matchers at once; with none, everything matches.
    """

    matchers: tuple[IMatcher, ...] = field(default_factory=tuple)

    @property
    def reads(self) -> frozenset[str]:
        return frozenset().union(*(m.reads for m in self.matchers))

    def matches(self, request: BootRequest) -> bool:
        return all(m.matches(request) for m in self.matchers)
