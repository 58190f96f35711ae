# -*- test-case-name: tests.test_tftp_protocol -*-
"""
The TFTP server: a thin UDP layer over L{ReadSession} (and, where uploads
are allowed, L{WriteSession}).

L{TFTPServerProtocol} listens on the well-known port and only ever answers
requests.  Each accepted read gets a fresh UDP port (its transfer ID, as
RFC 1350 requires) served by a L{TransferProtocol}; packets reaching that
port from anyone but the requesting client get ERROR 5 and are otherwise
ignored.  The server is read-only unless it is given an L{UploadRoot}: write
requests are refused with ERROR 2.

Nothing a client sends may stop the service, so every datagram handler
catches and logs whatever goes wrong.  Which requests are admitted, and
what is logged and told about refusals and ends, is L{pxed.tftp.screening}'s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from twisted.internet.defer import maybeDeferred
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from pxed.dhcp.logbudget import LogBudget, shown
from pxed.net import requested_address
from pxed.reactors import given_or_global

from . import packet as P
from .mtu import MTUCache
from .netascii import NetasciiReadable
from .screening import SUPPORTED_MODES, Address, RequestScreening
from .session import ReadSession, SessionLimits, TransferResult
from .source import IFileSource, IReadable
from .transfer import Session, TransferProtocol, listen_transfer
from .upload import UploadRefused, UploadRoot, WriteSession

__all__ = ["TFTPServerProtocol", "TransferProtocol", "SUPPORTED_MODES"]

StartObserver = Callable[[Address, str, dict[str, str]], object]
EndObserver = Callable[[Address, str, TransferResult], object]
Sender = Callable[[bytes], object]
BurstSender = Callable[[list[bytes]], object]

log = Logger()


class TFTPServerProtocol(RequestScreening, DatagramProtocol):
    """
    Serve read requests from C{source}.

    @param source: where content comes from.
    @param reactor: used for the transfer ports and timers (defaults to the
        global reactor); tests pass their own.
    @param max_blksize: largest blksize granted (1468 fits an Ethernet frame);
        with packet info (see L{datagramReceivedWithInfo}) also no more than
        fits the MTU of the interface the request arrived on.
    @param max_windowsize: largest RFC 7440 windowsize granted.
    @param timeout: ceiling of the retransmission timeout, which otherwise
        follows the measured round trip (a client-negotiated timeout is used
        as is).
    @param retries: retransmissions at the full timeout (after quicker ones
        at the measured round trip) before the server falls silent.
    @param patience: seconds without progress before a transfer is given
        up and its port closed (at least (retries + 1) * timeout).
    @param max_transfers: concurrent transfers (including files being
        opened); more requests get ERROR 0 "Server busy".
    @param max_per_client: concurrent transfers per client address, so one
        misbehaving machine cannot take every slot.
    @param open_timeout: seconds a source may take to open a file.
    @param on_transfer_start: called with (peer, filename, options) when a
        transfer port starts serving a read request.
    @param on_transfer_end: called with (peer, filename, TransferResult),
        for reads and uploads (C{TransferResult.upload}).
    @param on_not_found: called with (peer, filename) when a read asks for
        a file the source does not have (the client gets ERROR 1).
    @param upload: where write requests may create files; C{None} (the
        default) refuses them all.
    """

    def __init__(
        self,
        source: IFileSource,
        reactor: Any = None,
        *,
        max_blksize: int = 1468,
        max_windowsize: int = 16,
        timeout: float = 1.0,
        retries: int = 5,
        patience: float = 30.0,
        max_transfers: int = 500,
        max_per_client: int = 8,
        open_timeout: float = 10.0,
        on_transfer_start: StartObserver | None = None,
        on_transfer_end: EndObserver | None = None,
        upload: UploadRoot | None = None,
        on_not_found: Callable[[Address, str], object] | None = None,
    ) -> None:
        reactor = given_or_global(reactor)
        self.source = source
        self.reactor: Any = reactor
        self.limits = SessionLimits(
            max_blksize=max_blksize,
            max_windowsize=max_windowsize,
            timeout=timeout,
            retries=retries,
            patience=patience,
        )
        self.max_transfers = max_transfers
        self.max_per_client = max_per_client
        self.open_timeout = open_timeout
        self.on_transfer_start = on_transfer_start
        self.on_transfer_end = on_transfer_end
        self.on_not_found = on_not_found
        self.upload = upload
        # (peer, filename) -> the session once its port is up, else None
        # while the file is being opened.
        self._transfers: dict[tuple[Address, str], Session | None] = {}
        self._ports: dict[tuple[Address, str], tuple[IListeningPort, TransferProtocol]] = {}
        self._running = False
        self.mtus = MTUCache(reactor)
        #: Spends the lines a client can cause (refusals, ends): a flood of
        #: requests is counted, not written.
        self.budget = LogBudget(reactor)

    @property
    def active_transfers(self) -> int:
        """Transfers in progress, including requests whose file is opening."""
        return len(self._transfers)

    def startProtocol(self) -> None:
        self._running = True

    def stopProtocol(self) -> None:
        self._running = False
        for session in list(self._transfers.values()):
            if session is not None:
                session.abort("Server shutting down")

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        try:
            self._handle(datagram, (addr[0], addr[1]), self._listeningAddress())
        except Exception:
            log.failure("error handling a datagram from {peer}", peer=addr)

    def datagramReceivedWithInfo(self, datagram: bytes, addr: Any, info: Any) -> None:
        """
        Like C{datagramReceived}, from a port that reports where each
        datagram arrived (pxed's C{PacketInfoPort}: an object with
        C{destination} and C{local} addresses, and the C{ifindex} of the
        interface).  The transfer port is then bound to the address the
        client sent its request to, which matters on a multi-homed host
        listening on all addresses: a reply from another address would be
        dropped by the client.  And the block size is kept within that
        interface's MTU (see L{pxed.tftp.mtu}).
        """
        try:
            local = requested_address(info) or self._listeningAddress()
            ifindex = getattr(info, "ifindex", 0)
            fits = self.mtus.max_blksize(ifindex) if isinstance(ifindex, int) else None
            self._handle(datagram, (addr[0], addr[1]), local, fits)
        except Exception:
            log.failure("error handling a datagram from {peer}", peer=addr)

    def _reply(self, addr: Address, code: int, message: str) -> None:
        assert self.transport is not None
        self.transport.write(P.encode(P.Error(code, message)), addr)

    def _handle(
        self, datagram: bytes, addr: Address, local: str, fits: int | None = None
    ) -> None:
        try:
            pkt = P.decode(datagram)
        except P.UnknownOpcode as e:
            # Junk gets silence: an ERROR answers only a well-formed request
            # that cannot be served (anything else would let a spoofed
            # datagram aim pxed's answers at a third party).
            log.debug("unknown opcode {opcode} from {peer}", opcode=e.opcode, peer=addr)
            return
        except P.MalformedPacket as e:
            log.debug("malformed packet from {peer}: {reason}", peer=addr, reason=e)
            return
        if isinstance(pkt, P.WriteRequest) and self.upload is None:
            log.debug("refusing write of {filename} from {peer}", filename=shown(pkt.filename),
                      peer=addr)
            self._reply(addr, P.ERR_ACCESS_VIOLATION, "Access violation: read-only server")
            return
        if not isinstance(pkt, (P.ReadRequest, P.WriteRequest)):
            log.debug("ignoring {packet!r} on the request port from {peer}", packet=pkt, peer=addr)
            return
        limits = self.limits
        if fits is not None and fits < limits.max_blksize:
            limits = replace(limits, max_blksize=fits)
        if not self._admit(pkt, addr):
            return
        if isinstance(pkt, P.WriteRequest):
            self._writeRequest(pkt, addr, local, limits)
        else:
            self._readRequest(pkt, addr, local, limits)

    def _readRequest(
        self, request: P.ReadRequest, addr: Address, local: str, limits: SessionLimits
    ) -> None:
        key = (addr, request.filename)
        self._transfers[key] = None
        d = maybeDeferred(self.source.open, request.filename, addr)
        d.addTimeout(self.open_timeout, self.reactor)
        d.addCallbacks(
            self._opened,
            self._openFailed,
            callbackArgs=(request, addr, local, limits),
            errbackArgs=(request, addr),
        )
        d.addErrback(lambda f: log.failure("starting transfer to {peer}", f, peer=addr))

    def _listeningAddress(self) -> str:
        """
        The address the request port is bound to, if it is a specific one:
        transfer ports bind to it so that replies leave from the address
        the client talked to.  For a wildcard listener without packet info,
        the kernel's routing choice is used ("").
        """
        host = self.transport.getHost().host if self.transport is not None else ""
        return "" if host in ("0.0.0.0", "::") else host

    def _opened(
        self,
        readable: IReadable,
        request: P.ReadRequest,
        addr: Address,
        local: str,
        limits: SessionLimits,
    ) -> None:
        if not self._running:
            self._transfers.pop((addr, request.filename), None)
            readable.close()
            return
        if request.mode == "netascii":
            readable = NetasciiReadable(readable)

        def makeSession(send: Sender, send_many: BurstSender | None) -> Session:
            return ReadSession(request, readable, send, self.reactor, limits, peer=addr,
                               send_many=send_many)

        self._serve(request, addr, local, makeSession, readable.close)

    def _writeRequest(
        self, request: P.WriteRequest, addr: Address, local: str, limits: SessionLimits
    ) -> None:
        assert self.upload is not None
        try:
            upload = self.upload.open(request)
        except UploadRefused as e:
            self.budget.info(log, "refused upload of {filename} from {peer}: {reason}",
                             filename=shown(request.filename), peer=addr,
                             reason=shown(e.reason))
            self._reply(addr, e.code, e.message)
            return
        self._transfers[(addr, request.filename)] = None

        def makeSession(send: Sender, send_many: BurstSender | None) -> Session:
            return WriteSession(request, upload, send, self.reactor, limits, peer=addr)

        # A DATA packet is as large as the block size the session grants.
        self._serve(request, addr, local, makeSession, upload.discard,
                    max_size=max(limits.max_blksize, 512) + 4)

    def _serve(
        self,
        request: P.ReadRequest | P.WriteRequest,
        addr: Address,
        local: str,
        make: Callable[[Sender, BurstSender | None], Session],
        release: Callable[[], object],
        max_size: int = 2048,
    ) -> None:
        """Open the transfer port of a request and start its session there."""
        key = (addr, request.filename)

        def makeSession(send: Sender, send_many: BurstSender | None) -> Session:
            session = make(send, send_many)
            self._transfers[key] = session
            session.done.addCallback(self._ended, request, addr)
            # Debug only: the line at the end says everything, once.
            log.debug(
                "TFTP start: {filename} with {host}:{port} (options {options})",
                filename=shown(request.filename),
                host=addr[0],
                port=addr[1],
                peer=addr,
                options=session.negotiated.oack,
            )
            if isinstance(request, P.ReadRequest):
                self._notify(self.on_transfer_start, addr, request.filename,
                             dict(request.options))
            return session

        transfer = TransferProtocol(addr, makeSession)
        try:
            port = listen_transfer(self.reactor, transfer, local, max_size)
        except CannotListenError:
            log.failure("no transfer port for {peer}", peer=addr)
            self._transfers.pop(key, None)
            release()
            self._reply(addr, P.ERR_UNDEFINED, "Internal error")
            return
        if key in self._transfers:
            self._ports[key] = (port, transfer)
        else:
            # The session ended while the port was starting (a read error
            # on the first block).
            port.stopListening()
