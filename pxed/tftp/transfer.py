# -*- test-case-name: tests.test_tftp_transfer -*-
"""
The transfer-ID side of the TFTP server: one UDP port per transfer.

Every DATA packet of every transfer goes out through here and every ACK
comes in through here, so this is the per-packet path and it is kept
short.  L{TransferPort} is a minimal UDP port for it, used on reactors
that let pxed watch its own file descriptors (all the POSIX ones), because
Twisted's general UDP port costs more per packet than a transfer can
afford: it checks the address's syntax on every write, reads until the
socket raises C{EAGAIN} (an exception per wake-up in lock-step), and logs
two lines per port opened and closed, which is noise at hundreds of
transfers a minute.  It also sends a window in as few system calls as
Linux allows (UDP segmentation offload).  Other reactors get
C{listenUDP}.
"""

from __future__ import annotations

import errno
import socket
import struct
import sys
from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IReactorFDSet, IReadDescriptor
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from . import packet as P
from .options import Negotiated, TransferResult

__all__ = ["Session", "TransferProtocol", "TransferPort", "listen_transfer"]

Address = tuple[str, int]


class Session(Protocol):
    """
    One transfer's state machine, as a transfer port drives it: a
    L{pxed.tftp.session.ReadSession} or a L{pxed.tftp.upload.WriteSession}.
    """

    done: Deferred[TransferResult]
    negotiated: Negotiated

    @property
    def finished(self) -> bool: ...

    def start(self) -> None: ...

    def datagramReceived(self, datagram: bytes) -> None: ...

    def abort(self, reason: str) -> None: ...


#: Makes the session of a transfer, given how to send one packet and, where
#: the transport can, a burst of them at once.
SessionFactory = Callable[
    [Callable[[bytes], object], Callable[[list[bytes]], object] | None], Session
]

log = Logger()

# A congested or refusing path is the same as a lost packet to TFTP: the
# retransmission timer recovers, so these never reach the session.
_SEND_DROPPED = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS, errno.ECONNREFUSED,
                           errno.EINTR, errno.EHOSTUNREACH, errno.ENETUNREACH})
_ERROR_5 = P.encode(P.Error(P.ERR_UNKNOWN_TID, "Unknown transfer ID"))
#: Linux's UDP generic segmentation offload (linux/udp.h), not exported by
#: Python's socket module; at most 64 segments (older kernels' limit) and
#: one IP packet's worth of payload per call.
UDP_SEGMENT = 103
_GSO_SEGMENTS = 64
_GSO_BYTES = 65507
_U16 = struct.Struct("=H").pack


class TransferProtocol(DatagramProtocol):
    """
    The transfer-ID port of one transfer: feeds the client's packets to its
    L{Session} and turns strangers away with ERROR 5.
    """

    # One port per transfer: Twisted's per-port start/stop lines would drown
    # the one info line per transfer that this package logs.
    noisy = False

    def __init__(self, peer: Address, session_factory: SessionFactory) -> None:
        self.peer = peer
        self._session_factory = session_factory
        self.session: Session | None = None

    def startProtocol(self) -> None:
        transport = self.transport
        # The session writes straight to a TransferPort (which drops what
        # cannot be sent, even once closed); through _send otherwise.
        if isinstance(transport, TransferPort):
            self.session = self._session_factory(
                transport.sender(self.peer), transport.burst_sender(self.peer))
        else:
            self.session = self._session_factory(self._send, None)
        self.session.start()

    def _send(self, datagram: bytes) -> None:
        if self.transport is not None:
            self.transport.write(datagram, self.peer)

    def stopProtocol(self) -> None:
        # The port closed under a live session (reactor shutdown): end it.
        if self.session is not None and not self.session.finished:
            self.session.abort("Transfer port closed")

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        try:
            if addr == self.peer or (addr[0], addr[1]) == self.peer:
                if self.session is not None:
                    self.session.datagramReceived(datagram)
            else:
                self._stranger(datagram, addr)
        except Exception:
            log.failure("error handling a datagram from {peer}", peer=addr)

    def _stranger(self, datagram: bytes, addr: Address) -> None:
        # Never answer an ERROR with an ERROR: two confused peers would loop.
        if datagram[:2] == b"\x00\x05" or self.transport is None:
            return
        self.transport.write(_ERROR_5, (addr[0], addr[1]))


