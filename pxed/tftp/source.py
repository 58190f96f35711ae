# -*- test-case-name: tests.test_tftp_source -*-
"""
Where TFTP content comes from.

The TFTP server never touches the filesystem itself: it asks an
L{IFileSource} to open a name on behalf of a peer, and reads blocks from the
L{IReadable} it gets back.  This keeps the security-sensitive part (mapping a
client-chosen name to a file) small and separately tested, and lets the rest
of pxed serve generated content (scripts, per-client files) without writing
it to disk.

C{open} returns a Deferred so that a source may do asynchronous work (ask a
database, render a template); the filesystem sources below answer at once,
because opening and reading local files is fast enough to do on the reactor
thread and a thread pool would only add latency to every block.
"""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from zope.interface import Attribute, Interface, implementer

__all__ = [
    "FileNotFound",
    "AccessViolation",
    "name_parts",
    "IReadable",
    "IFileSource",
    "FileReadable",
    "BytesReadable",
    "FilesystemSource",
    "MappingSource",
    "BytesSource",
    "ChainSource",
    "DirectorySource",
    "BlockReader",
    "READ_CHUNK",
    "READ_AHEAD",
]


class FileNotFound(Exception):
    """The name does not exist in this source (TFTP error 1)."""


class AccessViolation(Exception):
    """The name exists or might exist, but must not be served (TFTP error 2)."""


class IReadable(Interface):
    """
    An open file being served.  Reads are positional so that retransmitting
    an old window needs no seek bookkeeping in the session.
    """

    size = Attribute(
        "The size in bytes, or None if unknown.  Used to answer the tsize "
        "option; the end of the transfer is found by a short read, not by size."
    )

    def read(offset: int, length: int) -> bytes:
        """
        Return up to C{length} bytes from C{offset}.  Fewer than C{length}
        bytes means the end of the file was reached.
        """

    def close() -> None:
        """Release the underlying resource.  Safe to call more than once."""


class IFileSource(Interface):
    """Maps a requested name to content."""

    def open(filename: str, peer: tuple[str, int]) -> Deferred:
        """
        Open C{filename} for the client at C{peer}.

        @return: a Deferred firing with an L{IReadable}, or failing with
            L{FileNotFound} or L{AccessViolation} (any other failure is
            reported to the client as an undefined error).
        """


