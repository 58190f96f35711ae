# -*- test-case-name: tests.test_tftp_workers -*-
"""
TFTP on several processes: C{twistd pxed-tftp --workers N}.

One Python process runs on one core, and a lock-step transfer (what BIOS
ROMs and GRUB do) costs a round of the reactor per block, so a rack
booting at once is bound by that one core while tftpd-hpa, which forks a
process per client, uses them all.  With C{--workers N} the request port
is opened with C{SO_REUSEPORT} by N processes: the one C{twistd} started
and N - 1 children it spawns, each a whole TFTP server on the same
address and port.  The kernel spreads requests over them by the client's
address and port, so a client's retransmitted request reaches the process
already serving it, and each transfer then lives on its own port in one
process, as before.

What stays the same: every transfer is served by the same code with the
same options, and the children's log events reach the parent's log (one
line per transfer, as with one process), tagged with C{worker}.  What
differs, by design: C{max_transfers} is shared out (each process takes
its part, rounded up), and C{max_per_client} holds in each process (a
client's transfers from several source ports may land on several).  A
child that dies is started again; the children end with the parent (they
watch their standard input, a pipe from it).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import IO, Any

from twisted.application import service
from twisted.internet import defer
from twisted.internet.protocol import ProcessProtocol, Protocol
from twisted.logger import (
    ILogObserver,
    Logger,
    eventAsJSON,
    eventFromJSON,
    globalLogPublisher,
)
from twisted.python.failure import Failure
from zope.interface import implementer

from pxed.config.tftp import TFTPConfig
from pxed.reactors import given_or_global

__all__ = ["WorkerPool", "share", "worker_argv", "main"]

log = Logger()

#: How long a child gets to end before it is killed, on stop.
STOP_GRACE = 5.0
#: A child that dies is restarted, at most this often (seconds).
RESTART_DELAY = 1.0


def share(config: TFTPConfig, workers: int) -> TFTPConfig:
    """Each process's part of the configured limits."""
    return replace(config, max_transfers=max(1, -(-config.max_transfers // workers)))


def _config_json(config: TFTPConfig) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()}


def worker_argv(config: TFTPConfig, port: int, interface: str, level: str,
                index: int) -> list[str]:
    """The command line of child C{index}."""
    spec = {"config": _config_json(config), "port": port, "interface": interface,
            "level": level, "index": index}
    return [sys.executable, "-m", "pxed.tftp.workers", json.dumps(spec)]


class _Child(ProcessProtocol):
    """One child: its log lines become events here; its end is reported."""

    def __init__(self, pool: WorkerPool, index: int) -> None:
        self.pool = pool
        self.index = index
        self.ended: defer.Deferred[None] = defer.Deferred()
        self._buffer = b""

    def outReceived(self, data: bytes) -> None:
        lines = (self._buffer + data).split(b"\n")
        self._buffer = lines.pop()
        for line in lines:
            if not line:
                continue
            try:
                event = eventFromJSON(line.decode("utf-8"))
            except Exception:
                log.warn("TFTP worker {worker}: {line}", worker=self.index,
                         line=line.decode("utf-8", "replace"))
                continue
            event["worker"] = self.index
            globalLogPublisher(event)

    def errReceived(self, data: bytes) -> None:
        # Only what escapes the child's logging (a crash at start) gets here.
        for line in data.decode("utf-8", "replace").splitlines():
            log.error("TFTP worker {worker}: {line}", worker=self.index, line=line)

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(None)
        self.pool._ended(self, reason)


class WorkerPool(service.Service):
    """
    Runs C{count} children serving TFTP beside this process (see the
    module docstring), while running.
    """

    def __init__(self, count: int, config: TFTPConfig, port: int, interface: str,
                 level: str, reactor: Any = None) -> None:
        self.count = count
        self.config = config
        self.port = port
        self.interface = interface
        self.level = level
        self.reactor = reactor
        self.children: dict[int, _Child] = {}

    def startService(self) -> None:
        super().startService()
        self.reactor = given_or_global(self.reactor)
        for index in range(1, self.count + 1):
            self._spawn(index)

    def _spawn(self, index: int) -> None:
        child = _Child(self, index)
        argv = worker_argv(self.config, self.port, self.interface, self.level, index)
        self.reactor.spawnProcess(child, argv[0], argv, env=os.environ.copy(),
                                  childFDs={0: "w", 1: "r", 2: "r"})
        self.children[index] = child

    def _ended(self, child: _Child, reason: Failure) -> None:
        if self.children.get(child.index) is not child:
            return
        del self.children[child.index]
        if self.running:
            log.error("TFTP worker {worker} ended ({why}); starting it again",
                      worker=child.index, why=reason.getErrorMessage())
            self.reactor.callLater(RESTART_DELAY, self._respawn, child.index)

    def _respawn(self, index: int) -> None:
        if self.running and index not in self.children:
            self._spawn(index)

    def stopService(self) -> defer.Deferred[Any]:
        super().stopService()
        ended = []
        for child in list(self.children.values()):
            ended.append(child.ended)
            transport = child.transport
            if transport is None:
                continue
            transport.closeStdin()
            try:
                transport.signalProcess("TERM")
            except Exception:
                continue
            kill = self.reactor.callLater(STOP_GRACE, _kill, transport)
            child.ended.addBoth(_cancel, kill)
        return defer.gatherResults(ended).addBoth(lambda _: None)


def _cancel(result: object, call: Any) -> object:
    if call.active():
        call.cancel()
    return result


def _kill(transport: Any) -> None:
    try:
        transport.signalProcess("KILL")
    except Exception:
        pass


@implementer(ILogObserver)
class _JSONOut:
    """A child's log: one event a line, for the parent to publish as its own."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def __call__(self, event: Any) -> None:
        self.out.write(eventAsJSON(event) + "\n")
        self.out.flush()


class _ParentWatch(Protocol):
    """A child's standard input: when the parent goes, so does the child."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor

    def connectionLost(self, reason: Failure | None = None) -> None:
        if self.reactor.running:
            self.reactor.stop()


def main(argv: list[str]) -> None:
    """A child: the TFTP server of C{argv[0]} (JSON), logging to stdout as JSON lines."""
    from twisted.internet import reactor
    from twisted.internet.stdio import StandardIO
    from twisted.logger import (
        FilteringLogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        globalLogBeginner,
    )

    from pxed import logs
    from pxed.ports import UDPService
    from pxed.tftp.protocol import TFTPServerProtocol
    from pxed.tftp.source import FilesystemSource

    spec = json.loads(argv[0])
    fields = dict(spec["config"])
    for key in ("root", "upload_root"):
        if fields.get(key) is not None:
            fields[key] = Path(fields[key])
    config = TFTPConfig(**fields)
    level = LogLevel.levelWithName(spec["level"])
    logs.set_level(spec["level"])
    logs.sole_observer()
    only = LogLevelFilterPredicate(defaultLogLevel=level)
    globalLogBeginner.beginLoggingTo([FilteringLogObserver(_JSONOut(sys.stdout), [only])],
                                     redirectStandardIO=False)
    assert config.root is not None
    protocol = TFTPServerProtocol(FilesystemSource(config.root), reactor,
                                  **config.protocol_options())
    listener = UDPService(spec["port"], protocol, spec["interface"], reactor=reactor,
                          reuse_port=True)
    StandardIO(_ParentWatch(reactor),  # type: ignore[call-arg]
               stdout=os.open(os.devnull, os.O_WRONLY))
    reactor.callWhenRunning(listener.startService)  # type: ignore[attr-defined]
    reactor.addSystemEventTrigger("before", "shutdown", listener.stopService)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main(sys.argv[1:])
