# -*- test-case-name: tests.test_dhcp_protocol -*-
"""
The ProxyDHCP (UDP 67) and PXE boot server (UDP 4011) protocols.

Thin: decode, classify, ask the L{BootResponder}, encode, send.  Each
request is handled in its own Deferred so a slow policy lookup delays only
the client that caused it; anything malformed is dropped with a debug log
and no reply.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from pxed.dhcp.classify import NotNetworkBooting, classify
from pxed.dhcp.packet import (
    BOOTREQUEST,
    DHCPPacket,
    MalformedPacket,
    MessageType,
    decode,
    encode,
)
from pxed.dhcp.reply import BootAnswer, boot_ack, proxy_offer
from pxed.net import PacketInfo
from pxed.responder import BootResponder

__all__ = ["ProxyDHCPProtocol", "BootServerProtocol"]

log = Logger()

DHCP_SERVER_PORT = 67
DHCP_CLIENT_PORT = 68
BROADCAST = ("255.255.255.255", DHCP_CLIENT_PORT)


class _BootProtocol(DatagramProtocol):
    """
    What both ports share: parsing, classification, the advertised
    address, and never letting one datagram hurt the service.

    @ivar address: the configured server address; C{None} means "the
        address of the interface the request arrived on".
    """

    stage = ""
    accepts: frozenset[int] = frozenset()

    def __init__(self, responder: BootResponder, address: str | None = None) -> None:
        self.responder = responder
        self.address = address
        self._pending: set[tuple[str, int]] = set()

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:
        self.datagramReceivedWithInfo(data, addr, None)

    def datagramReceivedWithInfo(
        self, data: bytes, addr: tuple[str, int], info: PacketInfo | None
    ) -> None:
        try:
            packet = decode(data)
        except MalformedPacket as e:
            log.debug("{stage}: dropping malformed datagram from {peer}: {why}",
                      stage=self.stage, peer=addr, why=str(e))
            return
        if packet.op != BOOTREQUEST or packet.message_type not in self.accepts:
            return
        try:
            machine = classify(packet)
        except NotNetworkBooting as e:
            log.debug("{stage}: ignoring {mac}: {why}", stage=self.stage, mac=packet.mac,
                      why=str(e))
            return
        server = self._server_address(info)
        if server is None:
            log.warn("{stage}: no address to advertise to {mac} (set server.address)",
                     stage=self.stage, mac=machine.mac)
            return
        key = (machine.mac, packet.xid)
        if key in self._pending:
            # The client retransmitted while its answer is being decided:
            # coalesce rather than queue a second lookup.
            return
        self._pending.add(key)
        d: Deferred[BootAnswer | None] = ensureDeferred(
            self.responder.answer(machine, server, self.stage)
        )
        d.addCallback(self._send, packet, addr, info)
        d.addErrback(lambda f: log.failure("{stage}: failed to answer {mac}", f,
                                           stage=self.stage, mac=machine.mac))
        d.addBoth(lambda _: self._pending.discard(key))

    def _server_address(self, info: PacketInfo | None) -> str | None:
        if self.address is not None:
            return self.address
        if info is not None and info.local != "0.0.0.0":
            return info.local
        return None

    def _send(self, answer: BootAnswer | None, request: DHCPPacket, addr: tuple[str, int],
              info: PacketInfo | None) -> None:
        raise NotImplementedError

    def _write(self, data: bytes, dest: tuple[str, int], info: PacketInfo | None) -> None:
        transport = self.transport
        if transport is None:
            return
        send_via = getattr(transport, "sendVia", None)
        if send_via is not None:
            send_via(data, dest, info)
        else:
            transport.write(data, dest)


class ProxyDHCPProtocol(_BootProtocol):
    """
    Answers network-boot DHCPDISCOVERs with a proxy offer: boot
    information, never an address.
    """

    stage = "proxydhcp"
    accepts = frozenset({MessageType.DISCOVER})

    def _send(self, answer: BootAnswer | None, request: DHCPPacket, addr: tuple[str, int],
              info: PacketInfo | None) -> None:
        if answer is None:
            return
        reply = proxy_offer(request, answer)
        if request.relayed:
            dest = (request.giaddr, DHCP_SERVER_PORT)
        else:
            dest = BROADCAST
        self._write(encode(reply), dest, info)


class BootServerProtocol(_BootProtocol):
    """
    The PXE boot server on port 4011: UEFI firmware (and some BIOS ROMs)
    send a DHCPREQUEST here after a proxy offer without option 43, and get
    a DHCPACK naming the file to fetch by TFTP.
    """

    stage = "bootserver"
    accepts = frozenset({MessageType.REQUEST, MessageType.INFORM})

    def _send(self, answer: BootAnswer | None, request: DHCPPacket, addr: tuple[str, int],
              info: PacketInfo | None) -> None:
        if answer is None:
            return
        # The requester has its address by now: answer where it asked from.
        self._write(encode(boot_ack(request, answer)), addr, info)
