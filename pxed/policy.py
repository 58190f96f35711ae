# -*- test-case-name: tests.test_policy -*-
"""
The boot policy: which machine boots what.

The protocols only ever talk to L{IBootPolicy}, so a YAML table, an HTTP
API or an embedding program's own database can decide, and a slow decision
is a Deferred that delays only the client that asked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from twisted.internet.defer import Deferred, succeed
from zope.interface import Interface, implementer

from pxed.machine import Machine

__all__ = ["BootSpec", "IBootPolicy", "StaticPolicy", "is_url"]


def is_url(location: str) -> bool:
    """
    A file location is either a local path or an http(s) URL.
    """
    return location.startswith(("http://", "https://"))


@dataclass(frozen=True)
class BootSpec:
    """
    A Linux boot: a kernel, zero or more initrds and a command line.

    Each file is a local path (served by pxed's HTTP server) or an http(s)
    URL (handed to iPXE as it is).
    """

    kernel: str
    initrds: tuple[str, ...] = field(default_factory=tuple)
    cmdline: str = ""

    def files(self) -> tuple[str, ...]:
        return (self.kernel, *self.initrds)


class IBootPolicy(Interface):
    """
    Decides what a network-booting machine boots.
    """

    def boot_spec(machine: Machine) -> Deferred[BootSpec | None]:
        """
        What C{machine} should boot, or C{None} to leave it alone (pxed then
        stays silent, so another boot server or the local disk can win).
        """


@implementer(IBootPolicy)
class StaticPolicy:
    """
    The configuration file's C{boot:} section: per-MAC entries, then the
    default.
    """

    def __init__(
        self, machines: Mapping[str, BootSpec], default: BootSpec | None = None
    ) -> None:
        self.machines = dict(machines)
        self.default = default

    def boot_spec(self, machine: Machine) -> Deferred[BootSpec | None]:
        return succeed(self.machines.get(machine.mac, self.default))

    def local_files(self) -> set[str]:
        """
        Every local path this policy can name: the only files the HTTP server
        will ever serve for it.
        """
        specs = [*self.machines.values(), *([self.default] if self.default else [])]
        return {f for spec in specs for f in spec.files() if not is_url(f)}
