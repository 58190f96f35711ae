# -*- test-case-name: tests.test_tftp_benchmark -*-
"""
A lean TFTP read client for the benchmark (L{benchmarks.tftp}).

pxed's own client (L{pxed.tftp.client}) is written for clarity and
strictness, on the reactor; measuring a server with it would mostly
measure the client.  This one does the least a correct client can per
packet: one C{recvfrom_into} into a buffer reused for the whole transfer,
a block-number check on two bytes, a CRC of the payload (so a wrong byte
shows up as a failure, not as speed), and an ACK at the end of each window
(RFC 7440) or after a gap.  Nothing is written to disk.

L{fetch} runs one transfer on a blocking socket; L{fetch_many} runs many
at once on non-blocking sockets and one C{epoll}, each from its own
loopback address, as many machines booting at once would.
"""

from __future__ import annotations

import select
import socket
import struct
import time
import zlib
from dataclasses import dataclass

__all__ = ["Outcome", "Transfer", "fetch", "fetch_many", "request"]

_ACK = struct.Struct("!HH")
_RECEIVE_BUFFER = 4 << 20
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


@dataclass
class Outcome:
    """How one transfer went: bytes, their CRC-32, seconds, or an error."""

    size: int = 0
    crc: int = 0
    seconds: float = 0.0
    error: str | None = None
    timeouts: int = 0
    #: The size the OACK announced (C{tsize}), if any.
    tsize: int | None = None


def request(filename: str, blksize: int, windowsize: int, tsize: bool = False) -> bytes:
    """
    An octet-mode RRQ asking for C{blksize}, C{tsize} if asked (as GRUB
    does) and, above 1, C{windowsize}.
    """
    options = f"blksize\0{blksize}\0"
    if tsize:
        options += "tsize\0" + "0\0"
    if windowsize > 1:
        options += f"windowsize\0{windowsize}\0"
    return b"\0\1" + filename.encode() + b"\0octet\0" + options.encode()


def _socket(bind: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, _RECEIVE_BUFFER)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RECEIVE_BUFFER)
    sock.bind((bind, 0))
    return sock


class Transfer:
    """
    The receiving side of one transfer, fed one datagram at a time; the
    same logic serves the blocking and the multiplexed client.
    """

    def __init__(self, sock: socket.socket, server: tuple[str, int], rrq: bytes,
                 blksize: int, windowsize: int) -> None:
        self.sock = sock
        self.server = server
        self.rrq = rrq
        # Asked for; the OACK says what was granted (tftpd-hpa grants no
        # window: without it in the OACK, the transfer is lock-step).
        self.asked = (blksize, windowsize)
        self.blksize = 512
        self.windowsize = 1
        self.buf = bytearray(65536)
        self.view = memoryview(self.buf)
        self.tid: tuple[str, int] | None = None
        self.wire = 1  # the next block expected, as on the wire
        self.in_window = 0
        self.gap_acked = -1
        self.last = self.rrq
        self.outcome = Outcome()
        self.started = self.active = 0.0
        self.done = False

    def start(self, now: float) -> None:
        self.started = self.active = now
        self.sock.sendto(self.rrq, self.server)

    def _send(self, datagram: bytes) -> None:
        self.last = datagram
        self.sock.sendto(datagram, self.tid or self.server)

    def received(self, n: int, addr: tuple[str, int], now: float) -> None:
        """Handle the C{n} bytes now in C{self.buf}, from C{addr}."""
        buf = self.buf
        if self.tid is None:
            if addr[0] != self.server[0]:
                return
            self.tid = addr
        elif addr != self.tid:
            return
        op = buf[1] if n >= 4 and buf[0] == 0 else 0
        if op == 3:
            block = buf[2] << 8 | buf[3]
            if block == self.wire:
                self.active = now
                size = n - 4
                out = self.outcome
                out.crc = zlib.crc32(self.view[4:n], out.crc)
                out.size += size
                self.wire = (block + 1) & 0xFFFF
                self.in_window += 1
                if size < self.blksize:
                    self._send(_ACK.pack(4, block))
                    self._finish(now)
                elif self.in_window >= self.windowsize:
                    self.in_window = 0
                    self._send(_ACK.pack(4, block))
            elif self.gap_acked != self.wire:
                # A gap (RFC 7440): say once per gap where we are.
                self.gap_acked = self.wire
                self.in_window = 0
                self._send(_ACK.pack(4, (self.wire - 1) & 0xFFFF))
        elif op == 6:
            self.active = now
            fields = bytes(buf[2:n]).split(b"\0")
            options = dict(zip(fields[0::2], fields[1::2], strict=False))
            self.blksize = int(options.get(b"blksize", 512))
            self.windowsize = int(options.get(b"windowsize", 1))
            if b"tsize" in options:
                self.outcome.tsize = int(options[b"tsize"])
            if self.blksize > self.asked[0] or self.windowsize > self.asked[1]:
                self._error(f"OACK grants more than asked: {options}")
                return
            self._send(_ACK.pack(4, 0))
        elif op == 5:
            message = bytes(buf[4:n]).split(b"\0", 1)[0].decode(errors="replace")
            self._error(f"ERROR {buf[2] << 8 | buf[3]}: {message}", send=False)

    def timed_out(self, now: float, retries: int) -> None:
        """No progress for a timeout: ask again, or give up."""
        self.outcome.timeouts += 1
        if self.outcome.timeouts > retries:
            self._error("timed out", send=False)
            return
        self.active = now
        self.in_window = 0
        self.gap_acked = -1
        self.sock.sendto(self.last, self.tid or self.server)

    def _error(self, message: str, send: bool = True) -> None:
        if send and self.tid is not None:
            self.sock.sendto(b"\0\5\0\0" + message.encode()[:100] + b"\0", self.tid)
        self.outcome.error = message
        self._finish(time.perf_counter())

    def _finish(self, now: float) -> None:
        self.done = True
        self.outcome.seconds = now - self.started


