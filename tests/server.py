"""
The real pxed (L{pxed.service.makeBootService}, every port on 127.0.0.1's
ephemeral ports) for hardening tests, and raw clients that misbehave.
"""

from __future__ import annotations

import socket
import textwrap
from pathlib import Path
from typing import Any

from twisted.internet import defer, endpoints, protocol, reactor, task

from pxed.config import load_config
from pxed.metrics import Metrics
from pxed.service import makeBootService
from tests.fixtures import write_bootloaders


class RunningPxed:
    """
    pxed started from a configuration file in C{base} (C{extra} is more
    YAML), on ephemeral ports; C{stop()} to end it.
    """

    def __init__(self, base: Path, extra: str = "", server: str = "") -> None:
        self.base = base
        loaders = write_bootloaders(base)
        self.path = base / "pxed.yaml"
        self.path.write_text(textwrap.dedent(f"""\
            server: {{address: 127.0.0.1, ports: {{dhcp: 0, pxe: 0, tftp: 0, http: 0}}{server}}}
            bootloaders:
              x86-bios: {loaders["x86-bios"]}
              x64-uefi: {loaders["x64-uefi"]}
            """) + textwrap.dedent(extra))
        self.config = load_config(self.path)
        self.metrics = Metrics()
        self.top: Any = makeBootService(self.config, reactor=reactor, metrics=self.metrics)
        self.top.startService()
        self.runtime: Any = self.top.getServiceNamed("policy")

    @property
    def web(self) -> Any:
        """
        The parts the web app serves from now (catalog, exports, ...): see
        L{pxed.parts}.
        """
        return self.runtime.parts.current

    def port(self, name: str) -> int:
        return int(self.top.getServiceNamed(name).port.getHost().port)

    @property
    def http_base(self) -> str:
        return f"http://127.0.0.1:{self.port('http')}"

    def stop(self) -> Any:
        return self.top.stopService()


class RawClient(protocol.Protocol):
    """
    A TCP client that sends what it is told and records what comes back
    and when the server closed.
    """

    def __init__(self) -> None:
        self.received = bytearray()
        self.closed: defer.Deferred[float] = defer.Deferred()
        self.opened_at = 0.0

    def connectionMade(self) -> None:
        self.opened_at = reactor.seconds()  # type: ignore[attr-defined]

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any = None) -> None:
        self.closed.callback(reactor.seconds() - self.opened_at)  # type: ignore[attr-defined]


@defer.inlineCallbacks
def connect(port: int, source: str = "127.0.0.1", receive_buffer: int | None = None) -> Any:
    """
    A L{RawClient} connected to C{port}; C{receive_buffer} fixes its
    socket's receive buffer (loopback's autotuning would otherwise take in
    tens of megabytes before a client that never reads is noticed).
    """
    client = RawClient()
    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5,
                                            bindAddress=(source, 0))
    yield endpoints.connectProtocol(endpoint, client)
    if receive_buffer is not None:
        client.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF,
                                                receive_buffer)
    return client


def within(d: defer.Deferred[Any], seconds: float) -> defer.Deferred[Any]:
    """
    C{d}, failed with C{TimeoutError} after C{seconds}.
    """
    return d.addTimeout(seconds, reactor)  # type: ignore[arg-type]


def sleep(seconds: float) -> defer.Deferred[None]:
    return task.deferLater(reactor, seconds, lambda: None)  # type: ignore[arg-type]


class UDPClient(protocol.DatagramProtocol):
    """
    Sends datagrams from 127.0.0.1 and keeps every reply with its source.
    """

    def __init__(self) -> None:
        self.replies: list[tuple[bytes, tuple[str, int]]] = []
        self.arrived: defer.Deferred[bytes] | None = None

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:
        self.replies.append((data, addr))
        waiting, self.arrived = self.arrived, None
        if waiting is not None:
            waiting.callback(data)

    def next_reply(self, seconds: float = 5) -> defer.Deferred[bytes]:
        self.arrived = defer.Deferred()
        return within(self.arrived, seconds)


def udp_client(case: Any, host: str = "127.0.0.1") -> UDPClient:
    """
    A L{UDPClient} on an ephemeral port of C{host}, closed after C{case}.
    """
    client = UDPClient()
    port = reactor.listenUDP(0, client, interface=host)  # type: ignore[attr-defined]
    case.addCleanup(port.stopListening)
    return client