@implementer(IReadDescriptor, IListeningPort)
class TransferPort:
    """
    A quiet, lean UDP port for one transfer (see the module docstring).

    It reads one datagram per wake-up: the reactor's poller is level
    triggered, so anything left is read on the next turn, and a transfer
    rarely has more than one ACK waiting.
    """

    def __init__(self, protocol: DatagramProtocol, interface: str, reactor: Any,
                 max_size: int = 2048) -> None:
        self.protocol = protocol
        self.interface = interface
        self.reactor = reactor
        self.max_size = max_size
        self.socket: socket.socket | None = None
        self._fileno = -1
        #: Whether bursts may use UDP segmentation offload (Linux only).
        self.gso = sys.platform.startswith("linux")

    def startListening(self) -> None:
        family = socket.AF_INET6 if ":" in self.interface else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.bind((self.interface, 0))
        except OSError as e:
            sock.close()
            raise CannotListenError(self.interface, 0, e) from None
        self.socket, self._fileno = sock, sock.fileno()
        self.protocol.makeConnection(self)  # type: ignore[arg-type]
        if self.socket is not None:  # the protocol may have stopped at once
            self.reactor.addReader(self)

    def fileno(self) -> int:
        return self._fileno

    def logPrefix(self) -> str:
        return "TFTP transfer"

    def doRead(self) -> None:
        sock = self.socket
        if sock is None:
            return
        try:
            data, addr = sock.recvfrom(self.max_size)
        except OSError:
            return  # EAGAIN, or an ICMP error reported by the kernel
        try:
            self.protocol.datagramReceived(data, addr)
        except Exception:
            log.failure("error handling a datagram from {peer}", peer=addr)

    def write(self, datagram: bytes, addr: Address) -> None:
        sock = self.socket
        if sock is None:
            return
        try:
            sock.sendto(datagram, addr)
        except OSError as e:
            if e.errno not in _SEND_DROPPED:
                raise

    def sender(self, addr: Address) -> Callable[[bytes], None]:
        """C{write} to C{addr}, as one call: what a session sends through."""

        def send(datagram: bytes) -> None:
            sock = self.socket
            if sock is None:
                return
            try:
                sock.sendto(datagram, addr)
            except OSError as e:
                if e.errno not in _SEND_DROPPED:
                    raise

        return send

    def burst_sender(self, addr: Address) -> Callable[[list[bytes]], None]:
        """
        Send a burst of datagrams to C{addr}: all of one size but the last,
        which may be shorter (a window of DATA packets).

        With UDP segmentation offload (Linux's C{UDP_SEGMENT}), up to 64
        of them go out in one system call and the kernel (or the NIC) cuts
        them apart; the receiver sees ordinary datagrams.  Where the path
        cannot do that (no checksum offload, a segment larger than the MTU,
        an old kernel), the port falls back for good to one call each.
        """
        send = self.sender(addr)

        def send_many(datagrams: list[bytes]) -> None:
            sock = self.socket
            if sock is None:
                return
            size = len(datagrams[0])
            per_call = min(_GSO_SEGMENTS, _GSO_BYTES // size) if self.gso else 1
            i = 0
            while i < len(datagrams):
                group = datagrams[i : i + per_call]
                if len(group) == 1:
                    send(group[0])
                else:
                    try:
                        sock.sendmsg([b"".join(group)],
                                     [(socket.IPPROTO_UDP, UDP_SEGMENT, _U16(size))], 0, addr)
                    except OSError as e:
                        if e.errno not in _SEND_DROPPED:
                            self.gso = False
                            per_call = 1
                            continue  # the same group again, one by one
                i += len(group)

        return send_many

    def getHost(self) -> IPv4Address | IPv6Address:
        if self.socket is None:
            raise OSError(errno.EBADF, "transfer port closed")
        host, port = self.socket.getsockname()[:2]
        if self.socket.family == socket.AF_INET6:
            return IPv6Address("UDP", host, port)
        return IPv4Address("UDP", host, port)

    def stopListening(self) -> None:
        sock, self.socket = self.socket, None
        if sock is None:
            return
        self.reactor.removeReader(self)
        sock.close()
        self._fileno = -1
        self.protocol.doStop()

    def connectionLost(self, reason: Failure) -> None:
        """The reactor gave up on the descriptor: close like stopListening."""
        self.stopListening()


def listen_transfer(reactor: Any, protocol: DatagramProtocol, interface: str,
                    max_size: int = 2048) -> Any:
    """
    Open a transfer port on an ephemeral port of C{interface} ("" for the
    kernel's choice), with L{TransferPort} where the reactor allows;
    C{max_size} is the largest datagram it reads (an ACK for reads, a DATA
    block for writes).
    """
    if IReactorFDSet.providedBy(reactor):
        port = TransferPort(protocol, interface, reactor, max_size)
        port.startListening()
        return port
    if max_size > 8192:  # Twisted's default
        return reactor.listenUDP(0, protocol, interface=interface, maxPacketSize=max_size)
    return reactor.listenUDP(0, protocol, interface=interface)
