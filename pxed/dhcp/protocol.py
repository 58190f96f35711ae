# -*- test-case-name: tests.test_dhcp_protocol -*-
"""
The ProxyDHCP (UDP 67) and PXE boot server (UDP 4011) protocols.

Thin: each datagram goes through L{pxed.dhcp.pipeline} (screen, ask the
L{BootResponder}, build and encode the reply), which C{pxed explain} runs
too; what is left here needs the running server: coalescing
retransmissions, metrics, log lines and the socket.  Each request is
handled in its own Deferred so a slow policy lookup delays only the
client that caused it; anything malformed or not network-booting is dropped without a reply (and
logged only with C{log_packets}).  Each answer gets one info line, within
a L{LogBudget} so a boot storm is answered rather than logged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from pxed.dhcp.exchange import BOOTSERVER, PROXYDHCP, Relays, Stage
from pxed.dhcp.fastpath import Offer, OfferCache
from pxed.dhcp.listener import NetworkSide
from pxed.dhcp.pipeline import Arrival, Dropped, Reply, Request, receive, respond
from pxed.dhcp.reply import BootAnswer
from pxed.dhcp.responder import BootResponder
from pxed.eager import Done, eager
from pxed.machine import Machine
from pxed.net import PacketInfo, route_source

if TYPE_CHECKING:
    from pxed.observe import BootRecorder
    from pxed.parts import BootParts

__all__ = ["ProxyDHCPProtocol", "BootServerProtocol"]

log = Logger()

_BROADCAST_ADDRESS = "255.255.255.255"


class _BootProtocol(NetworkSide, DatagramProtocol):
    """
    What both ports share: screening, the advertised address, the
    interface restriction, coalescing of retransmissions, and never
    letting one datagram hurt the service.

    The network settings (address, relays, interfaces, log budget) are
    L{NetworkSide}'s; C{log_packets} is off by default, like C{verbose} in
    twisted.names: C{twistd} writes debug events too, and on a busy LAN
    every DHCP packet of every client reaches port 67.

    @ivar observer: told of every datagram dropped and every request
        answered (metrics, timelines); set by L{pxed.service}.
    """

    spec: Stage = PROXYDHCP
    observer: BootRecorder | None = None

    def __init__(
        self,
        responder: BootResponder,
        address: str | None = None,
        relays: Relays = (),
        interfaces: Iterable[str] = (),
        ifname: Callable[[int], str | None] | None = None,
        route: Callable[[str], str | None] | None = route_source,
        clock: IReactorTime | None = None,
        log_packets: bool = False,
    ) -> None:
        self.responder = responder
        self._clock = self._network_side(address, relays, interfaces, ifname, route, clock,
                                         log_packets)
        self._warned = False
        self._pending: set[tuple[bytes, int]] = set()
        #: Offers already decided (the ProxyDHCP fast path); C{None} on a
        #: port whose replies are built, not patched.
        self.offers = OfferCache() if self.spec.encoded is not None else None
        # Answers from the fast path whose bookkeeping (boot log, metrics)
        # is still to be done, at the end of this reactor turn.
        self._kept: list[tuple[str, Offer, tuple[str, int], float]] = []
        self._flushing: IDelayedCall | None = None

    @property
    def stage(self) -> str:
        return self.spec.name

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:
        self.datagramReceivedWithInfo(data, addr, None)

    def datagramReceivedWithInfo(
        self, data: bytes, addr: tuple[str, int], info: PacketInfo | None
    ) -> None:
        offers = self.offers
        if offers is not None:
            now = self._clock.seconds()
            parts = self.responder.parts.current
            if offers.valid(parts, parts.policy, now):
                found = offers.find(data, addr, info)
                if found is not None and not (
                        self._pending and (data[28:44], int.from_bytes(data[4:8], "big"))
                        in self._pending):
                    self._offer(found[0], found[1], data, addr, info, now)
                    return
        observer = self.observer
        name = self._ifname(info.ifindex) if info is not None and info.ifindex else None
        try:
            request = receive(Arrival(data, addr, info, name), self.spec, address=self.address,
                              relays=self.relays, interfaces=self.interfaces,
                              route=self._route)
        except Dropped as e:
            if observer is not None:
                observer.dhcp_dropped(self.stage)
            if e.reason == "no-address":
                if not self._warned or self.log_packets:
                    self._warned = True
                    log.warn("{stage}: no address to advertise to {mac} (set server.address)",
                             stage=self.stage, mac=e.machine.mac if e.machine else "?")
            elif self.log_packets:
                log.debug("{stage}: ignoring a datagram from {peer}: {why}", stage=self.stage,
                          peer=addr, why=e.why)
            return
        packet, machine = request.packet, request.machine
        key = (packet.chaddr, packet.xid)
        if key in self._pending:
            # The client retransmitted while its answer is being decided:
            # coalesce rather than queue a second lookup.
            if observer is not None:
                observer.dhcp_dropped(self.stage)
            return
        started = observer.dhcp_received(self.stage) if observer is not None else 0.0
        # Nearly always the answer is known at once (the rules are in
        # memory): then it is sent now, with no Deferred; the steps are the
        # callbacks below, in the same order.
        parts = self.responder.parts.current
        d = eager(respond(request, self.spec, self.responder))
        if isinstance(d, Done):
            result: Any
            try:
                result = self._send(d.value, request)
                if result is not None and d.value is not None:
                    self._keep(parts, request, d.value)
            except Exception:
                result = Failure()
            if observer is not None:
                try:
                    result = observer.dhcp_answered(result, self.stage, packet, machine, addr,
                                                    started)
                except Exception:
                    result = Failure()
            if isinstance(result, Failure):
                log.failure("{stage}: failed to answer {mac}", result, stage=self.stage,
                            mac=machine.mac)
            return
        self._pending.add(key)
        d.addCallback(self._send, request)
        if observer is not None:
            d.addBoth(observer.dhcp_answered, self.stage, packet, machine, addr, started)
        d.addErrback(lambda f: log.failure("{stage}: failed to answer {mac}", f,
                                           stage=self.stage, mac=machine.mac))
        d.addBoth(lambda _: self._pending.discard(key))

    def _send(self, reply: Reply | None, request: Request) -> BootAnswer | None:
        if reply is None:
            return None
        self._write(reply.data, reply.destination, request.arrival.info)
        self._announce(request.machine.mac, request.machine, reply.answer, reply.destination)
        return reply.answer

    def _keep(self, parts: BootParts, request: Request, reply: Reply) -> None:
        """
        Keep C{reply} for the fast path, if it is what every request of
        its shape gets (see L{BootResponder.keepable}).
        """
        offers = self.offers
        current = self.responder.parts.current
        if (offers is None or parts is not current
                or not offers.valid(current, current.policy, self._clock.seconds())):
            return
        answer, arrival, machine = reply.answer, request.arrival, request.machine
        if self.responder.keepable(current, machine, request.server, self.stage, answer,
                                   interface=arrival.interface, relay=request.relay):
            offers.keep(arrival.data, arrival.source, arrival.info, answer, reply.destination,
                        machine, request.packet.relayed)

    def _offer(self, offer: Offer, mac: str, data: bytes, addr: tuple[str, int],
               info: PacketInfo | None, received: float) -> None:
        """
        Send a kept offer (the fast path); what is written down about it
        waits for the end of the reactor turn (L{_flush}).
        """
        try:
            self._write(offer.data(data), offer.destination, info)
        except Exception:
            log.failure("{stage}: failed to answer {mac}", stage=self.stage, mac=mac)
            return
        self._announce(mac, offer.machine, offer.answer, offer.destination)
        self._kept.append((mac, offer, addr, self._clock.seconds() - received))
        if self._flushing is None:
            self._flushing = self._clock.callLater(0, self._flush)

    def _flush(self) -> None:
        """
        The boot log and the metrics of the offers the fast path sent
        since the last turn, as the pipeline writes them for its own.
        """
        self._flushing = None
        kept, self._kept = self._kept, []
        record = self.responder.boot_log.record
        stage = self.stage
        failed: Failure | None = None
        for mac, offer, _addr, _received in kept:
            answer = offer.answer
            try:
                record(mac, stage, arch=offer.machine.arch.slug, bootfile=answer.bootfile,
                       kind=answer.kind)
            except Exception:
                failed = Failure()  # the rest are still written; one line says so
        if failed is not None:
            log.failure("{stage}: writing answers to the boot log failed", failed,
                        stage=stage)
        if self.observer is not None:
            self.observer.dhcp_offered(stage, kept)

    def _announce(self, mac: str, machine: Machine, answer: BootAnswer,
                  dest: tuple[str, int]) -> None:
        left_out = self.budget.spend()
        if left_out is None and not self.log_packets:
            return  # the usual case in a storm: nothing to log
        fields = dict(mac=mac, stage=self.stage, arch=machine.arch.slug,
                      code=machine.arch.code, bootfile=answer.bootfile, kind=answer.kind,
                      server=answer.server, dest=dest)
        if left_out is None:
            log.debug("{mac}: {stage} {arch} -> {bootfile}", **fields)
        elif left_out:
            log.info("{mac}: {stage} {arch} -> {bootfile} ({left_out} answers since the last "
                     "line were not logged: too many to log)", left_out=left_out, **fields)
        else:
            log.info("{mac}: {stage} {arch} -> {bootfile}", **fields)

    def _write(self, data: bytes, dest: tuple[str, int], info: PacketInfo | None) -> None:
        transport = self.transport
        if transport is None:
            return
        send_via = getattr(transport, "sendVia", None)
        if send_via is not None and dest[0] == _BROADCAST_ADDRESS:
            # A broadcast must leave through the interface the request came
            # in on; routing would pick the default route's interface.
            send_via(data, dest, info)
        else:
            # Unicast (to a relay, or to a client with an address) follows
            # the routing table, which knows the way back.
            transport.write(data, dest)


class ProxyDHCPProtocol(_BootProtocol):
    """
    Answers network-boot DHCPDISCOVERs with a proxy offer: boot
    information, never an address.
    """

    spec = PROXYDHCP


class BootServerProtocol(_BootProtocol):
    """
    The PXE boot server on port 4011: UEFI firmware (and some BIOS ROMs)
    send a DHCPREQUEST here after a proxy offer without option 43, and get
    a DHCPACK naming the file to fetch by TFTP.
    """

    spec = BOOTSERVER
