# -*- test-case-name: tests.test_testing -*-
"""
TFTP without the network, and with it.

L{FakeReactor} is a L{Clock} whose C{listenUDP} connects a recording
L{FakeTransport}: a L{pxed.tftp.protocol.TFTPServerProtocol} built on it
opens its transfer ports there, and L{ClockClient} reads files from it by
handing datagrams back and forth and advancing the clock when the server
waits, so retransmissions, timeouts and loss run in no time and the same
way every run.  L{RawClient} and L{ServerTestCase} are for tests over real
UDP on 127.0.0.1.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from pxed.tftp import packet as P
from pxed.tftp.protocol import TFTPServerProtocol
from pxed.tftp.session import TransferResult
from pxed.tftp.source import FilesystemSource

__all__ = ["LOCAL", "FakeTransport", "FakeReactor", "Info", "ClockClient", "ReadResult",
           "RawClient", "ServerTestCase"]

LOCAL = "127.0.0.1"


class FakeTransport:
    """
    Stands in for a UDP port: records what is written (decoded).
    """

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.written: list[tuple[P.Packet, tuple[str, int]]] = []
        self.stopped = False

    def write(self, datagram: bytes, addr: tuple[str, int]) -> None:
        self.written.append((P.decode(datagram), addr))

    def getHost(self) -> IPv4Address:
        return IPv4Address("UDP", self.host, self.port)

    def stopListening(self) -> None:
        self.stopped = True


class FakeReactor(Clock):
    """
    A clock whose C{listenUDP} records the binding and connects a
    L{FakeTransport} (ports 40000 and up).

    @ivar bound: (interface, transport, protocol) for each C{listenUDP}.
    """

    def __init__(self) -> None:
        super().__init__()
        self.bound: list[tuple[str, FakeTransport, Any]] = []

    def listenUDP(self, port: int, protocol: Any, interface: str = "",
                  maxPacketSize: int = 8192) -> FakeTransport:
        transport = FakeTransport(interface or "0.0.0.0", 40000 + len(self.bound))
        self.bound.append((interface, transport, protocol))
        protocol.makeConnection(transport)
        return transport


class Info:
    """
    The packet information L{pxed.net.PacketInfoPort} gives with a datagram.
    """

    def __init__(self, destination: str, local: str, ifindex: int = 2) -> None:
        self.ifindex = ifindex
        self.destination = destination
        self.local = local


@dataclass
class ReadResult:
    """
    What L{ClockClient.read} got: the file, the packets the server sent
    (in order, from any of its ports), and the ERROR that ended it, if one
    did.
    """

    data: bytes = b""
    packets: list[P.Packet] = field(default_factory=list)
    error: P.Error | None = None
    seconds: float = 0.0


class ClockClient:
    """
    A TFTP client for a server on a L{FakeReactor}, with no socket: it
    passes datagrams to the server's protocols by hand and advances the
    clock to the server's next timer whenever nothing is in flight.

    @param drop: called with each packet the server sends; C{True} loses
        it, for tests of loss and retransmission.
    """

    def __init__(self, server: TFTPServerProtocol, reactor: FakeReactor,
                 listening: FakeTransport, peer: tuple[str, int] = ("192.0.2.100", 2000),
                 drop: Callable[[P.Packet], bool] = lambda packet: False) -> None:
        self.server = server
        self.reactor = reactor
        self.listening = listening
        self.peer = peer
        self.drop = drop

    @classmethod
    def serving(cls, source: Any, address: str = "192.0.2.1", **options: Any
                ) -> ClockClient:
        """
        A new server for C{source} (any L{pxed.tftp.source.IFileSource}) on
        a new fake reactor, and a client for it.
        """
        reactor = FakeReactor()
        server = TFTPServerProtocol(source, reactor, **options)
        listening = FakeTransport(address, 69)
        server.makeConnection(listening)  # type: ignore[arg-type]
        return cls(server, reactor, listening)

    def _sent(self, seen: dict[int, int]) -> list[tuple[P.Packet, Any]]:
        """
        What the server sent since the last look, with the protocol of the
        port it came from.
        """
        found = []
        ports = [(self.listening, self.server)] + [(t, p) for _, t, p in self.reactor.bound]
        for transport, protocol in ports:
            start = seen.get(id(transport), 0)
            for packet, addr in transport.written[start:]:
                if addr == self.peer:
                    found.append((packet, protocol))
            seen[id(transport)] = len(transport.written)
        return found

    def read(self, filename: str, options: dict[str, str] | None = None,
             max_steps: int = 100_000) -> ReadResult:
        """
        Read C{filename} to the end (or to an ERROR), ACKing each DATA
        block in order as a lock-step or windowed client does.
        """
        result = ReadResult()
        started = self.reactor.seconds()
        seen: dict[int, int] = {}
        blksize = int((options or {}).get("blksize", 512))
        expected = 1
        self.server.datagramReceived(P.encode(P.ReadRequest(filename, "octet", options or {})),
                                     self.peer)
        for _ in range(max_steps):
            sent = self._sent(seen)
            if not sent:
                calls = self.reactor.getDelayedCalls()
                if not calls:
                    break  # nothing in flight and nothing to wait for
                self.reactor.advance(max(0.0, min(c.getTime() for c in calls)
                                         - self.reactor.seconds()))
                continue
            for packet, protocol in sent:
                result.packets.append(packet)
                if self.drop(packet):
                    continue
                if isinstance(packet, P.Error):
                    result.error = packet
                    result.seconds = self.reactor.seconds() - started
                    return result
                if isinstance(packet, P.OptionAck):
                    blksize = int(packet.options.get("blksize", blksize))
                    protocol.datagramReceived(P.encode(P.Ack(0)), self.peer)
                elif isinstance(packet, P.Data):
                    if packet.block == expected % 65536:
                        result.data += packet.payload
                        expected += 1
                    protocol.datagramReceived(P.encode(P.Ack((expected - 1) % 65536)),
                                              self.peer)
                    if len(packet.payload) < blksize and packet.block == (expected - 1) % 65536:
                        result.seconds = self.reactor.seconds() - started
                        return result
        raise AssertionError(f"no end after {max_steps} steps: {result.packets[-5:]}")


class RawClient(DatagramProtocol):
    """
    A UDP socket that queues what it receives, for hand-made exchanges
    over real UDP.
    """

    noisy = False

    def __init__(self, reactor: Any = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as default

            reactor = default
        self.reactor = reactor
        self.queue: defer.DeferredQueue[tuple[bytes, tuple[str, int]]] = defer.DeferredQueue()

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.queue.put((datagram, (addr[0], addr[1])))

    def send(self, pkt: P.Packet | bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.write(pkt if isinstance(pkt, bytes) else P.encode(pkt), addr)

    def next(self, timeout: float = 3.0) -> defer.Deferred[tuple[P.Packet, tuple[str, int]]]:
        d = self.queue.get()
        d.addTimeout(timeout, self.reactor)
        return d.addCallback(lambda r: (P.decode(r[0]), r[1]))

    @property
    def pending(self) -> int:
        return len(self.queue.pending)


class ServerTestCase(TestCase):
    """
    Runs a TFTP server on 127.0.0.1 over a temporary directory holding
    C{small.txt}, C{exact.bin} (four 512-byte blocks) and C{big.bin}.
    C{server_kw} are the server's options.
    """

    timeout = 20

    server_kw: dict[str, Any] = {}

    def setUp(self) -> None:
        from twisted.internet import reactor

        self.reactor = cast(Any, reactor)
        self.root = Path(self.mktemp()).absolute()
        self.root.mkdir()
        self.files = {
            "small.txt": b"hello, world\n",
            "exact.bin": bytes(range(256)) * 8,  # 2048: 4 blocks of 512
            "big.bin": os.urandom(300_000),
        }
        for name, content in self.files.items():
            (self.root / name).write_bytes(content)
        self.starts: list[tuple[tuple[str, int], str, dict[str, str]]] = []
        self.ends: list[tuple[tuple[str, int], str, TransferResult]] = []
        self._endWaiters: list[tuple[int, defer.Deferred[None]]] = []
        self.server = self.makeServer(FilesystemSource(self.root))
        self.port = self.reactor.listenUDP(0, self.server, interface=LOCAL)
        self.addCleanup(self.port.stopListening)
        self.addr = (LOCAL, self.port.getHost().port)

    def makeServer(self, source: Any, **kw: Any) -> TFTPServerProtocol:
        kw = {**self.server_kw, **kw}
        return TFTPServerProtocol(
            source,
            self.reactor,
            on_transfer_start=lambda *a: self.starts.append(a),
            on_transfer_end=self._ended,
            **kw,
        )

    def _ended(self, peer: tuple[str, int], filename: str, result: TransferResult) -> None:
        self.ends.append((peer, filename, result))
        for n, d in list(self._endWaiters):
            if len(self.ends) >= n:
                self._endWaiters.remove((n, d))
                d.callback(None)

    def waitForEnds(self, n: int = 1) -> defer.Deferred[None]:
        """
        Fires when C{n} transfers have ended (and their ports closed).
        """
        d: defer.Deferred[None] = defer.Deferred()
        if len(self.ends) >= n:
            d.callback(None)
        else:
            self._endWaiters.append((n, d))
        d.addTimeout(10, self.reactor)
        return d

    def rawClient(self) -> RawClient:
        raw = RawClient(self.reactor)
        port = self.reactor.listenUDP(0, raw, interface=LOCAL)
        self.addCleanup(port.stopListening)
        return raw

    def get(self, filename: str, **kw: Any) -> defer.Deferred[Any]:
        from pxed.tftp.client import fetch_result

        return fetch_result(self.reactor, LOCAL, self.addr[1], filename, interface=LOCAL, **kw)
