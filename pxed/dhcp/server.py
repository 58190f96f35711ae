# -*- test-case-name: tests.test_dhcp_server -*-
"""
pxed as the LAN's DHCP server (C{dhcp.mode: full}) on UDP 67.

Thin, like the proxy protocols: decode, find the client's pool, let the
L{LeaseKeeper} decide the address, let the L{BootResponder} (the same one
proxy mode asks) decide the boot information for network-booting clients,
build the reply (L{pxed.dhcp.leasereply}), send.  Malformed datagrams and
replies get nothing; a client pxed has no range for gets nothing (another
server may be meant); a request for an address pxed cannot give gets a
NAK.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from pxed.config.dhcp import DHCPConfig
from pxed.dhcp.allocator import LeaseKeeper
from pxed.dhcp.classify import NotNetworkBooting, classify
from pxed.dhcp.exchange import Relays, advertised_address
from pxed.dhcp.leasereply import NetworkOptions, lease_reply, nak, reply_destination
from pxed.dhcp.leases import Lease, Pool, client_key
from pxed.dhcp.listener import NetworkSide
from pxed.dhcp.packet import (
    BOOTREQUEST,
    DHCPPacket,
    MalformedPacket,
    MessageType,
    Option,
    decode,
    encode,
)
from pxed.dhcp.pipeline import echo_relay_information
from pxed.dhcp.reply import BootAnswer
from pxed.dhcp.sanity import option_problem, relay_problem
from pxed.machine import Machine
from pxed.net import PacketInfo, route_source
from pxed.parts import LiveParts, part

if TYPE_CHECKING:
    from pxed.dhcp.responder import BootResponder
    from pxed.observe import BootRecorder

__all__ = ["DHCPServerProtocol", "interface_network", "STAGE"]

log = Logger()

#: The boot log's stage for pxed's own DHCP ACK to a network-booting client.
STAGE = "dhcp"

_BROADCAST_ADDRESS = "255.255.255.255"


def interface_network(name: str) -> ipaddress.IPv4Network | None:
    """
    The IPv4 subnet of interface C{name}'s (first) address, or C{None}.
    """
    import fcntl

    SIOCGIFADDR, SIOCGIFNETMASK = 0x8915, 0x891B
    request = struct.pack("256s", name.encode()[:15])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            address = socket.inet_ntoa(fcntl.ioctl(s.fileno(), SIOCGIFADDR, request)[20:24])
            mask = socket.inet_ntoa(fcntl.ioctl(s.fileno(), SIOCGIFNETMASK, request)[20:24])
        except OSError:
            return None
    return ipaddress.IPv4Network(f"{address}/{mask}", strict=False)


class DHCPServerProtocol(NetworkSide, DatagramProtocol):
    """
    Hands out addresses, and boot information to network-booting clients.

    @ivar keeper: the lease rules over the lease store (which a reload
        keeps: its file needs a restart).
    @ivar dhcp: the C{dhcp:} section in use, read from the live parts at
        each request, so a reload changes ranges, router, DNS, lease time
        and C{clients} at once (see L{pxed.parts}).
    @ivar networks: the subnet of an interface, by name (for C{range:}).
    """

    stage = STAGE
    observer: BootRecorder | None = None
    dhcp = part[DHCPConfig]()

    def __init__(
        self,
        keeper: LeaseKeeper,
        responder: BootResponder,
        address: str | None = None,
        relays: Relays = (),
        interfaces: Iterable[str] = (),
        ifname: Callable[[int], str | None] | None = None,
        networks: Callable[[str], ipaddress.IPv4Network | None] = interface_network,
        route: Callable[[str], str | None] | None = route_source,
        clock: IReactorTime | None = None,
        log_packets: bool = False,
        parts: LiveParts | None = None,
        dhcp: DHCPConfig | None = None,
    ) -> None:
        self.keeper = keeper
        self.responder = responder
        # The responder's parts unless told otherwise: one reference.
        self.parts = parts if parts is not None else responder.parts
        if dhcp is not None:
            self.dhcp = dhcp
        self.clock = self._network_side(address, relays, interfaces, ifname, route, clock,
                                        log_packets)
        self._networks = networks
        self._warned: set[str] = set()
        self._pending: set[tuple[bytes, int, int]] = set()
        #: Why the last request got no reply (for C{pxed explain}).
        self.silence: str | None = None

    # -- screening ------------------------------------------------------------

    def _drop(self, why: str, peer: tuple[str, int]) -> None:
        self.silence = why
        if self.observer is not None:
            self.observer.dhcp_dropped(self.stage)
        if self.log_packets:
            log.debug("dhcp: ignoring a datagram from {peer}: {why}", peer=peer, why=why)

    def _warn_once(self, key: str, message: str, **fields: Any) -> None:
        if key in self._warned and not self.log_packets:
            return
        self._warned.add(key)
        log.warn(message, **fields)

    def pool(self, packet: DHCPPacket, info: PacketInfo | None,
             interface: str | None) -> Pool | None:
        """
        The pool a request draws from: its relay's subnet's (by giaddr);
        for a request not relayed, the C{ranges:} subnet of the address it
        arrived on, else C{range:} if it lies in the subnet of the
        interface it arrived on.
        """
        config = self.dhcp
        if packet.relayed:
            try:
                giaddr = ipaddress.IPv4Address(packet.giaddr)
            except ValueError:
                return None
            return next((p for p in config.relayed if giaddr in p.network), None)
        if info is not None and info.local != "0.0.0.0":
            local = ipaddress.IPv4Address(info.local)
            for candidate in config.relayed:
                if local in candidate.network:
                    return candidate
        if config.local is None or interface is None:
            return None
        network = self._networks(interface)
        return config.local.pool(network) if network is not None else None

    def _network_options(self, pool: Pool | None, packet: DHCPPacket) -> NetworkOptions:
        config = self.dhcp
        if pool is None:
            return NetworkOptions(router=config.router, dns=config.dns)
        router = config.router
        if router is not None and ipaddress.IPv4Address(router) not in pool.network:
            router = None
        if router is None and packet.relayed:
            # The relay agent is the relayed subnet's gateway.
            router = packet.giaddr
        return NetworkOptions(netmask=pool.netmask, router=router, dns=config.dns)

    # -- receiving ------------------------------------------------------------

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:
        self.datagramReceivedWithInfo(data, addr, None)

    def datagramReceivedWithInfo(
        self, data: bytes, addr: tuple[str, int], info: PacketInfo | None
    ) -> None:
        name = self._ifname(info.ifindex) if info is not None and info.ifindex else None
        if self.interfaces and name not in self.interfaces:
            return self._drop(f"arrived on {name}, not on {sorted(self.interfaces)}", addr)
        try:
            packet = decode(data)
        except MalformedPacket as e:
            return self._drop(f"malformed: {e}", addr)
        kind = packet.message_type
        if packet.op != BOOTREQUEST or kind not in MessageType.NAMES or kind in (
                MessageType.OFFER, MessageType.ACK, MessageType.NAK):
            return self._drop("not a DHCP client message", addr)
        if packet.hlen == 0 or packet.chaddr[:packet.hlen].count(0) == packet.hlen:
            return self._drop("no client hardware address", addr)
        try:
            machine: Machine | None = classify(packet)
        except NotNetworkBooting as e:
            machine = None
            if self.dhcp.clients == "boot":
                return self._drop(f"{e} (dhcp.clients: boot)", addr)
        own = (self.address, info.local if info else None, info.destination if info else None,
               *(chosen for _, chosen in self.relays))
        relay = relay_problem(packet, addr[0], own, self.relays)
        if relay is not None:
            return self._drop(f"giaddr {packet.giaddr} {relay}", addr)
        if machine is not None and (malformed := option_problem(packet)) is not None:
            return self._drop(f"malformed: {malformed}", addr)
        server = advertised_address(packet, info, self.address, self.relays, self._route)
        if server is None:
            self._warn_once("address", "dhcp: no address to advertise to {mac} (set "
                            "server.address)", mac=packet.mac)
            return self._drop("no server address", addr)
        pool = self.pool(packet, info, name)
        key = (packet.chaddr, packet.xid, kind)
        if key in self._pending:
            return self._drop("retransmission of a request being answered", addr)
        self._pending.add(key)
        started = self.clock.seconds()
        d = ensureDeferred(self._handle(packet, kind, machine, server, pool, name, info))
        if machine is not None and self.observer is not None:
            d.addBoth(self.observer.dhcp_answered, self.stage, packet, machine, addr, started)
        d.addErrback(lambda f: log.failure("dhcp: failed to answer {mac}", f, mac=packet.mac))
        d.addBoth(lambda _: self._pending.discard(key))

    async def _handle(self, packet: DHCPPacket, kind: int, machine: Machine | None, server: str,
                      pool: Pool | None, interface: str | None,
                      info: PacketInfo | None) -> BootAnswer | None:
        keeper = self.keeper
        config = self.dhcp
        client = client_key(packet)
        requested = _requested(packet)
        server_id = _server_id(packet)
        if kind == MessageType.INFORM:
            boot = await self._boot(machine, server, interface, packet)
            reply = lease_reply(packet, MessageType.ACK, server, None, None,
                                self._network_options(pool, packet), boot)
            self._send(packet, reply, info, "ACK (inform)", machine, boot)
            return boot
        if server_id is not None and server_id != server:
            # Meant for another server: the client chose that one's offer.
            self.silence = f"for server {server_id}, not this one ({server})"
            if kind == MessageType.REQUEST:
                await keeper.forget_offer(client)
            return None
        if kind == MessageType.RELEASE:
            self.silence = "a RELEASE gets no reply"
            if packet.ciaddr != "0.0.0.0":
                await keeper.release(client, packet.ciaddr)
                log.info("{mac}: dhcp released {address}", mac=packet.mac, address=packet.ciaddr)
            return None
        if kind == MessageType.DECLINE:
            self.silence = "a DECLINE gets no reply"
            if requested is not None and await keeper.decline(client, requested):
                log.warn("{mac}: dhcp declined {address} (in use by another host): keeping it "
                         "out of use for a while", mac=packet.mac, address=requested)
            return None
        if pool is None:
            self.silence = ("no range for this network (dhcp.range must lie in the receiving "
                            "interface's subnet; dhcp.ranges by relay subnet)")
            self._warn_once(f"pool:{packet.giaddr}:{interface}",
                            "dhcp: no range for clients {where}: not answering them (see "
                            "dhcp.range and dhcp.ranges)",
                            where=f"relayed by {packet.giaddr}" if packet.relayed
                            else f"on {interface or 'this interface'}")
            return None
        if kind == MessageType.DISCOVER:
            lease = await keeper.offer(client, packet.mac, pool, requested)
            if lease is None:
                self.silence = f"no free address in {pool.network}"
                self._warn_once(f"full:{pool.network}", "dhcp: no free address in {network} "
                                "for {mac}", network=str(pool.network), mac=packet.mac)
                return None
            boot = await self._boot(machine, server, interface, packet, record=False)
            self._send(packet, self._lease_reply(packet, MessageType.OFFER, server, lease, pool,
                                                 boot), info, "OFFER", machine, boot)
            return boot
        # REQUEST: selecting (server id), init-reboot (option 50) or
        # renewing/rebinding (ciaddr).
        address = requested if requested is not None else (
            packet.ciaddr if packet.ciaddr != "0.0.0.0" else None)
        if address is None:
            self.silence = "a REQUEST naming no address (no option 50, no ciaddr)"
            return None
        lease = await keeper.bind(client, packet.mac, pool, address, config.lease_time)
        if lease is None:
            why = "address not on this network" if address not in pool else "address in use"
            self._send(packet, nak(packet, server, why), info, f"NAK {address} ({why})",
                       machine, None)
            return None
        boot = await self._boot(machine, server, interface, packet)
        self._send(packet, self._lease_reply(packet, MessageType.ACK, server, lease, pool, boot),
                   info, "ACK", machine, boot)
        return boot

    async def _boot(self, machine: Machine | None, server: str, interface: str | None,
                    packet: DHCPPacket, record: bool = True) -> BootAnswer | None:
        if machine is None:
            return None
        relay = packet.giaddr if packet.relayed else None
        return await self.responder.answer(machine, server, self.stage, interface=interface,
                                           relay=relay, record=record)

    def _lease_reply(self, packet: DHCPPacket, kind: int, server: str, lease: Lease, pool: Pool,
                     boot: BootAnswer | None) -> DHCPPacket:
        seconds = max(1, int(lease.expires - self.clock.seconds()))
        if kind == MessageType.OFFER:
            # An offer's hold is not the lease: tell the lease the ACK gives.
            seconds = int(self.dhcp.lease_time)
        return lease_reply(packet, kind, server, lease.address, seconds,
                           self._network_options(pool, packet), boot)

    # -- sending --------------------------------------------------------------

    def _send(self, request: DHCPPacket, reply: DHCPPacket, info: PacketInfo | None, what: str,
              machine: Machine | None, boot: BootAnswer | None) -> None:
        # A relay that inserted option 82 expects it back (RFC 3046).
        reply = echo_relay_information(request, reply)
        dest = reply_destination(request, reply)
        data = encode(reply)
        transport = self.transport
        if transport is not None:
            send_via = getattr(transport, "sendVia", None)
            if send_via is not None and dest[0] == _BROADCAST_ADDRESS:
                send_via(data, dest, info)
            else:
                transport.write(data, dest)
        left_out = self.budget.spend()
        fields = dict(mac=request.mac, stage=self.stage, what=what, address=reply.yiaddr,
                      dest=dest, bootfile=boot.bootfile if boot else None,
                      arch=machine.arch.slug if machine else None)
        line = "{mac}: dhcp {what} {address}" + (" ({arch} -> {bootfile})" if boot else "")
        if left_out is None:
            if self.log_packets:
                log.debug(line, **fields)
        elif left_out:
            log.info(line + " ({left_out} answers since the last line were not logged: too "
                     "many to log)", left_out=left_out, **fields)
        else:
            log.info(line, **fields)


def _option_address(packet: DHCPPacket, code: int) -> str | None:
    value = packet.options.get(code)
    if value is None or len(value) != 4:
        return None
    return socket.inet_ntoa(value)


def _requested(packet: DHCPPacket) -> str | None:
    return _option_address(packet, Option.REQUESTED_ADDRESS)


def _server_id(packet: DHCPPacket) -> str | None:
    return _option_address(packet, Option.SERVER_ID)
