# -*- test-case-name: tests.test_dhcp_pipeline -*-
"""
One datagram on port 67 (ProxyDHCP) or 4011 (boot server), from the bytes
that arrived to the bytes pxed sends, with no socket, clock or logging.

The protocols (L{pxed.dhcp.protocol}) and C{pxed explain} both run every
datagram through these two calls, so what C{explain} prints is what the
server sends, byte for byte:

  1. L{receive}: is the datagram for us, and from whom?  In order: the
     C{server.interfaces} restriction, decoding and screening
     (L{pxed.dhcp.exchange.screen}: malformed, not a request, wrong message
     type for the port, not network-booting), malformed options pxed
     decides on or echoes and a giaddr no reply may go to
     (L{pxed.dhcp.sanity}), then the address to advertise.  Raises
     L{Dropped} with the reason; returns a L{Request}.
  2. L{respond}: what the responder decides for it, built into the reply
     (L{pxed.dhcp.reply}), with the relay agent information (option 82)
     echoed, encoded, and where it goes.  C{None}: silence.

What stays in the protocols is what needs the running server: coalescing
retransmissions, metrics and timelines, the log lines, the transport.

Where to add a check or a step:
  - a reason to drop a request (a giaddr that cannot be a relay, options
    that contradict each other, ...): raise L{Dropped} in L{receive}, with
    C{reason="ignored"} so it is counted and logged like the others;
  - a fast path (answers cached per machine, reply templates): in
    L{respond}, which is the only place a reply is made;
  - another port's protocol (full DHCP mode) can reuse L{Arrival},
    L{Dropped} and L{echo_relay_information}.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Protocol

from pxed.dhcp.exchange import Ignored, Relays, Stage, advertised_address, screen
from pxed.dhcp.packet import DHCPPacket, Option, decode, encode
from pxed.dhcp.reply import BootAnswer
from pxed.dhcp.sanity import option_problem, relay_problem
from pxed.machine import Machine
from pxed.net import PacketInfo

__all__ = ["Arrival", "Request", "Reply", "Dropped", "Responder", "receive", "respond",
           "build_reply", "echo_relay_information"]


@dataclass(frozen=True, slots=True)
class Arrival:
    """
    A datagram as the socket delivered it.

    @ivar info: the socket's packet info (C{IP_PKTINFO}), if any.
    @ivar interface: the name of the interface it arrived on, if known.
    """

    data: bytes
    source: tuple[str, int]
    info: PacketInfo | None = None
    interface: str | None = None


@dataclass(frozen=True, slots=True)
class Request:
    """
    A datagram pxed answers: decoded, classified, and the address it is
    answered from.
    """

    arrival: Arrival
    packet: DHCPPacket
    machine: Machine
    server: str

    @property
    def relay(self) -> str | None:
        """
        The relay agent's address (giaddr) if the request was relayed.
        """
        return self.packet.giaddr if self.packet.relayed else None


@dataclass(frozen=True)
class Reply:
    """
    What pxed sends: the decision, its bytes and where they go, and the
    reply packet they encode.

    The packet is built only when asked for (C{pxed explain} shows it):
    the server sends C{data}, which for a ProxyDHCP offer comes from a
    template (L{pxed.dhcp.offertemplate}) without building a packet.
    """

    answer: BootAnswer
    data: bytes
    destination: tuple[str, int]
    request: DHCPPacket = field(repr=False, compare=False)
    stage: Stage = field(repr=False, compare=False)

    @cached_property
    def packet(self) -> DHCPPacket:
        """
        The reply packet C{data} encodes.
        """
        return _reply_packet(self.request, self.answer, self.stage)


class Dropped(Exception):
    """
    The datagram gets no reply.

    @ivar reason: C{"interface"} (not on C{server.interfaces}),
        C{"ignored"} (screened out) or C{"no-address"} (nothing to
        advertise): the protocols log each kind differently.
    @ivar why: a sentence for the debug log and for C{pxed explain}.
    @ivar packet: the decoded packet, when it could be decoded.
    @ivar machine: the client, when it was classified.
    """

    def __init__(self, reason: str, why: str, packet: DHCPPacket | None = None,
                 machine: Machine | None = None) -> None:
        super().__init__(why)
        self.reason = reason
        self.why = why
        self.packet = packet
        self.machine = machine


class Responder(Protocol):
    """
    What L{respond} asks: L{pxed.dhcp.responder.BootResponder}.
    """

    async def answer(self, machine: Machine, server: str, stage: str, *,
                     interface: str | None = None,
                     relay: str | None = None) -> BootAnswer | None: ...


def _decoded(data: bytes) -> DHCPPacket | None:
    try:
        return decode(data)
    except ValueError:
        return None


def receive(
    arrival: Arrival,
    stage: Stage,
    *,
    address: str | None,
    relays: Relays = (),
    interfaces: frozenset[str] = frozenset(),
    route: Callable[[str], str | None] | None = None,
) -> Request:
    """
    Screen C{arrival} at C{stage}'s port and find the address to answer
    from (see L{pxed.dhcp.exchange.advertised_address} for C{address},
    C{relays} and C{route}).

    @param interfaces: if not empty, only datagrams that arrived on one of
        these interfaces are answered.
    @raise Dropped: the datagram gets no reply.
    """
    if interfaces and arrival.interface not in interfaces:
        where = arrival.interface or "an unknown interface"
        raise Dropped("interface", f"arrived on {where}, not on {', '.join(sorted(interfaces))}",
                      _decoded(arrival.data))
    try:
        packet, machine = screen(arrival.data, stage)
    except Ignored as e:
        raise Dropped("ignored", str(e), _decoded(arrival.data)) from None
    malformed = option_problem(packet)
    if malformed is not None:
        raise Dropped("ignored", f"malformed: {malformed}", packet, machine)
    info = arrival.info
    own = (address, info.local if info else None, info.destination if info else None,
           *(chosen for _, chosen in relays))
    relay = relay_problem(packet, arrival.source[0], own, relays)
    if relay is not None:
        raise Dropped("ignored", f"giaddr {packet.giaddr} {relay}", packet, machine)
    server = advertised_address(packet, arrival.info, address, relays, route)
    if server is None:
        raise Dropped("no-address", "no address to advertise (set server.address)", packet,
                      machine)
    return Request(arrival, packet, machine, server)


def echo_relay_information(request: DHCPPacket, reply: DHCPPacket) -> DHCPPacket:
    """
    C{reply} with the request's relay agent information (option 82)
    copied unchanged, when the request was relayed and carried it: RFC
    3046 section 2.2 asks the server to echo it, and relays that insert it
    (most enterprise switches) may drop a reply without it.
    """
    value = request.options.get(Option.RELAY_AGENT_INFORMATION)
    if not request.relayed or value is None:
        return reply
    options = dict(reply.options)
    options[Option.RELAY_AGENT_INFORMATION] = value
    return replace(reply, options=options)


def _reply_packet(request: DHCPPacket, answer: BootAnswer, stage: Stage) -> DHCPPacket:
    return echo_relay_information(request, stage.build(request, answer))


def build_reply(request: Request, answer: BootAnswer, stage: Stage) -> Reply:
    """
    The reply C{answer} makes for C{request} at C{stage}'s port.
    """
    packet = request.packet
    destination = stage.destination(packet, request.arrival.source)
    if stage.encoded is not None:
        return Reply(answer, stage.encoded(request.arrival.data, packet, answer), destination,
                     packet, stage)
    reply = Reply(answer, b"", destination, packet, stage)
    object.__setattr__(reply, "data", encode(reply.packet))
    return reply


async def respond(request: Request, stage: Stage, responder: Responder) -> Reply | None:
    """
    Ask C{responder} what C{request}'s machine is told, and build the
    reply; C{None} when pxed stays silent.
    """
    answer = await responder.answer(request.machine, request.server, stage.name,
                                    interface=request.arrival.interface, relay=request.relay)
    if answer is None:
        return None
    return build_reply(request, answer, stage)
