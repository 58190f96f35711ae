# -*- test-case-name: tests.test_tftp_session -*-
"""
The server side of one TFTP read transfer, as a state machine.

L{ReadSession} knows nothing about sockets: it is given the request, the
opened content, a C{send} callable and a clock, and is fed the packets the
client sends.  That is what lets the tests drive every corner (timeouts,
lost and duplicated ACKs, block-number rollover) deterministically with a
L{twisted.internet.task.Clock} and a list standing in for the network.

Block numbers are tracked internally as unbounded integers and only reduced
to 16 bits on the wire, so files with more than 65535 blocks simply wrap
(block 65536 is sent as 0, the convention tftp-hpa and EDK2 accept).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from . import packet as P
from .source import IReadable

__all__ = [
    "SessionLimits",
    "Negotiated",
    "TransferResult",
    "negotiate",
    "ReadSession",
    "MIN_BLKSIZE",
    "MAX_BLKSIZE",
    "DEFAULT_BLKSIZE",
]

MIN_BLKSIZE = 8
MAX_BLKSIZE = 65464
DEFAULT_BLKSIZE = 512
MAX_WINDOWSIZE = 65535

# Upper bound on one read from the content: a window is read in one call when
# it is small, block by block when blocks are huge, so a session never holds
# more than about this much (or one block) in memory.
READ_CHUNK = 65536

log = Logger()


@dataclass(frozen=True)
class SessionLimits:
    """What the server is willing to agree to, and how patient it is."""

    max_blksize: int = 1468
    max_windowsize: int = 16
    timeout: float = 1.0
    retries: int = 5


@dataclass(frozen=True)
class Negotiated:
    """The outcome of option negotiation for one request."""

    blksize: int = DEFAULT_BLKSIZE
    windowsize: int = 1
    timeout: float = 1.0
    tsize: int | None = None
    oack: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TransferResult:
    """
    How a transfer ended, for logs and observers.

    C{outcome} is C{"complete"} (the final block was acknowledged),
    C{"aborted"} (the client sent an ERROR, or the server shut the transfer
    down), C{"timeout"} (the client stopped answering) or C{"error"} (the
    content could not be read).  C{bytes_sent} counts file bytes the client
    acknowledged; C{retransmits} and C{bytes_retransmitted} count DATA (and
    OACK) packets sent more than once.
    """

    outcome: str
    bytes_sent: int
    blocks: int
    retransmits: int
    bytes_retransmitted: int
    blksize: int
    windowsize: int
    tsize: int | None
    duration: float
    error: str | None = None


def _int_option(options: Mapping[str, str], name: str) -> int | None:
    value = options.get(name)
    if value is None:
        return None
    value = value.strip()
    if not value.isdigit() or len(value) > 12:
        return None
    return int(value)


def negotiate(options: Mapping[str, str], size: int | None, limits: SessionLimits) -> Negotiated:
    """
    Decide which requested options to accept (RFC 2347/2348/2349/7440).

    Invalid values are ignored rather than refused with ERROR 8: the client
    then falls back to plain RFC 1350, which is better than no boot.  Values
    above what the server allows are lowered, which the RFCs permit for
    blksize and windowsize.  C{tsize} is answered only when the size is known.
    """
    options = {k.lower(): v for k, v in options.items()}
    oack: dict[str, str] = {}
    blksize = DEFAULT_BLKSIZE
    requested = _int_option(options, "blksize")
    if requested is not None and requested >= MIN_BLKSIZE:
        blksize = max(MIN_BLKSIZE, min(requested, MAX_BLKSIZE, limits.max_blksize))
        oack["blksize"] = str(blksize)
    timeout = limits.timeout
    requested = _int_option(options, "timeout")
    if requested is not None and 1 <= requested <= 255:
        timeout = float(requested)
        oack["timeout"] = str(requested)
    tsize = None
    if "tsize" in options and _int_option(options, "tsize") is not None and size is not None:
        tsize = size
        oack["tsize"] = str(size)
    windowsize = 1
    requested = _int_option(options, "windowsize")
    if requested is not None and 1 <= requested <= MAX_WINDOWSIZE:
        windowsize = max(1, min(requested, limits.max_windowsize))
        oack["windowsize"] = str(windowsize)
    return Negotiated(blksize, windowsize, timeout, tsize, oack)


class ReadSession:
    """
    Serve one read request.

    The session owns C{readable} once started and closes it when it ends.
    C{done} fires (never errbacks) with a L{TransferResult} exactly once.

    Duplicate and stale ACKs are ignored: only a timeout causes a
    retransmission.  Answering every duplicate ACK with a new DATA packet is
    the "Sorcerer's Apprentice" bug of RFC 1350, where one delayed packet
    doubles the traffic for the rest of the transfer.  An ACK for a block in
    the middle of the window in flight means the client saw a gap there
    (RFC 7440), so sending resumes right after it.
    """

    def __init__(
        self,
        request: P.ReadRequest,
        readable: IReadable,
        send: Callable[[bytes], object],
        clock: IReactorTime,
        limits: SessionLimits | None = None,
        *,
        peer: tuple[str, int] | None = None,
    ) -> None:
        self.request = request
        self.peer = peer
        self.limits = limits or SessionLimits()
        self.done: Deferred[TransferResult] = Deferred()
        self._readable = readable
        self._send = send
        self._clock = clock
        self.negotiated = negotiate(request.options, readable.size, self.limits)
        self.blksize = self.negotiated.blksize
        self.windowsize = self.negotiated.windowsize
        self._timeout = self.negotiated.timeout
        # Absolute (unwrapped) block numbers.
        self._acked = 0
        self._highest_sent = 0
        self._last: int | None = None
        self._last_len = 0
        self._oack_pending = False
        self._retries = 0
        self._timer: IDelayedCall | None = None
        self._finished = False
        self._started_at = 0.0
        self.retransmits = 0
        self.bytes_retransmitted = 0
        # Read-ahead buffer: blocks [_buf_first, ...) from one read() call.
        self._buf = b""
        self._buf_first = 1
        self._buf_eof = False
        chunk_blocks = max(1, min(self.windowsize, READ_CHUNK // self.blksize))
        self._chunk = chunk_blocks * self.blksize

    @property
    def finished(self) -> bool:
        return self._finished

    def start(self) -> None:
        """Send the OACK, or DATA 1 when no option was accepted."""
        self._started_at = self._clock.seconds()
        if self.negotiated.oack:
            self._oack_pending = True
            self._send_oack()
            self._arm()
        else:
            self._send_window(1)

    # Incoming packets

    def datagramReceived(self, datagram: bytes) -> None:
        """Handle a datagram from the client's transfer ID."""
        try:
            pkt = P.decode(datagram)
        except P.MalformedPacket as e:
            log.debug("ignoring malformed packet from {peer}: {reason}", peer=self.peer, reason=e)
            return
        self.packetReceived(pkt)

    def packetReceived(self, pkt: P.Packet) -> None:
        if self._finished:
            return
        if isinstance(pkt, P.Ack):
            self._ackReceived(pkt.block)
        elif isinstance(pkt, P.Error):
            log.debug(
                "client {peer} ended the transfer of {filename}: error {code} {message}",
                peer=self.peer,
                filename=self.request.filename,
                code=pkt.code,
                message=pkt.message,
            )
            self._finish("aborted", f"client error {pkt.code}: {pkt.message}")
        else:
            log.debug("ignoring unexpected {packet!r} from {peer}", packet=pkt, peer=self.peer)

    def _ackReceived(self, wire: int) -> None:
        if self._oack_pending:
            if wire != 0:
                log.debug("ignoring ACK {block} while waiting for ACK 0", block=wire)
                return
            self._oack_pending = False
            self._retries = 0
            self._send_window(1)
            return
        # Map the 16-bit number onto the blocks in flight.  At most
        # windowsize (< 65536) blocks are outstanding, so this is unambiguous.
        n = self._acked + ((wire - self._acked) & 0xFFFF)
        if n == self._acked or n > self._highest_sent:
            log.debug("ignoring stale or duplicate ACK {block}", block=wire, peer=self.peer)
            return
        self._acked = n
        self._retries = 0
        if n == self._last:
            self._finish("complete")
        else:
            self._send_window(n + 1)

    def abort(self, reason: str) -> None:
        """End the transfer from the server side, telling the client why."""
        if self._finished:
            return
        self._send_error(P.ERR_UNDEFINED, reason)
        self._finish("aborted", reason)

    # Sending

    def _send_oack(self) -> None:
        self._transmit(P.encode(P.OptionAck(dict(self.negotiated.oack))))

    def _send_error(self, code: int, message: str) -> None:
        self._transmit(P.encode(P.Error(code, message)))

    def _transmit(self, datagram: bytes) -> None:
        try:
            self._send(datagram)
        except Exception:
            # A send failure is like a lost packet: the timer recovers.
            log.failure("sending to {peer} failed", peer=self.peer)

    def _send_window(self, first: int) -> None:
        """Send up to windowsize blocks starting at C{first}, then wait."""
        n = first
        try:
            for n in range(first, first + self.windowsize):
                payload = self._block(n)
                if n <= self._highest_sent:
                    self.retransmits += 1
                    self.bytes_retransmitted += len(payload)
                else:
                    self._highest_sent = n
                self._transmit(P.encode(P.Data(n & 0xFFFF, payload)))
                if len(payload) < self.blksize:
                    self._last = n
                    self._last_len = len(payload)
                    break
        except Exception as e:
            log.failure("reading {filename} failed", filename=self.request.filename)
            self._send_error(P.ERR_UNDEFINED, "Read error")
            self._finish("error", f"read error: {e}")
            return
        log.debug("sent DATA {first}..{last} to {peer}", first=first, last=n, peer=self.peer)
        self._arm()

    def _block(self, n: int) -> bytes:
        bs = self.blksize
        start = (n - self._buf_first) * bs
        available = len(self._buf) - start
        if start < 0 or not (available >= bs or (self._buf_eof and available >= 0)):
            self._buf = self._readable.read((n - 1) * bs, self._chunk)
            self._buf_first = n
            self._buf_eof = len(self._buf) < self._chunk
            start = 0
        return self._buf[start : start + bs]

    # Timing

    def _arm(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = self._clock.callLater(self._timeout, self._timedOut)

    def _timedOut(self) -> None:
        self._timer = None
        if self._finished:
            return
        self._retries += 1
        if self._retries > self.limits.retries:
            log.debug(
                "giving up on {peer} after {n} retries", peer=self.peer, n=self.limits.retries
            )
            self._send_error(P.ERR_UNDEFINED, "Timeout")
            self._finish("timeout", "client stopped answering")
            return
        if self._oack_pending:
            self.retransmits += 1
            self._send_oack()
            self._arm()
        else:
            self._send_window(self._acked + 1)

    # Ending

    def _acked_bytes(self) -> int:
        if self._last is not None and self._acked >= self._last:
            return (self._last - 1) * self.blksize + self._last_len
        return self._acked * self.blksize

    def _finish(self, outcome: str, error: str | None = None) -> None:
        if self._finished:
            return
        self._finished = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        try:
            self._readable.close()
        except Exception:
            log.failure("closing {filename} failed", filename=self.request.filename)
        self._buf = b""
        result = TransferResult(
            outcome=outcome,
            bytes_sent=self._acked_bytes(),
            blocks=self._acked,
            retransmits=self.retransmits,
            bytes_retransmitted=self.bytes_retransmitted,
            blksize=self.blksize,
            windowsize=self.windowsize,
            tsize=self.negotiated.tsize,
            duration=self._clock.seconds() - self._started_at,
            error=error,
        )
        self.done.callback(result)