def fetch(server: tuple[str, int], filename: str, blksize: int, windowsize: int,
          bind: str = "127.0.0.1", timeout: float = 1.0, retries: int = 5,
          tsize: bool = False) -> Outcome:
    """Download C{filename} once, as fast as the server sends it."""
    sock = _socket(bind)
    sock.settimeout(timeout)
    transfer = Transfer(sock, server, request(filename, blksize, windowsize, tsize), blksize,
                        windowsize)
    receive, clock, received = sock.recvfrom_into, time.perf_counter, transfer.received
    try:
        transfer.start(clock())
        while not transfer.done:
            try:
                n, addr = receive(transfer.buf)
            except TimeoutError:
                transfer.timed_out(clock(), retries)
                continue
            received(n, addr, clock())
    finally:
        sock.close()
    return transfer.outcome


def fetch_many(server: tuple[str, int], filename: str, count: int, blksize: int,
               windowsize: int, timeout: float = 1.0, retries: int = 5,
               deadline: float = 300.0) -> list[Outcome]:
    """
    Start C{count} downloads at once, the i-th from 127.1.x.y (one address
    per simulated machine, so per-client limits apply as in a rack), and
    run them to the end or to C{deadline} seconds.
    """
    poller = select.epoll()
    by_fd: dict[int, Transfer] = {}
    transfers = []
    rrq = request(filename, blksize, windowsize)
    try:
        for i in range(count):
            sock = _socket(f"127.1.{1 + i // 250}.{1 + i % 250}")
            sock.setblocking(False)
            transfer = Transfer(sock, server, rrq, blksize, windowsize)
            transfers.append(transfer)
            by_fd[sock.fileno()] = transfer
            poller.register(sock.fileno(), select.EPOLLIN)
        clock = time.perf_counter
        start = clock()
        for transfer in transfers:
            transfer.start(start)
        running = count
        checked = start
        while running and clock() - start < deadline:
            for fd, _ in poller.poll(0.05):
                transfer = by_fd[fd]
                receive = transfer.sock.recvfrom_into
                for _ in range(256):
                    try:
                        n, addr = receive(transfer.buf)
                    except BlockingIOError:
                        break
                    transfer.received(n, addr, clock())
                    if transfer.done:
                        poller.unregister(fd)
                        running -= 1
                        break
            now = clock()
            if now - checked > timeout / 4:
                checked = now
                for transfer in transfers:
                    if not transfer.done and now - transfer.active > timeout:
                        transfer.timed_out(now, retries)
                        if transfer.done:
                            poller.unregister(transfer.sock.fileno())
                            running -= 1
        for transfer in transfers:
            if not transfer.done:
                transfer.outcome.error = "benchmark deadline"
    finally:
        poller.close()
        for transfer in transfers:
            transfer.sock.close()
    return [t.outcome for t in transfers]
