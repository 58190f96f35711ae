# -*- test-case-name: tests.test_tftp_protocol -*-
"""
A small TFTP read client: a tool for tests, benchmarks and diagnostics,
not used by the server (nothing in pxed's services imports it).

It exists so that the server can be tested end to end with the same option
set PXE firmware uses (blksize, tsize, windowsize), and so that pxed can
check its own TFTP service.  It is deliberately strict: anything a correct
server would not send (an option that was not requested, a block larger than
agreed) fails the fetch, so that server bugs show up in tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from . import packet as P
from .session import DEFAULT_BLKSIZE

__all__ = ["TFTPError", "TFTPTimeout", "FetchResult", "fetch", "fetch_result"]

log = Logger()


class TFTPError(Exception):
    """The server answered with an ERROR packet (or the client refused the
    server's answer, in which case C{code} is what the client sent)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message


class TFTPTimeout(Exception):
    """The server stopped answering."""


@dataclass
class FetchResult:
    """A completed download and what was negotiated for it."""

    data: bytes
    options: dict[str, str] = field(default_factory=dict)
    blocks: int = 0
    server: tuple[str, int] | None = None


class _ReadClient(DatagramProtocol):
    noisy = False

    def __init__(
        self,
        clock: Any,
        server: tuple[str, int],
        request: P.ReadRequest,
        timeout: float,
        retries: int,
        dally: float = 0.0,
    ) -> None:
        self.clock = clock
        self.dally = dally
        self._complete = False
        self.server = server
        self.request = request
        self.timeout = timeout
        self.retries = retries
        self.result: Deferred[FetchResult] = Deferred()
        self.blksize = DEFAULT_BLKSIZE
        self.windowsize = 1
        self.options: dict[str, str] = {}
        self._tid: tuple[str, int] | None = None
        self._chunks: list[bytes] = []
        self._received = 0  # absolute number of the last in-order block
        self._in_window = 0
        self._gap_acked_at: float | None = None
        self._last_sent = b""
        self._tries = 0
        self._timer: IDelayedCall | None = None
        self._done = False
        self._oack_seen = False

    def startProtocol(self) -> None:
        self._send(P.encode(self.request), self.server)

    def _send(self, datagram: bytes, addr: tuple[str, int] | None = None) -> None:
        assert self.transport is not None
        self._last_sent = datagram
        self.transport.write(datagram, addr or self._tid or self.server)
        self._arm()

    def _progress(self) -> None:
        self._tries = 0

    def _arm(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = self.clock.callLater(self.timeout, self._timedOut)

    def _timedOut(self) -> None:
        self._timer = None
        self._tries += 1
        if self._tries > self.retries:
            self._fail(TFTPTimeout(f"no answer from {self.server[0]}:{self.server[1]}"))
            return
        self._in_window = 0
        if self._oack_seen or self._received:
            # Tell the server where we are; it resumes from there.
            self._send(P.encode(P.Ack(self._received & 0xFFFF)))
        else:
            self._send(self._last_sent)  # the request

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        if self._done or addr[0] != self.server[0]:
            return
        addr = (addr[0], addr[1])
        if self._tid is None:
            self._tid = addr
        elif addr != self._tid:
            assert self.transport is not None
            self.transport.write(P.encode(P.Error(P.ERR_UNKNOWN_TID, "Unknown transfer ID")), addr)
            return
        try:
            pkt = P.decode(datagram)
        except P.MalformedPacket:
            return
        if isinstance(pkt, P.Error):
            self._fail(TFTPError(pkt.code, pkt.message), send=False)
        elif isinstance(pkt, P.OptionAck):
            self._optionAck(pkt.options)
        elif isinstance(pkt, P.Data):
            self._data(pkt)

    def _optionAck(self, options: dict[str, str]) -> None:
        if self._received or self._oack_seen:
            return  # a retransmitted OACK: our ACK 0 will be resent on timeout
        requested = self.request.options
        for name, value in options.items():
            if name not in requested or not value.isdigit():
                self._refuse(P.ERR_OPTION_NEGOTIATION, f"unexpected option {name}={value}")
                return
            number = int(value)
            if name in ("blksize", "windowsize") and not 1 <= number <= int(requested[name]):
                self._refuse(P.ERR_OPTION_NEGOTIATION, f"bad {name} {value}")
                return
        self._oack_seen = True
        self._progress()
        self.options = dict(options)
        self.blksize = int(options.get("blksize", DEFAULT_BLKSIZE))
        self.windowsize = int(options.get("windowsize", 1))
        self._send(P.encode(P.Ack(0)))

    def _data(self, pkt: P.Data) -> None:
        if self._complete:
            # Dallying: the server did not get our final ACK.
            if pkt.block == self._received & 0xFFFF and self.transport is not None:
                self.transport.write(P.encode(P.Ack(pkt.block)), self._tid or self.server)
            return
        expected = self._received + 1
        if pkt.block != expected & 0xFFFF:
            # A gap or a duplicate: say where we are (RFC 7440), then wait
            # for the server to resume from there.  Repeated at most every
            # tenth of the timeout, in case that ACK is lost too, without
            # answering every stray block.
            # The retransmission timer is left alone, so that a server
            # sending only wrong blocks still makes the fetch time out.
            now = self.clock.seconds()
            if self._gap_acked_at is None or now - self._gap_acked_at >= self.timeout / 10:
                self._gap_acked_at = now
                self._in_window = 0
                ack = P.encode(P.Ack(self._received & 0xFFFF))
                assert self.transport is not None
                self.transport.write(ack, self._tid or self.server)
            return
        if len(pkt.payload) > self.blksize:
            self._refuse(P.ERR_ILLEGAL_OPERATION, "block larger than blksize")
            return
        self._received = expected
        self._progress()
        self._gap_acked_at = None
        self._chunks.append(pkt.payload)
        self._in_window += 1
        if len(pkt.payload) < self.blksize:
            self._send(P.encode(P.Ack(pkt.block)))
            if self.dally > 0:
                # RFC 1350: linger to repeat the final ACK if it was lost.
                self._complete = True
                if self._timer is not None and self._timer.active():
                    self._timer.cancel()
                self._timer = self.clock.callLater(self.dally, self._finish)
            else:
                self._finish()
        elif self._in_window >= self.windowsize:
            self._in_window = 0
            self._send(P.encode(P.Ack(pkt.block)))
        else:
            self._arm()

    def _refuse(self, code: int, message: str) -> None:
        self._fail(TFTPError(code, message), send=True)

    def _stop(self) -> Deferred[None]:
        self._done = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        d: Deferred[None] = Deferred()
        port = self.transport
        if port is None:
            d.callback(None)
            return d
        stopped = port.stopListening()
        if isinstance(stopped, Deferred):
            stopped.addBoth(lambda _: d.callback(None))
        else:
            d.callback(None)
        return d

    def _fail(self, error: Exception, send: bool = True) -> None:
        if self._done:
            return
        if send and isinstance(error, TFTPError) and self.transport is not None:
            self.transport.write(
                P.encode(P.Error(error.code, error.message)), self._tid or self.server
            )
        self._stop().addCallback(lambda _: self.result.errback(error))

    def _finish(self) -> None:
        result = FetchResult(b"".join(self._chunks), self.options, self._received, self._tid)
        self._stop().addCallback(lambda _: self.result.callback(result))


def fetch_result(
    reactor: Any,
    host: str,
    port: int,
    filename: str,
    *,
    blksize: int | None = None,
    tsize: bool = False,
    windowsize: int | None = None,
    timeout: float = 1.0,
    retries: int = 5,
    interface: str = "",
    dally: float = 0.0,
) -> Deferred[FetchResult]:
    """
    Download C{filename} from C{host}:C{port}.

    @param reactor: provides IReactorUDP and IReactorTime.
    @param blksize: request this block size (RFC 2348).
    @param tsize: ask for the transfer size (RFC 2349); it is returned in
        the result's C{options}.
    @param windowsize: request this window (RFC 7440).
    @param interface: local address to bind (the default binds all).
    @param dally: after the final block, keep answering for this many
        seconds in case the final ACK was lost (RFC 1350); the result
        fires after that.
    @return: fires with a L{FetchResult}; fails with L{TFTPError} or
        L{TFTPTimeout}.
    """
    options: dict[str, str] = {}
    if blksize is not None:
        options["blksize"] = str(blksize)
    if tsize:
        options["tsize"] = "0"
    if windowsize is not None:
        options["windowsize"] = str(windowsize)
    request = P.ReadRequest(filename, "octet", options)
    client = _ReadClient(reactor, (host, port), request, timeout, retries, dally)
    # Room for the largest block (65464 + 4): Twisted's default of 8192
    # would cut larger DATA packets short, and a short block ends a transfer.
    reactor.listenUDP(0, client, interface=interface, maxPacketSize=65536)
    return client.result


def fetch(
    reactor: Any,
    host: str,
    port: int,
    filename: str,
    *,
    blksize: int | None = None,
    tsize: bool = False,
    windowsize: int | None = None,
    timeout: float = 1.0,
    retries: int = 5,
    interface: str = "",
    dally: float = 0.0,
) -> Deferred[bytes]:
    """Download C{filename} and fire with its content; see L{fetch_result}."""
    d = fetch_result(
        reactor,
        host,
        port,
        filename,
        blksize=blksize,
        tsize=tsize,
        windowsize=windowsize,
        timeout=timeout,
        retries=retries,
        interface=interface,
        dally=dally,
    )
    return d.addCallback(lambda r: r.data)