@implementer(IReadable)
class FileReadable:
    """
    An open regular file, read with C{pread} so that the whole file is never
    held in memory and concurrent reads never share a file position.
    """

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd
        self.size: int | None = os.fstat(fd).st_size

    def read(self, offset: int, length: int) -> bytes:
        if self._fd is None:
            raise ValueError("read from a closed file")
        chunks = []
        while length > 0:
            chunk = os.pread(self._fd, length, offset)
            if not chunk:
                break
            chunks.append(chunk)
            offset += len(chunk)
            length -= len(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


@implementer(IReadable)
class BytesReadable:
    """In-memory content."""

    def __init__(self, content: bytes) -> None:
        self._content = content
        self.size: int | None = len(content)

    def read(self, offset: int, length: int) -> bytes:
        return self._content[offset : offset + length]

    def close(self) -> None:
        pass


def _open_regular(path: Path, name: str) -> FileReadable:
    """
    Open C{path} read-only and make sure it is a regular file.

    Opening with O_NONBLOCK and checking with fstat afterwards (rather than
    stat before) means a FIFO or device swapped in at the last moment can
    neither block the reactor nor be served.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except (FileNotFoundError, NotADirectoryError):
        raise FileNotFound(name) from None
    except OSError as e:
        raise AccessViolation(f"{name}: {e.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise AccessViolation(f"{name}: not a regular file")
        return FileReadable(fd)
    except BaseException:
        os.close(fd)
        raise


def name_parts(filename: str) -> list[str]:
    """
    The path components of a requested name, by the rules of
    L{FilesystemSource} (backslashes are slashes, leading slashes and C{.}
    are dropped).

    @raise AccessViolation: for a NUL byte, a C{..} component or no name.
    """
    if "\0" in filename:
        raise AccessViolation("NUL byte in filename")
    parts = [p for p in filename.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise AccessViolation(f"{filename!r}: '..' in filename")
    if not parts:
        raise AccessViolation(f"{filename!r}: empty filename")
    return parts


def _call(f: Callable[[str], IReadable], filename: str) -> Deferred:
    """Run a synchronous opener, turning its exception into a failed Deferred."""
    try:
        return defer.succeed(f(filename))
    except Exception:
        return defer.fail(Failure())


@implementer(IFileSource)
class FilesystemSource:
    """
    Serve the files below C{root}, read-only.

    Name rules, chosen for what PXE clients actually send:
      - backslashes are treated as slashes (Windows-style boot paths);
      - leading slashes are stripped, so C{/pxelinux.0} and C{pxelinux.0}
        are the same file below the root;
      - a C{..} component, a NUL byte, or a name that resolves (through
        symlinks) outside the root is an L{AccessViolation};
      - anything that is not a regular file (directory, device, FIFO) is an
        L{AccessViolation}; a missing file is L{FileNotFound}.
    Symlinks that stay inside the root are followed.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()

    def resolve(self, filename: str) -> Path:
        """
        Map a requested name to a path inside the root.

        @raise AccessViolation: if the name tries to escape the root.
        @raise FileNotFound: if a path component is missing.
        """
        candidate = self.root.joinpath(*name_parts(filename))
        try:
            real = candidate.resolve(strict=True)
        except (FileNotFoundError, NotADirectoryError):
            raise FileNotFound(filename) from None
        except (OSError, RuntimeError) as e:  # symlink loops, permissions
            raise AccessViolation(f"{filename!r}: {e}") from None
        if not real.is_relative_to(self.root):
            raise AccessViolation(f"{filename!r} resolves outside the root")
        return real

    def _open(self, filename: str) -> FileReadable:
        return _open_regular(self.resolve(filename), filename)

    def open(self, filename: str, peer: tuple[str, int]) -> Deferred:
        return _call(self._open, filename)


@implementer(IFileSource)
class MappingSource:
    """
    Serve a fixed set of names, each mapped to a file anywhere on disk (for
    example C{"undionly.kpxe"} to C{/usr/lib/ipxe/undionly.kpxe}).  Names are
    matched exactly; anything else is L{FileNotFound}.
    """

    def __init__(self, files: Mapping[str, Path | str]) -> None:
        self._files = {name: Path(path) for name, path in files.items()}

    def _open(self, filename: str) -> FileReadable:
        path = self._files.get(filename)
        if path is None:
            raise FileNotFound(filename)
        return _open_regular(path, filename)

    def open(self, filename: str, peer: tuple[str, int]) -> Deferred:
        return _call(self._open, filename)


@implementer(IFileSource)
class BytesSource:
    """
    Serve in-memory content by exact name.

    A tool for tests and embedders that generate files (the server itself
    serves only from disk: L{FilesystemSource}, L{MappingSource}).
    """

    def __init__(self, files: Mapping[str, bytes]) -> None:
        self._files = files

    def _open(self, filename: str) -> BytesReadable:
        content = self._files.get(filename)
        if content is None:
            raise FileNotFound(filename)
        return BytesReadable(content)

    def open(self, filename: str, peer: tuple[str, int]) -> Deferred:
        return _call(self._open, filename)


@implementer(IFileSource)
class ChainSource:
    """
    Try several sources in order; the first one that does not report
    L{FileNotFound} answers.  An L{AccessViolation} (or any other failure)
    stops the search: a refusal must not fall through to a more permissive
    source.
    """

    def __init__(self, sources: Iterable[IFileSource]) -> None:
        self._sources = list(sources)

    def open(self, filename: str, peer: tuple[str, int]) -> Deferred:
        remaining = iter(self._sources)

        def tryNext(failure: Failure | None) -> Deferred:
            if failure is not None:
                failure.trap(FileNotFound)
            source = next(remaining, None)
            if source is None:
                return defer.fail(FileNotFound(filename))
            d = defer.maybeDeferred(source.open, filename, peer)
            d.addErrback(tryNext)
            return d

        return tryNext(None)


@implementer(IFileSource)
class DirectorySource:
    """
    Serve whole directories, each under a name of its own: C{PREFIX/NAME}
    is C{NAME} inside the directory mapped to C{PREFIX}, by the rules of
    L{FilesystemSource} (never outside that directory).  A chained boot
    program's directory is served this way, so the files it loads from
    beside itself (shim's C{grubx64.efi}, GRUB's C{grub.cfg} and modules)
    are found under the name it was loaded from.
    """

    def __init__(self, directories: Mapping[str, Path | str]) -> None:
        self._roots = {prefix: FilesystemSource(path) for prefix, path in directories.items()}

    def open(self, filename: str, peer: tuple[str, int]) -> Deferred:
        try:
            parts = name_parts(filename)
        except AccessViolation:
            return defer.fail(Failure())
        root = self._roots.get(parts[0]) if len(parts) > 1 else None
        if root is None:
            return defer.fail(FileNotFound(filename))
        return root.open("/".join(parts[1:]), peer)


# Upper bound on one read from the content: a window is read in one call when
# it is small, block by block when blocks are huge, so a transfer never holds
# more than about this much (or one block) in memory.
READ_CHUNK = 65536
# Read at least this much at once, whatever the window.
READ_AHEAD = 16384
_DATA_HEADER = struct.Struct("!HH").pack


class BlockReader:
    """
    Blocks of an L{IReadable}, read a window (and at least C{read_ahead}
    bytes) at a time.

    One C{read} per window instead of one per block keeps system calls down
    (a lock-step transfer, a window of one block, still reads several
    blocks at once), and the buffer is small and replaced as the transfer
    moves on, so serving a large file never loads it.  A block shorter than
    C{blksize} (possibly empty) is the last one.
    """

    def __init__(
        self, readable: IReadable, blksize: int, windowsize: int, read_ahead: int = READ_AHEAD
    ) -> None:
        self._readable = readable
        self._blksize = blksize
        blocks = min(max(windowsize, read_ahead // blksize), READ_CHUNK // blksize)
        self._chunk = max(1, blocks) * blksize
        self._buf = b""
        self._view = memoryview(self._buf)
        self._first = 1  # block number of the buffer's start
        self._eof = False

    def block(self, n: int) -> bytes:
        """Block C{n} (numbered from 1)."""
        return self.datagram(n)[4:]

    def datagram(self, n: int) -> bytes:
        """
        The DATA packet of block C{n}: the payload with its header, built
        with one copy (the per-packet path of every transfer goes here).
        """
        bs = self._blksize
        start = (n - self._first) * bs
        available = len(self._buf) - start
        if start < 0 or not (available >= bs or (self._eof and available >= 0)):
            self._buf = self._readable.read((n - 1) * bs, self._chunk)
            self._view = memoryview(self._buf)
            self._first = n
            self._eof = len(self._buf) < self._chunk
            start = 0
        return _DATA_HEADER(3, n & 0xFFFF) + self._view[start : start + bs]

    def release(self) -> None:
        self._buf = b""
        self._view = memoryview(self._buf)
