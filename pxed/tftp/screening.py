# -*- test-case-name: tests.test_tftp_protocol -*-
"""
What the TFTP request port decides and says about a request: whether to
start a transfer for it, how a failed open and a transfer's end are told
to the client, the log and the observers.

Kept apart from L{pxed.tftp.protocol}, which receives datagrams and opens
transfer ports, because this is the part an operator tunes and reads: the
limits a flood of requests meets, and one log line per refusal or
transfer, spent from a L{LogBudget} so a client cannot fill the log.
L{RequestScreening} is a mixin of L{TFTPServerProtocol
<pxed.tftp.protocol.TFTPServerProtocol>}, whose state it shares.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.internet.defer import TimeoutError as OpenTimeout
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.python.failure import Failure

from pxed.dhcp.logbudget import LogBudget, shown

from . import packet as P
from .options import refusal
from .session import TransferResult
from .source import AccessViolation, FileNotFound
from .transfer import Session, TransferProtocol

__all__ = ["RequestScreening", "SUPPORTED_MODES", "Address"]

# netascii is converted both ways (see pxed.tftp.netascii).
SUPPORTED_MODES = frozenset({"octet", "netascii"})

Address = tuple[str, int]

# The request port's namespace: these are its lines, and log filters (and
# tests) written for them keep working.
log = Logger(namespace="pxed.tftp.protocol")


class RequestScreening:
    """
    Admission, refusals and the end of transfers for the request port (see
    the module docstring); L{TFTPServerProtocol
    <pxed.tftp.protocol.TFTPServerProtocol>} sets the state below up.
    """

    # Set by TFTPServerProtocol.__init__.
    max_transfers: int
    max_per_client: int
    on_not_found: Callable[[Address, str], object] | None
    on_transfer_end: Callable[[Address, str, TransferResult], object] | None
    budget: LogBudget
    _transfers: dict[tuple[Address, str], Session | None]
    _ports: dict[tuple[Address, str], tuple[IListeningPort, TransferProtocol]]
    _running: bool

    def _reply(self, addr: Address, code: int, message: str) -> None:
        raise NotImplementedError  # TFTPServerProtocol's

    def _admit(self, request: P.ReadRequest | P.WriteRequest, addr: Address) -> bool:
        """Whether to start a transfer for C{request}; if not, the client is told why."""
        if (addr, request.filename) in self._transfers:
            # The client retransmitted its request; the session that is
            # already running retransmits on its own timer, or, if the
            # client has acknowledged nothing yet, answers this one too.
            log.debug("duplicate request from {peer}", peer=addr)
            session = self._transfers[(addr, request.filename)]
            again = getattr(session, "request_again", None)
            if again is not None:
                again()
            return False
        if request.mode not in SUPPORTED_MODES:
            self._reply(addr, P.ERR_ILLEGAL_OPERATION, f"Unsupported mode {request.mode}")
            return False
        refused = refusal(request.options)
        if refused is not None:
            self._reply(addr, P.ERR_OPTION_NEGOTIATION, f"Option refused: {refused}")
            return False
        if len(self._transfers) >= self.max_transfers:
            self.budget.warn(log, "too many transfers, refusing {filename} to {peer}",
                             filename=shown(request.filename), peer=addr)
            self._reply(addr, P.ERR_UNDEFINED, "Server busy")
            return False
        if sum(1 for peer, _ in self._transfers if peer[0] == addr[0]) >= self.max_per_client:
            self.budget.warn(log, "too many transfers to {host}, refusing {filename}",
                             host=addr[0], filename=shown(request.filename), peer=addr)
            self._reply(addr, P.ERR_UNDEFINED, "Too many transfers")
            return False
        return True

    def _openFailed(self, failure: Failure, request: P.ReadRequest, addr: Address) -> None:
        self._transfers.pop((addr, request.filename), None)
        if failure.check(FileNotFound):
            # Its info line (within a budget), metric and timeline event
            # come from the observer, which knows the machine.
            log.debug("{filename} not found for {peer}", filename=shown(request.filename),
                      peer=addr)
            self._notify(self.on_not_found, addr, request.filename)
            code, message = P.ERR_FILE_NOT_FOUND, "File not found"
        elif failure.check(AccessViolation):
            self.budget.info(log, "refused {filename} to {peer}: {reason}",
                             filename=shown(request.filename), peer=addr,
                             reason=shown(failure.getErrorMessage()))
            code, message = P.ERR_ACCESS_VIOLATION, "Access violation"
        elif failure.check(OpenTimeout):
            self.budget.warn(log, "opening {filename} for {peer} timed out",
                             filename=shown(request.filename), peer=addr)
            code, message = P.ERR_UNDEFINED, "Timed out opening the file"
        else:
            log.failure(
                "opening {filename} for {peer}", failure, filename=request.filename, peer=addr
            )
            code, message = P.ERR_UNDEFINED, "Internal error"
        if self._running:
            self._reply(addr, code, message)

    def _ended(
        self, result: TransferResult, request: P.ReadRequest | P.WriteRequest, addr: Address
    ) -> None:
        key = (addr, request.filename)
        self._transfers.pop(key, None)
        port, transfer = self._ports.pop(key, (None, None))
        if transfer is not None and transfer.transport is None:
            port = None  # already closed
        # Within the budget: a spoofed request's transfer ends too.
        self.budget.info(
            log,
            "TFTP {outcome}: {filename} {direction} {host}:{port}, {bytes_sent} bytes in "
            "{duration:.2f}s (blksize {blksize}, window {windowsize}, "
            "{retransmits} retransmits){reason}",
            outcome=result.outcome,
            filename=shown(request.filename),
            direction="from" if result.upload else "to",
            host=addr[0],
            port=addr[1],
            # The fields log shippers index, as the other stages log them.
            peer=addr[0],
            stage="tftp-upload" if result.upload else "tftp-end",
            bytes_sent=result.bytes_sent,
            duration=result.duration,
            blksize=result.blksize,
            windowsize=result.windowsize,
            retransmits=result.retransmits,
            error=result.error,
            reason=f": {result.error}" if result.error else "",
        )
        # Observers hear about the end once the transfer port is closed, so
        # that whoever waits for them finds no socket left behind.
        stopped = port.stopListening() if port is not None else None
        if isinstance(stopped, Deferred):
            stopped.addErrback(lambda f: log.failure("closing transfer port", f))
            stopped.addCallback(
                lambda _: self._notify(self.on_transfer_end, addr, request.filename, result)
            )
        else:
            self._notify(self.on_transfer_end, addr, request.filename, result)

    def _notify(self, observer: Callable[..., object] | None, *args: object) -> None:
        if observer is None:
            return
        try:
            observer(*args)
        except Exception:
            log.failure("transfer observer {observer!r} failed", observer=observer)
