# -*- test-case-name: tests.test_dhcp_ping -*-
"""
An ICMP echo probe: is anybody at this address?

pxed as the DHCP server asks before it first offers an address, as
dnsmasq does, so a host configured by hand with an address inside the
range is not given a twin.  The probe needs an ICMP socket: a raw one
(root, or C{CAP_NET_RAW}), else Linux's unprivileged "ping socket" (if
C{net.ipv4.ping_group_range} admits pxed's group).  Without either,
L{open_prober} returns C{None} and pxed offers addresses unprobed (it
says so once at start-up).
"""

from __future__ import annotations

import os
import socket
import struct
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

__all__ = ["ICMPProber", "open_prober", "PROBE_TIMEOUT", "echo_request", "checksum"]

log = Logger()

#: How long an address may take to answer: dnsmasq waits about as long.
PROBE_TIMEOUT = 0.5
ECHO_REQUEST = 8
ECHO_REPLY = 0
_HEADER = struct.Struct("!BBHHH")


def checksum(data: bytes) -> int:
    """
    The Internet checksum (RFC 1071).
    """
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_request(ident: int, seq: int, payload: bytes = b"pxed") -> bytes:
    header = _HEADER.pack(ECHO_REQUEST, 0, 0, ident, seq)
    return _HEADER.pack(ECHO_REQUEST, 0, checksum(header + payload), ident, seq) + payload


class ICMPProber:
    """
    Sends echo requests on one ICMP socket and matches the replies by
    source address; a reactor reader, so probes of many addresses run at
    once.

    @ivar raw: the socket is raw (replies come with their IP header, and
        every ICMP packet the host gets arrives here: only echo replies
        with our identifier count).
    """

    def __init__(self, sock: socket.socket, raw: bool, reactor: Any,
                 timeout: float = PROBE_TIMEOUT) -> None:
        self.socket = sock
        self.raw = raw
        self.reactor = reactor
        self.timeout = timeout
        self.ident = os.getpid() & 0xFFFF
        self._seq = 0
        self._waiting: dict[str, list[tuple[Deferred[bool], IDelayedCall]]] = {}
        sock.setblocking(False)
        reactor.addReader(self)

    # IReadDescriptor
    def fileno(self) -> int:
        return self.socket.fileno()

    def logPrefix(self) -> str:
        return "ICMPProber"

    def connectionLost(self, reason: Failure) -> None:
        self.close()

    def doRead(self) -> None:
        for _ in range(256):
            try:
                data, (source, *_) = self.socket.recvfrom(2048)
            except BlockingIOError:
                return
            except OSError as e:
                log.debug("ICMP probe socket: {error}", error=e)
                return
            if self.raw:
                if len(data) < 20:
                    continue
                data = data[(data[0] & 0x0F) * 4:]
            if len(data) < _HEADER.size:
                continue
            kind, _code, _sum, ident, _seq = _HEADER.unpack_from(data)
            # A ping socket's kernel rewrites the identifier: only raw
            # sockets can (and must) check it.
            if kind != ECHO_REPLY or (self.raw and ident != self.ident):
                continue
            self._answer(source, True)

    def _answer(self, address: str, answered: bool) -> None:
        for d, call in self._waiting.pop(address, []):
            if call.active():
                call.cancel()
            d.callback(answered)

    def probe(self, address: str) -> Deferred[bool]:
        """
        Fires C{True} if C{address} answers within C{timeout}, else
        C{False} (also when the echo request cannot be sent).
        """
        d: Deferred[bool] = Deferred()
        self._seq = (self._seq + 1) & 0xFFFF
        try:
            self.socket.sendto(echo_request(self.ident, self._seq), (address, 0))
        except OSError as e:
            log.debug("cannot probe {address}: {error}", address=address, error=e)
            d.callback(False)
            return d
        call = self.reactor.callLater(self.timeout, self._expire, address, d)
        self._waiting.setdefault(address, []).append((d, call))
        return d

    def _expire(self, address: str, d: Deferred[bool]) -> None:
        waiting = self._waiting.get(address, [])
        self._waiting[address] = [(other, call) for other, call in waiting if other is not d]
        if not self._waiting[address]:
            del self._waiting[address]
        d.callback(False)

    def close(self) -> None:
        """
        Stop reading and answer every probe in flight with C{False}.
        """
        if self.socket.fileno() != -1:
            self.reactor.removeReader(self)
            self.socket.close()
        for address in list(self._waiting):
            self._answer(address, False)


def open_prober(reactor: Any, timeout: float = PROBE_TIMEOUT) -> ICMPProber | None:
    """
    A prober on a raw ICMP socket, else on a ping socket, else C{None}.
    """
    for kind, raw in ((socket.SOCK_RAW, True), (socket.SOCK_DGRAM, False)):
        try:
            sock = socket.socket(socket.AF_INET, kind, socket.IPPROTO_ICMP)
        except OSError:
            continue
        return ICMPProber(sock, raw, reactor, timeout)
    return None
