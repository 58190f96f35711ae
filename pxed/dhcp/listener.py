# -*- test-case-name: tests.test_dhcp_protocol,tests.test_dhcp_server -*-
"""
What pxed's DHCP protocols know of the network their requests come from.

The ProxyDHCP and boot server protocols (L{pxed.dhcp.protocol}) and the
DHCP server (L{pxed.dhcp.server}) take the same settings, used the same
way: the address to advertise, the relay subnets, the interfaces served,
how an interface index is named and how a route is found, the clock, and
how much to log.  L{NetworkSide} keeps them, so a setting added for one
reaches all three.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from twisted.internet.interfaces import IReactorTime

from pxed.dhcp.exchange import Relays
from pxed.dhcp.logbudget import LogBudget
from pxed.net import InterfaceNames
from pxed.reactors import given_or_global

__all__ = ["NetworkSide"]


class NetworkSide:
    """
    A mixin for the DHCP protocols.

    @ivar address: the configured server address; C{None} means "the
        address of the interface the request arrived on".
    @ivar relays: per-relay-subnet addresses (see
        L{pxed.dhcp.exchange.advertised_address}).
    @ivar interfaces: if not empty, only requests arriving on these
        interfaces (by name) are answered.
    @ivar budget: spends the one info line per answer (see L{LogBudget}).
    @ivar log_packets: also log (at debug level) every datagram ignored
        and every answer the budget left out.
    """

    address: str | None
    relays: Relays
    interfaces: frozenset[str]
    budget: LogBudget
    log_packets: bool
    _ifname: Callable[[int], str | None]
    _route: Callable[[str], str | None] | None

    def _network_side(
        self,
        address: str | None,
        relays: Relays,
        interfaces: Iterable[str],
        ifname: Callable[[int], str | None] | None,
        route: Callable[[str], str | None] | None,
        clock: IReactorTime | None,
        log_packets: bool,
    ) -> IReactorTime:
        """
        Keep the settings; returns the clock (the global reactor if none
        was given).
        """
        self.address = address
        self.relays = tuple(relays)
        self.interfaces = frozenset(interfaces)
        clock = given_or_global(clock)
        self._ifname = ifname if ifname is not None else InterfaceNames(clock).name
        self._route = route
        self.budget = LogBudget(clock)
        self.log_packets = log_packets
        return clock
