# -*- test-case-name: tests.test_tftp_netascii -*-
"""
RFC 1350's netascii mode: text sent with network line ends.

On the wire every LF is CR LF and a bare CR is CR NUL (RFC 764's NVT
rules, which RFC 1350 adopts).  A read in netascii mode therefore sends a
longer byte stream than the file on disk, and a write in netascii mode
must be turned back into the host's text before it is stored.

Sessions read their content by position (a window may be sent again), so
L{NetasciiReadable} maps positions in the converted stream onto the file
through checkpoints taken every C{chunk} bytes of the file: a read converts
at most the chunks it touches, memory stays bounded by one chunk, and the
file is never read whole.  The converted size is unknown until the end, so
a netascii read answers no C{tsize}.
"""

from __future__ import annotations

from bisect import bisect_right

from zope.interface import implementer

from .source import IReadable

__all__ = ["NetasciiReadable", "to_netascii", "NetasciiDecoder"]


def to_netascii(data: bytes) -> bytes:
    """Host text to netascii: CR becomes CR NUL, then LF becomes CR LF."""
    return data.replace(b"\r", b"\r\0").replace(b"\n", b"\r\n")


@implementer(IReadable)
class NetasciiReadable:
    """Serve C{inner} (host text) as netascii, by position."""

    #: Unknown until the whole file has been converted: no tsize.
    size: int | None = None

    def __init__(self, inner: IReadable, chunk: int = 64 * 1024) -> None:
        self._inner = inner
        self._chunk = chunk
        # Where chunk k starts in the converted stream; chunk k of the file
        # starts at k * chunk.  One more entry is added as each chunk is
        # first converted, so the list covers what has been read.
        self._starts = [0]
        self._eof_chunk: int | None = None
        self._cached: tuple[int, bytes] | None = None

    def _converted(self, k: int) -> bytes:
        cached = self._cached
        if cached is not None and cached[0] == k:
            return cached[1]
        raw = self._inner.read(k * self._chunk, self._chunk)
        data = to_netascii(raw)
        if k + 1 == len(self._starts):
            if len(raw) < self._chunk:
                self._eof_chunk = k
            else:
                self._starts.append(self._starts[k] + len(data))
        self._cached = (k, data)
        return data

    def read(self, offset: int, length: int) -> bytes:
        starts = self._starts
        # Convert forward until the chunk holding offset is known (reads are
        # nearly sequential, so this is at most one chunk ahead).
        while offset >= starts[-1] and self._eof_chunk is None:
            self._converted(len(starts) - 1)
            if offset < starts[-1]:
                break
        k = bisect_right(starts, offset) - 1
        out: list[bytes] = []
        want = length
        while want > 0:
            data = self._converted(k)
            piece = data[max(0, offset - starts[k]) :][:want]
            out.append(piece)
            want -= len(piece)
            offset += len(piece)
            if self._eof_chunk == k or k + 1 >= len(starts):
                break
            k += 1
        return b"".join(out)

    def close(self) -> None:
        self._cached = None
        self._inner.close()


class NetasciiDecoder:
    """
    Netascii back to host text, fed in arbitrary pieces (a CR may end one
    DATA block and its LF or NUL begin the next).  CR LF becomes LF, CR NUL
    becomes CR; a CR followed by anything else is kept as it is.
    """

    def __init__(self) -> None:
        self._cr = False

    def feed(self, data: bytes) -> bytes:
        if self._cr:
            data = b"\r" + data
            self._cr = False
        if data.endswith(b"\r"):
            data = data[:-1]
            self._cr = True
        return data.replace(b"\r\n", b"\n").replace(b"\r\0", b"\r")

    def flush(self) -> bytes:
        """What is held back at the end: a final lone CR."""
        held, self._cr = self._cr, False
        return b"\r" if held else b""
