# -*- test-case-name: tests.test_explain_full -*-
"""
C{pxed explain} for pxed as the DHCP server (C{dhcp.mode: full}).

Each datagram to the DHCP port goes through the very protocol the server
runs (L{DHCPServerProtocol}, with the real responder and policy), over an
in-memory transport and a lease store in memory that lives for the whole
capture: a DISCOVER's offer and the REQUEST after it are explained as one
exchange, the way the server would answer them.  Nothing is probed (the
report says when the server would), and nothing is sent.
"""

from __future__ import annotations

import ipaddress
import time
from typing import TYPE_CHECKING, Any

from twisted.internet.task import Clock
from twisted.internet.testing import FakeDatagramTransport

from pxed.config import Config
from pxed.dhcp.allocator import LeaseKeeper
from pxed.dhcp.classify import NotNetworkBooting, classify
from pxed.dhcp.packet import MessageType, decode
from pxed.dhcp.responder import BootResponder
from pxed.dhcp.server import DHCPServerProtocol
from pxed.leasestore import MemoryLeaseStore
from pxed.net import PacketInfo

if TYPE_CHECKING:
    from pxed.explainparts import Datagram, Explanation

__all__ = ["FullModeExplainer"]


class FullModeExplainer:
    """
    Explains datagrams to pxed's DHCP server, one after the other.

    @param address: the receiving interface's address, if known: it also
        decides the subnet of C{dhcp.range} (assumed to be the smallest
        one holding that address and the range).
    """

    def __init__(self, config: Config, responder: BootResponder, policy: Any,
                 address: str | None, interface: str | None) -> None:
        self.config = config
        self.policy = policy
        self.address = address
        self.interface = interface or "the receiving interface"
        self.clock = Clock()
        self.clock.advance(time.time())
        self.store = MemoryLeaseStore()
        keeper = LeaseKeeper(self.store, self.clock, config.dhcp.lease_time)
        self.protocol = DHCPServerProtocol(
            keeper, responder, config.server.advertised(), config.server.relays,
            config.server.interfaces, ifname=lambda index: interface or "?",
            networks=self._network, route=None, clock=self.clock, dhcp=config.dhcp)
        self.transport = FakeDatagramTransport()
        self.protocol.makeConnection(self.transport)

    def _network(self, name: str) -> ipaddress.IPv4Network | None:
        local = self.config.dhcp.local
        if local is None:
            return None
        points = [int(address) for pair in local.ranges for address in pair]
        if self.address is not None:
            points.append(int(ipaddress.IPv4Address(self.address)))
        low, high = min(points), max(points)
        prefix = 32 - (low ^ high).bit_length()
        return ipaddress.IPv4Network((low, prefix), strict=False)

    def explain(self, datagram: Datagram, result: Explanation) -> Explanation:
        """
        Fill C{result} (made by the caller for C{datagram}) with what the
        server does.
        """
        from pxed.explainparts import entry_name

        try:
            result.packet = decode(datagram.payload)
        except ValueError as e:
            result.ignored = f"malformed: {e}"
            return result
        try:
            result.machine = classify(result.packet)
        except NotNetworkBooting:
            result.machine = None
        local = self.address
        if local is None and datagram.dst[0] not in ("255.255.255.255", "0.0.0.0"):
            local = datagram.dst[0]
        info = PacketInfo(1, local or "0.0.0.0", datagram.dst[0])
        before = len(self.transport.written)
        self.protocol.silence = None
        self.policy.decided.clear()
        self.protocol.datagramReceivedWithInfo(datagram.payload, datagram.src, info)
        self.clock.advance(1)  # answers wait for the next reactor turn at most
        if result.machine is not None and self.policy.decided:
            result.entry = entry_name(self.config, result.machine, self.policy.decided[0])
        written = self.transport.written[before:]
        if not written:
            result.ignored = self.protocol.silence or "the server does not answer it"
            return result
        data, destination = written[-1]
        result.reply = decode(data)
        if self.config.dhcp.ping and result.reply.message_type == MessageType.OFFER:
            result.notes.append("with dhcp.ping the server first probes an address it has "
                                "not given this client before (not done here)")
        result.reply_bytes = data
        result.destination = destination
        result.server = self.protocol.address or local
        return result
