# -*- test-case-name: tests.test_service -*-
"""
Services that hold one listening port while running, and who holds a port
when pxed cannot have it.

Apart from L{pxed.service} so a standalone server (C{twistd pxed-tftp})
can use them without importing the HTTP stack.  A port that cannot be
opened is a L{PortError} whose message is the one line an operator needs
(the port, why, and the process holding it, read from C{/proc}), so
C{twistd pxed} can print it instead of a traceback.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.application import service
from twisted.application.service import MultiService
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from pxed.net import PacketInfoPort
from pxed.reactors import given_or_global

log = Logger()

__all__ = ["UDPService", "TCPService", "PortError", "PortHolder", "port_holders",
           "OneLineStartup"]

#: The configuration key of each port service, for messages.
SETTINGS = {"proxydhcp": "server.ports.dhcp", "dhcp": "server.ports.dhcp",
            "bootserver": "server.ports.pxe",
            "tftp": "server.ports.tftp", "http": "server.ports.http"}


@dataclass(frozen=True)
class PortHolder:
    pid: int
    name: str

    def __str__(self) -> str:
        return f"{self.name} (pid {self.pid})"


def _socket_inodes(protocol: str, port: int, proc: Path) -> set[str]:
    """
    The inodes of sockets bound to local C{port} (TCP: listening only).
    """
    inodes = set()
    for table in (f"{protocol}", f"{protocol}6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10:
                continue
            local, state, inode = fields[1], fields[3], fields[9]
            if int(local.rpartition(":")[2], 16) != port or inode == "0":
                continue
            if protocol == "tcp" and state != "0A":  # LISTEN
                continue
            inodes.add(inode)
    return inodes


def port_holders(protocol: str, port: int, proc: Path = Path("/proc")) -> list[PortHolder]:
    """
    The processes holding local C{protocol} (C{"udp"} or C{"tcp"}) port
    C{port} in this network namespace, as far as C{/proc} shows them
    (another user's processes need root to see).
    """
    inodes = _socket_inodes(protocol, port, proc)
    if not inodes:
        return []
    targets = {f"socket:[{inode}]" for inode in inodes}
    holders = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
            if any(os.readlink(fd) in targets for fd in fds):
                name = (entry / "comm").read_text().strip()
                holders.append(PortHolder(int(entry.name), name))
        except OSError:
            continue  # gone, or not ours to read
    return sorted(holders, key=lambda h: h.pid)


class PortError(Exception):
    """
    A port pxed cannot open, with an operator's explanation.
    """

    def __init__(self, protocol: str, port: int, setting: str | None, problem: str) -> None:
        self.protocol, self.port, self.setting, self.problem = protocol, port, setting, problem
        where = f"{setting}: " if setting else ""
        super().__init__(f"{where}cannot listen on {protocol.upper()} port {port}: {problem}")


def explain_listen_error(protocol: str, port: int, device: str | None,
                         error: BaseException) -> str:
    """
    What a failed bind means, in one phrase: the holder of a port in use,
    the capability a low port needs, the interface that does not exist.
    """
    cause = getattr(error, "socketError", error)
    code = getattr(cause, "errno", None)
    if code == errno.EADDRINUSE:
        holders = port_holders(protocol, port)
        if holders:
            return "in use by " + ", ".join(str(h) for h in holders)
        return "in use (by a process this user cannot see; try as root: ss -lunp / ss -ltnp)"
    if code == errno.EACCES:
        return ("permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE; "
                "binding to an interface needs CAP_NET_RAW)")
    if code == errno.ENODEV:
        return f"no network interface named {device!r} on this host"
    if code == errno.EADDRNOTAVAIL:
        return "the address is not one of this host's"
    if code == errno.EPERM and device:
        return f"binding to interface {device!r} needs CAP_NET_RAW"
    return getattr(cause, "strerror", None) or str(cause)


class _PortService(service.Service):
    """
    Holds one listening port while running: subclasses say how to listen.
    """

    def __init__(self, port: int, interface: str = "", reactor: Any = None) -> None:
        self.port_number = port
        self.interface = interface
        self.reactor = reactor
        self.port: IListeningPort | None = None

    kind = "udp"
    device: str | None = None

    def _listen(self) -> IListeningPort:
        raise NotImplementedError

    def startService(self) -> None:
        """
        @raise PortError: the port cannot be opened (the message says why
            and, for a port in use, which process holds it).
        """
        self.reactor = given_or_global(self.reactor)
        try:
            self.port = self._listen()
        except (CannotListenError, OSError) as e:
            problem = explain_listen_error(self.kind, self.port_number, self.device, e)
            raise PortError(self.kind, self.port_number, SETTINGS.get(self.name or ""),
                            problem) from e
        super().startService()

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
                 device: str | None = None, reactor: Any = None,
                 reuse_port: bool = False) -> None:
        super().__init__(port, interface, reactor)
        self.protocol = protocol
        self.device = device
        self.reuse_port = reuse_port

    def _listen(self) -> IListeningPort:
        port = PacketInfoPort(self.port_number, self.protocol, self.interface,
                              reactor=self.reactor, device=self.device,
                              reuse_port=self.reuse_port)
        port.startListening()
        return port


class TCPService(_PortService):
    kind = "tcp"

    def __init__(self, port: int, factory: Any, interface: str = "", reactor: Any = None) -> None:
        super().__init__(port, interface, reactor)
        self.factory = factory

    def _listen(self) -> IListeningPort:
        return self.reactor.listenTCP(self.port_number, self.factory,  # type: ignore[no-any-return]
                                      interface=self.interface)


class OneLineStartup(MultiService):
    """
    Starts its services (what C{twistd pxed} and C{twistd pxed-tftp} run);
    a port that cannot be opened becomes one error line (which port, why,
    who holds it) and exit status 1 instead of a traceback through twistd.
    The traceback is logged at debug level.

    @param source: the configuration file, named in the line.
    """

    def __init__(self, source: str | None = None,
                 exit: Callable[[int], Any] = sys.exit) -> None:
        super().__init__()
        self.source = source
        self.exit = exit

    def startService(self) -> None:
        try:
            super().startService()
        except PortError as e:
            log.failure("start-up failed", Failure(), level=LogLevel.debug)
            where = f"{self.source}: " if self.source else ""
            log.error("pxed cannot start: {where}{error}", where=where, error=str(e))
            self.exit(1)
