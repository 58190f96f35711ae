# -*- test-case-name: tests.test_service -*-
"""
The one place that wires pxed's protocols into a service.

L{makeBootService} is what C{twistd pxed} runs and what an embedding
program calls to get the same thing inside its own application.
"""

from __future__ import annotations

from typing import Any

from twisted.application import service
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.web.server import Site

from pxed.config import Config
from pxed.dhcp.protocol import BootServerProtocol, ProxyDHCPProtocol
from pxed.http.app import BootHTTP, FileCatalog
from pxed.net import PacketInfoPort, interface_address
from pxed.policy import IBootPolicy, StaticPolicy
from pxed.responder import BootResponder
from pxed.state import IBootLog, MemoryBootLog
from pxed.tftp.protocol import TFTPServerProtocol
from pxed.tftp.source import MappingSource

__all__ = ["makeBootService", "UDPService", "TCPService"]

log = Logger()


class UDPService(service.Service):
    """
    Listens with a L{PacketInfoPort} while running.
    """

    def __init__(self, port: int, protocol: DatagramProtocol, interface: str = "",
                 device: str | None = None, reactor: Any = None) -> None:
        self.port_number = port
        self.protocol = protocol
        self.interface = interface
        self.device = device
        self.reactor = reactor
        self.port: PacketInfoPort | None = None

    def startService(self) -> None:
        super().startService()
        if self.reactor is None:
            from twisted.internet import reactor

            self.reactor = reactor
        self.port = PacketInfoPort(self.port_number, self.protocol, self.interface,
                                   reactor=self.reactor, device=self.device)
        self.port.startListening()

    def stopService(self) -> Any:
        super().stopService()
        if self.port is not None:
            port, self.port = self.port, None
            return port.stopListening()
        return None


class TCPService(service.Service):
    def __init__(self, port: int, factory: Any, interface: str = "", reactor: Any = None) -> None:
        self.port_number = port
        self.factory = factory
        self.interface = interface
        self.reactor = reactor
        self.port: IListeningPort | None = None

    def startService(self) -> None:
        super().startService()
        if self.reactor is None:
            from twisted.internet import reactor

            self.reactor = reactor
        self.port = self.reactor.listenTCP(self.port_number, self.factory,
                                           interface=self.interface)

    def stopService(self) -> Any:
        super().stopService()
        if self.port is not None:
            port, self.port = self.port, None
            return port.stopListening()
        return None


def makeBootService(
    config: Config,
    policy: IBootPolicy | None = None,
    boot_log: IBootLog | None = None,
    reactor: Any = None,
) -> service.MultiService:
    """
    Build pxed's services (ProxyDHCP, boot server, TFTP, HTTP) from a
    validated configuration.

    @param policy: overrides the configuration's C{boot:} table, for
        programs that decide boots themselves.
    @param boot_log: where boot timelines go (default: in memory).
    """
    static = StaticPolicy(config.machines, config.default)
    policy = policy if policy is not None else static
    boot_log = boot_log if boot_log is not None else MemoryBootLog()
    server = config.server
    address = server.address
    if address is None and server.interface is not None:
        address = interface_address(server.interface)
    bind = ""
    device = server.interface

    top = service.MultiService()
    top.setName("pxed")
    responder = BootResponder(policy, config.bootloaders, server.ports.http, boot_log)

    dhcp = UDPService(server.ports.dhcp, ProxyDHCPProtocol(responder, address), bind, device,
                      reactor)
    dhcp.setName("proxydhcp")
    dhcp.setServiceParent(top)

    pxe = UDPService(server.ports.pxe, BootServerProtocol(responder, address), bind, device,
                     reactor)
    pxe.setName("bootserver")
    pxe.setServiceParent(top)

    source = MappingSource({path.name: path for path in config.bootloaders.values()})
    tftp = UDPService(server.ports.tftp, TFTPServerProtocol(source, reactor=reactor), bind, device,
                      reactor)
    tftp.setName("tftp")
    tftp.setServiceParent(top)

    catalog = FileCatalog(static.local_files())
    web = BootHTTP(policy, catalog, boot_log, address)
    http = TCPService(server.ports.http, Site(web.resource()), bind, reactor)
    http.setName("http")
    http.setServiceParent(top)
    return top
