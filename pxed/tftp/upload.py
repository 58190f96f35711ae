# -*- test-case-name: tests.test_tftp_upload -*-
"""
Write requests, for sites that turn them on: where uploads go and the
receiving side of one transfer.

pxed is a boot server, so writes are refused unless an upload root is
configured.  Some firmware and installers do write (crash dumps, switch
configurations, installer logs); with an L{UploadRoot} they may create
files below it, by the same name rules as reads, and nothing else:

  - the directory must exist inside the root (none is created), and a
    symlink out of it is refused like a read;
  - an existing file is never replaced unless C{overwrite} is set
    (ERROR 6 otherwise);
  - the data goes to a hidden temporary file beside the target and is
    moved into place only once the last block has arrived, so a transfer
    that fails or is abandoned leaves nothing, and a reader never sees half
    a file;
  - a size limit holds both for the announced C{tsize} (refused up front)
    and for what actually arrives (ERROR 3 then).

L{WriteSession} is the receiving state machine, with the same shape as
L{pxed.tftp.session.ReadSession}: a request, a C{send} callable and a
clock, fed the client's packets.  With RFC 7440's windowsize it ACKs the
last block of each window; after a gap it ACKs the last block received in
order once, then waits for the sender to resume from there, so neither
side answers a packet with more than one packet (no Sorcerer's Apprentice).

The temporary file, the quota and the sweep of a crash's leftovers are
L{pxed.tftp.uploadfile}'s: they know files, not requests or packets.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from . import packet as P
from .deadline import Deadline, quiet_end
from .netascii import NetasciiDecoder
from .options import SessionLimits, TransferResult, int_option, negotiate
from .source import AccessViolation, FileNotFound, name_parts
from .uploadfile import PART_SUFFIX, FileExists, Quota, TooLarge, Upload, sweep

# Upload, Quota, FileExists, TooLarge, sweep and PART_SUFFIX live in
# pxed.tftp.uploadfile and keep importing from here.
__all__ = ["UploadRoot", "Upload", "UploadRefused", "FileExists", "TooLarge", "WriteSession",
           "Quota", "sweep", "PART_SUFFIX"]

log = Logger()

#: Default largest upload: a crash dump or a log, not a disk image.
MAX_UPLOAD = 64 * 1024 * 1024
#: Default total for all uploads together (see L{UploadRoot}).
UPLOAD_QUOTA = 1024 * 1024 * 1024
#: How long a finished upload waits for its final block again: a client
#: that missed the final ACK resends on its own timer (tftp-hpa: 5 s).
DALLY = 6.0


class UploadRefused(Exception):
    """A write request turned away, with the TFTP error to answer and why."""

    def __init__(self, code: int, message: str, reason: str) -> None:
        super().__init__(reason)
        self.code, self.message, self.reason = code, message, reason


class UploadRoot:
    """
    The directory write requests may create files in (see the module
    docstring).

    @param quota: the bytes all uploads together may take there (files
        already in it count), or C{None} for no limit but the disk's.
    """

    def __init__(self, root: Path | str, *, max_size: int = MAX_UPLOAD,
                 overwrite: bool = False, quota: int | None = None) -> None:
        self.root = Path(root).resolve()
        self.max_size = max_size
        self.overwrite = overwrite
        removed, used = sweep(self.root)
        if removed:
            log.info("{root}: removed {count} unfinished upload(s) left by an earlier run",
                     root=str(self.root), count=removed)
        self.quota = Quota(quota, used) if quota is not None else None

    def open(self, request: P.WriteRequest) -> Upload:
        """
        Start receiving what C{request} sends.

        @raise UploadRefused: with the TFTP error that says why not.
        """
        announced = announced_size(request.options)
        if announced is not None and announced > self.max_size:
            raise UploadRefused(P.ERR_DISK_FULL, "Disk full or allocation exceeded",
                                f"tsize {announced} is over the limit of {self.max_size}")
        quota = self.quota
        if quota is not None and quota.used + (announced or 0) >= quota.limit:
            raise UploadRefused(P.ERR_DISK_FULL, "Disk full or allocation exceeded",
                                f"the upload quota of {quota.limit} bytes is used up")
        try:
            return self.create(request.filename)
        except FileNotFound:
            raise UploadRefused(P.ERR_FILE_NOT_FOUND, "File not found",
                                "no such directory") from None
        except FileExists:
            raise UploadRefused(P.ERR_FILE_EXISTS, "File already exists", "file exists") from None
        except AccessViolation as e:
            raise UploadRefused(P.ERR_ACCESS_VIOLATION, "Access violation", str(e)) from None

    def create(self, filename: str) -> Upload:
        """
        Start receiving C{filename}.

        @raise AccessViolation: a bad name, a path leaving the root, a
            symlink or something other than a regular file in the way.
        @raise FileNotFound: the directory does not exist.
        @raise FileExists: the file exists and may not be replaced.
        """
        parts = name_parts(filename)
        try:
            directory = self.root.joinpath(*parts[:-1]).resolve(strict=True)
        except (FileNotFoundError, NotADirectoryError):
            raise FileNotFound(filename) from None
        except (OSError, RuntimeError) as e:
            raise AccessViolation(f"{filename!r}: {e}") from None
        if not directory.is_relative_to(self.root) or not directory.is_dir():
            raise AccessViolation(f"{filename!r}: not a directory inside the upload root")
        path = directory / parts[-1]
        if path.is_symlink() or (path.exists() and not path.is_file()):
            raise AccessViolation(f"{filename!r}: not a regular file")
        if path.exists() and not self.overwrite:
            raise FileExists(filename)
        replaces = path.stat().st_size if path.exists() else 0
        return Upload(path, self.overwrite, self.max_size, self.quota, replaces)


def announced_size(options: dict[str, str]) -> int | None:
    """The C{tsize} a write request announces (RFC 2349), if any."""
    return int_option(options, "tsize")


class WriteSession:
    """
    Receive one write request into C{upload}.

    C{done} fires (never errbacks) with a L{TransferResult} exactly once;
    C{bytes_sent} there counts the bytes received and kept.  The session
    owns C{upload}: it commits it after the last block or discards it.
    After the last block it stays L{DALLY} seconds (at least the timeout)
    to ACK the final block again should the client not have heard the
    first ACK; the file is in place by then.
    """

    def __init__(
        self,
        request: P.WriteRequest,
        upload: Upload,
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
        self._upload = upload
        self._send = send
        self._clock = clock
        self.negotiated = negotiate(request.options, announced_size(request.options),
                                    self.limits)
        self.blksize = self.negotiated.blksize
        self.windowsize = self.negotiated.windowsize
        self._timeout = self.negotiated.timeout
        self._decoder = NetasciiDecoder() if request.mode == "netascii" else None
        self._received = 0  # absolute number of the last block in order
        self._window_start = 0  # the block ACKed last: a window counts from it
        self._gap_acked = False
        self._data_seen = False
        self._complete = False
        self._finished = False
        self._retries = 0
        self._progress_at = self._started_at = self._acked_at = 0.0
        self._patience = max(self.limits.patience, (self.limits.retries + 1) * self._timeout)
        self._timer = Deadline(clock, self._timedOut)
        self.retransmits = 0

    @property
    def finished(self) -> bool:
        return self._finished

    def start(self) -> None:
        """Answer the request: an OACK, or ACK 0 when no option was accepted."""
        self._started_at = self._progress_at = self._clock.seconds()
        self._acknowledge()

    def _acknowledge(self) -> None:
        # The OACK again only while nothing has come back: once any DATA
        # has arrived the client has it, and ACK 0 says "resend from block
        # 1" (atftp takes a repeated OACK for an ACK of its whole window).
        if not self._data_seen and self.negotiated.oack:
            self._transmit(P.encode(P.OptionAck(dict(self.negotiated.oack))))
        else:
            self._transmit(P.encode(P.Ack(self._received & 0xFFFF)))
        now = self._acked_at = self._clock.seconds()
        when = now + self._delay()
        if not self._data_seen:  # no timer past the quiet end (see _timedOut)
            when = min(when, self._quiet_end())
        self._timer.set(when, now)

    def _transmit(self, datagram: bytes) -> None:
        try:
            self._send(datagram)
        except Exception:
            log.failure("sending to {peer} failed", peer=self.peer)

    def _delay(self) -> float:
        if self._complete:
            return max(self._timeout, DALLY)
        return min(self._timeout * (2 ** min(self._retries, 8)), self._patience)

    def datagramReceived(self, datagram: bytes) -> None:
        try:
            pkt = P.decode(datagram)
        except P.MalformedPacket:
            return
        if self._finished:
            return
        if isinstance(pkt, P.Data):
            self._data(pkt.block, pkt.payload)
        elif isinstance(pkt, P.Error):
            self._end("aborted", f"client error {pkt.code}: {pkt.message}")

    def _data(self, wire: int, payload: bytes) -> None:
        self._data_seen = True
        expected = self._received + 1
        ahead = (wire - expected) & 0xFFFF
        if self._complete or ahead != 0:
            if ahead == 0xFFFF:
                if self._complete and self._clock.seconds() - self._progress_at > DALLY:
                    # Resent again and again after the end: the file is in
                    # place, and the transfer's slot is not held for ever.
                    self._end("complete")
                    return
                # The block ACKed last, again: that ACK was lost.
                self.retransmits += 1
                self._acknowledge()
            elif ahead < 0x8000 and not self._gap_acked and not self._complete:
                # A block was lost: say once where to resume (RFC 7440);
                # the rest of that window is ignored until it does.
                self.retransmits += 1
                self._ack_window()
                self._gap_acked = True
            return
        if len(payload) > self.blksize:
            self._fail(P.ERR_ILLEGAL_OPERATION, "Block larger than blksize", "oversized block")
            return
        data = payload if self._decoder is None else self._decoder.feed(payload)
        last = len(payload) < self.blksize
        if last and self._decoder is not None:
            data += self._decoder.flush()
        try:
            self._upload.write(data)
            if last:
                self._upload.commit()
        except TooLarge as e:
            self._fail(P.ERR_DISK_FULL, "Disk full or allocation exceeded", str(e))
            return
        except FileExists:
            self._fail(P.ERR_FILE_EXISTS, "File already exists", "file appeared meanwhile")
            return
        except OSError as e:
            log.failure("writing {filename} failed", filename=self.request.filename)
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                self._fail(P.ERR_DISK_FULL, "Disk full or allocation exceeded", "disk full")
            else:
                self._fail(P.ERR_UNDEFINED, "Write error", f"write error: {e.strerror}")
            return
        self._received = expected
        self._progress_at = self._clock.seconds()
        self._retries = 0
        self._gap_acked = False
        if last:
            self._complete = True
            self._ack_window()
        elif expected - self._window_start >= self.windowsize:
            self._ack_window()

    def _ack_window(self) -> None:
        self._window_start = self._received
        self._acknowledge()

    def _quiet_end(self) -> float:
        """
        While the client has sent nothing since its request: when the
        session ends (its answer went out at the start, last at
        C{_acked_at}).
        """
        return quiet_end(self._started_at, self._acked_at, self.limits.timeout)

    def _timedOut(self) -> None:
        if self._finished:
            return
        if self._complete:
            self._end("complete")
            return
        now = self._clock.seconds()
        resume = self._progress_at + self._delay()
        if self._progress_at > self._acked_at and resume > now:
            # Blocks came in since the last ACK (a long window): not yet.
            self._timer.set(resume, now)
            return
        if not self._data_seen:
            # Nothing has come from the client since its request (perhaps
            # a spoofed one): one repeat of the answer, then silence until
            # the quiet end (pxed.tftp.deadline.quiet_end), then the end,
            # without an ERROR.
            if now >= self._quiet_end() - 1e-6:
                self._end("timeout", "client never answered")
                return
            if self.retransmits >= 1:
                self._timer.set(self._quiet_end(), now)
                return
        if now - self._progress_at >= self._patience - 1e-6:
            self._fail(P.ERR_UNDEFINED, "Timeout", "client stopped sending", outcome="timeout")
            return
        # Nothing new for a timeout: repeat the last answer, which also
        # restarts a window whose blocks were all lost.
        self._retries += 1
        self.retransmits += 1
        self._gap_acked = False
        self._ack_window()

    def abort(self, reason: str) -> None:
        """End the transfer from the server side, telling the client why."""
        if not self._finished and not self._complete:
            self._fail(P.ERR_UNDEFINED, reason, reason, outcome="aborted")
        elif not self._finished:
            self._end("complete")

    def _fail(self, code: int, message: str, reason: str, outcome: str = "error") -> None:
        self._transmit(P.encode(P.Error(code, message)))
        self._end(outcome, reason)

    def _end(self, outcome: str, error: str | None = None) -> None:
        if self._finished:
            return
        self._finished = True
        self._timer.cancel()
        if outcome != "complete":
            self._upload.discard()
        result = TransferResult(
            outcome=outcome, bytes_sent=self._upload.size if outcome == "complete" else 0,
            blocks=self._received, retransmits=self.retransmits, bytes_retransmitted=0,
            blksize=self.blksize, windowsize=self.windowsize, tsize=self.negotiated.tsize,
            duration=self._clock.seconds() - self._started_at, error=error, upload=True)
        self.done.callback(result)
