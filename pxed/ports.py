# -*- test-case-name: tests.test_service -*-
"""
Services that hold one listening port while running.

Apart from L{pxed.service} so a standalone server (C{twistd pxed-tftp})
can use them without importing the HTTP stack.
"""

from __future__ import annotations

from typing import Any

from twisted.application import service
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import DatagramProtocol

from pxed.net import PacketInfoPort

__all__ = ["UDPService", "TCPService"]


class _PortService(service.Service):
    """
    Holds one listening port while running: subclasses say how to listen.
    """

    def __init__(self, port: int, interface: str = "", reactor: Any = None) -> None:
        self.port_number = port
        self.interface = interface
        self.reactor = reactor
        self.port: IListeningPort | None = None

    def _listen(self) -> IListeningPort:
        raise NotImplementedError

    def startService(self) -> None:
        super().startService()
        if self.reactor is None:
            from twisted.internet import reactor

            self.reactor = reactor
        self.port = self._listen()

    def stopService(self) -> Any:
        super().stopService()
        if self.port is not None:
            port, self.port = self.port, None
            return port.stopListening()
        return None


class UDPService(_PortService):
    """
    Listens with a L{PacketInfoPort}, so protocols learn the interface and
    local address of each datagram.
    """

    def __init__(self, port: int, protocol: DatagramProtocol, interface: str = "",
                 device: str | None = None, reactor: Any = None) -> None:
        super().__init__(port, interface, reactor)
        self.protocol = protocol
        self.device = device

    def _listen(self) -> IListeningPort:
        port = PacketInfoPort(self.port_number, self.protocol, self.interface,
                              reactor=self.reactor, device=self.device)
        port.startListening()
        return port


class TCPService(_PortService):
    def __init__(self, port: int, factory: Any, interface: str = "", reactor: Any = None) -> None:
        super().__init__(port, interface, reactor)
        self.factory = factory

    def _listen(self) -> IListeningPort:
        return self.reactor.listenTCP(self.port_number, self.factory,  # type: ignore[no-any-return]
                                      interface=self.interface)
