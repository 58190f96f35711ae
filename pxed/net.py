# -*- test-case-name: tests.test_net -*-
"""
A UDP port that knows which interface and local address each datagram
arrived on, and can send out of a chosen interface.

A ProxyDHCP server must advertise the address of the interface a request
came in on and broadcast its reply out of that same interface; Twisted's
UDP port reads with C{recvfrom}, which tells neither.  Linux reports both
through the C{IP_PKTINFO} control message, read here with C{recvmsg}.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.internet import udp
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

__all__ = ["PacketInfo", "PacketInfoPort", "IP_PKTINFO", "interface_address", "interface_exists",
           "interface_name", "InterfaceNames", "route_source", "is_unicast", "requested_address"]

#: Linux's value; Python's socket module does not export it.
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
#: Receive buffer asked for: a rack powering on sends thousands of
#: DISCOVERs in a second, and the default (about 200 kB, a few hundred
#: datagrams) overflows during any pause of the process.
RECEIVE_BUFFER = 4 << 20
_IN_PKTINFO = struct.Struct("=i4s4s")  # ifindex, spec_dst (local), addr (header dst)
_ANCILLARY_SIZE = socket.CMSG_SPACE(_IN_PKTINFO.size)

log = Logger()


@dataclass(frozen=True)
class PacketInfo:
    """
    Where a datagram arrived.

    @ivar ifindex: the receiving interface.
    @ivar local: the local address that routing associates with it (the
        address to advertise).
    @ivar destination: the header's destination (255.255.255.255 for a
        broadcast).
    """

    ifindex: int
    local: str
    destination: str


class PacketInfoReceiver(Protocol):
    def datagramReceivedWithInfo(
        self, data: bytes, addr: tuple[str, int], info: PacketInfo | None
    ) -> None: ...


def _parse_ancillary(ancdata: list[tuple[int, int, bytes]]) -> PacketInfo | None:
    for level, kind, payload in ancdata:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(payload) >= _IN_PKTINFO.size:
            ifindex, local, dest = _IN_PKTINFO.unpack_from(payload)
            return PacketInfo(ifindex, socket.inet_ntoa(local), socket.inet_ntoa(dest))
    return None


class PacketInfoPort(udp.Port):
    """
    A C{udp.Port} that delivers L{PacketInfo} with each datagram to a
    protocol providing C{datagramReceivedWithInfo}, broadcasts are allowed,
    and that can optionally be bound to one interface (C{SO_BINDTODEVICE}).

    @cvar maxDatagrams: the most datagrams one read event takes in before
        the reactor turns to the other ports.
    """

    maxDatagrams = 64

    def __init__(
        self,
        port: int,
        proto: DatagramProtocol,
        interface: str = "",
        maxPacketSize: int = 8192,
        reactor: Any = None,
        device: str | None = None,
        reuse_port: bool = False,
    ) -> None:
        super().__init__(port, proto, interface, maxPacketSize, reactor)
        self.device = device
        #: Share the port with other processes doing the same (SO_REUSEPORT):
        #: the kernel spreads datagrams over them by source address and port.
        self.reuse_port = reuse_port

    def createInternetSocket(self) -> socket.socket:
        skt = super().createInternetSocket()
        skt.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        skt.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        try:
            # Past net.core.rmem_max, which needs CAP_NET_ADMIN ...
            skt.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)
        except OSError:
            # ... else as much of it as the limit allows.
            skt.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        if self.device:
            skt.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, self.device.encode() + b"\0")
        if self.reuse_port:
            skt.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        return skt

    def doRead(self) -> None:
        """
        Like C{udp.Port.doRead}, with C{recvmsg} for the packet info.
        Exceptions from the protocol are logged, never raised, so one bad
        datagram cannot stop the port.
        """
        # Bounded in datagrams as well as bytes: a flood of tiny datagrams
        # on one port (the TFTP request port) must not keep the reactor
        # from the others (transfer ports) for the 256 KB that would take.
        read = count = 0
        while read < self.maxThroughput and count < self.maxDatagrams:
            count += 1
            try:
                data, ancdata, _flags, addr = self.socket.recvmsg(
                    self.maxPacketSize, _ANCILLARY_SIZE
                )
            except OSError as se:
                if se.args[0] in udp._sockErrReadIgnore:  # type: ignore[attr-defined]
                    return
                if se.args[0] in udp._sockErrReadRefuse:  # type: ignore[attr-defined]
                    return
                raise
            read += len(data)
            try:
                receiver = getattr(self.protocol, "datagramReceivedWithInfo", None)
                if receiver is not None:
                    receiver(data, addr[:2], _parse_ancillary(ancdata))
                else:
                    self.protocol.datagramReceived(data, addr[:2])
            except Exception:
                log.failure("Unhandled error handling a datagram from {peer}", peer=addr)

    def sendVia(self, data: bytes, addr: tuple[str, int], info: PacketInfo | None) -> None:
        """
        Send C{data} to C{addr} out of the interface described by C{info}
        (so a broadcast leaves through the interface the request came in
        on), from its local address.
        """
        if info is None or info.ifindex == 0:
            self.write(data, addr)
            return
        cmsg = _IN_PKTINFO.pack(info.ifindex, socket.inet_aton("0.0.0.0"), b"\0\0\0\0")
        try:
            self.socket.sendmsg([data], [(socket.IPPROTO_IP, IP_PKTINFO, cmsg)], 0, addr)
        except OSError as e:
            log.warn("Cannot send {size} bytes to {peer}: {error}", size=len(data), peer=addr,
                     error=e)


def interface_address(name: str) -> str | None:
    """
    The first IPv4 address of interface C{name}, or C{None}.  Used to
    advertise the right address when service is restricted to one
    interface and no address is configured.
    """
    import fcntl

    SIOCGIFADDR = 0x8915
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            packed = fcntl.ioctl(s.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
        except OSError:
            return None
    return socket.inet_ntoa(packed[20:24])


def interface_exists(name: str) -> bool:
    """
    Whether this host has a network interface called C{name} now.
    """
    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    return True


def interface_name(ifindex: int) -> str | None:
    """
    The name of interface number C{ifindex}, or C{None} if there is none
    (it may have gone away since the datagram arrived).
    """
    try:
        return socket.if_indextoname(ifindex)
    except OSError:
        return None


class InterfaceNames:
    """
    L{interface_name} with a short memory: the name of an interface index
    is asked once a second at most, not once per datagram (it is a system
    call), yet a renamed or replaced interface is noticed soon.
    """

    def __init__(self, clock: IReactorTime, ttl: float = 1.0,
                 lookup: Callable[[int], str | None] = interface_name) -> None:
        self.clock = clock
        self.ttl = ttl
        self.lookup = lookup
        self._names: dict[int, tuple[float, str | None]] = {}

    def name(self, ifindex: int) -> str | None:
        now = self.clock.seconds()
        cached = self._names.get(ifindex)
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        name = self.lookup(ifindex)
        if len(self._names) > 4096:
            self._names.clear()
        self._names[ifindex] = (now, name)
        return name


def route_source(destination: str) -> str | None:
    """
    The local address this host would send from to reach C{destination},
    as the routing table says; C{None} if it is unreachable.

    Connecting a UDP socket makes the kernel choose the route and source
    address without sending anything.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect((destination, 67))
        except OSError:
            return None
        local: str = s.getsockname()[0]
    return None if local == "0.0.0.0" else local


def is_unicast(address: str) -> bool:
    """
    Whether C{address} names one host: not unspecified, multicast or the
    limited broadcast (nor unparseable).  Only such an address can be
    advertised to a client or replied from.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return not (ip.is_multicast or ip.is_unspecified or str(ip) == "255.255.255.255")


def requested_address(info: Any) -> str:
    """
    The unicast address a datagram was sent to, from its packet info (a
    L{PacketInfo}, or anything with C{destination} and C{local}), or "".
    """
    for name in ("destination", "local"):
        address = getattr(info, name, None)
        if isinstance(address, str) and is_unicast(address):
            return address
    return ""
