"""
Tests for L{pxed.tftp.source}.
"""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from pxed.tftp.source import (
    READ_AHEAD,
    READ_CHUNK,
    AccessViolation,
    BlockReader,
    BytesReadable,
    BytesSource,
    ChainSource,
    FileNotFound,
    FileReadable,
    FilesystemSource,
    IFileSource,
    IReadable,
    MappingSource,
)

PEER = ("127.0.0.1", 1234)


@contextmanager
def _unprivileged() -> Iterator[None]:
    """
    Run the body as an ordinary user: as root, with the effective user and
    group of nobody (put back afterwards, whatever happens); otherwise as
    the current user.
    """
    if os.geteuid() != 0:
        yield
        return
    nobody = pwd.getpwnam("nobody")
    gid = os.getegid()
    os.setegid(nobody.pw_gid)
    try:
        os.seteuid(nobody.pw_uid)
        try:
            yield
        finally:
            os.seteuid(0)
    finally:
        os.setegid(gid)


class _SourceMixin:
    """Helpers to get the result or failure of a synchronous open."""

    def openOK(self, source: Any, name: str) -> Any:
        readable = self.successResultOf(source.open(name, PEER))  # type: ignore[attr-defined]
        self.addCleanup(readable.close)  # type: ignore[attr-defined]
        return readable

    def openFails(self, source: Any, name: str, exc: type[Exception]) -> None:
        self.failureResultOf(source.open(name, PEER), exc)  # type: ignore[attr-defined]


class FilesystemSourceTests(_SourceMixin, SynchronousTestCase):
    def setUp(self) -> None:
        base = Path(self.mktemp()).absolute()
        self.root = base / "root"
        (self.root / "sub").mkdir(parents=True)
        (self.root / "pxelinux.0").write_bytes(b"boot" * 1000)
        (self.root / "sub" / "file.txt").write_bytes(b"hello")
        (base / "secret").write_bytes(b"secret")
        self.source = FilesystemSource(self.root)

    def test_interfaces(self) -> None:
        verifyObject(IFileSource, self.source)
        verifyObject(IReadable, self.openOK(self.source, "pxelinux.0"))

    def test_read(self) -> None:
        r = self.openOK(self.source, "pxelinux.0")
        self.assertEqual(r.size, 4000)
        self.assertEqual(r.read(0, 4), b"boot")
        self.assertEqual(r.read(3998, 100), b"ot")
        self.assertEqual(r.read(4000, 100), b"")
        self.assertEqual(r.read(9999, 100), b"")

    def test_subdirectory(self) -> None:
        self.assertEqual(self.openOK(self.source, "sub/file.txt").read(0, 100), b"hello")

    def test_backslashes(self) -> None:
        """Windows-style names map onto directories."""
        self.assertEqual(self.openOK(self.source, "\\sub\\file.txt").read(0, 100), b"hello")

    def test_leadingSlash(self) -> None:
        """An absolute name is relative to the root."""
        self.assertEqual(self.openOK(self.source, "/sub/file.txt").read(0, 5), b"hello")
        self.assertEqual(self.openOK(self.source, "//sub//./file.txt").read(0, 5), b"hello")

    def test_notFound(self) -> None:
        self.openFails(self.source, "missing", FileNotFound)
        self.openFails(self.source, "sub/missing", FileNotFound)
        self.openFails(self.source, "pxelinux.0/x", FileNotFound)

    def test_dotDot(self) -> None:
        for name in ["../secret", "sub/../../secret", "sub/../pxelinux.0", "..", "..\\secret"]:
            self.openFails(self.source, name, AccessViolation)

    def test_absoluteOutside(self) -> None:
        """An absolute path to a real file outside is looked up inside the root."""
        self.openFails(self.source, "/etc/passwd", FileNotFound)
        self.openFails(self.source, str(self.root.parent / "secret"), FileNotFound)

    def test_nul(self) -> None:
        self.openFails(self.source, "pxelinux.0\0.txt", AccessViolation)

    def test_symlinkOutside(self) -> None:
        os.symlink(self.root.parent / "secret", self.root / "link")
        os.symlink(self.root.parent, self.root / "dirlink")
        self.openFails(self.source, "link", AccessViolation)
        self.openFails(self.source, "dirlink/secret", AccessViolation)

    def test_symlinkInside(self) -> None:
        os.symlink("sub/file.txt", self.root / "alias")
        self.assertEqual(self.openOK(self.source, "alias").read(0, 5), b"hello")

    def test_symlinkLoop(self) -> None:
        os.symlink("loop", self.root / "loop")
        self.openFails(self.source, "loop", AccessViolation)

    def test_directory(self) -> None:
        self.openFails(self.source, "sub", AccessViolation)
        self.openFails(self.source, "", AccessViolation)
        self.openFails(self.source, "/", AccessViolation)

    def test_fifo(self) -> None:
        """A FIFO is refused without blocking."""
        os.mkfifo(self.root / "fifo")
        self.openFails(self.source, "fifo", AccessViolation)

    def test_unreadable(self) -> None:
        """
        A file the server's user may not read is an access violation.  Root
        reads anything, so under root the opens run as nobody.
        """
        # Trial's temporary directories are private to root: this root is
        # one nobody can reach.
        root = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, root)
        root.chmod(0o755)
        (root / "public").write_bytes(b"x")
        (root / "private").write_bytes(b"x")
        (root / "private").chmod(0)
        source = FilesystemSource(root)
        with _unprivileged():
            # The root is reachable as that user: the refusal is the file's.
            self.openOK(source, "public")
            failure = self.failureResultOf(source.open("private", PEER), AccessViolation)
        self.assertIn("Permission denied", failure.getErrorMessage())

    def test_closeTwice(self) -> None:
        r = self.openOK(self.source, "pxelinux.0")
        r.close()
        r.close()
        self.assertRaises(ValueError, r.read, 0, 1)


class MappingSourceTests(_SourceMixin, SynchronousTestCase):
    def setUp(self) -> None:
        base = Path(self.mktemp()).absolute()
        base.mkdir()
        (base / "undionly.kpxe").write_bytes(b"ipxe")
        self.source = MappingSource(
            {"undionly.kpxe": base / "undionly.kpxe", "gone.efi": base / "missing"}
        )

    def test_mapped(self) -> None:
        verifyObject(IFileSource, self.source)
        r = self.openOK(self.source, "undionly.kpxe")
        self.assertIsInstance(r, FileReadable)
        self.assertEqual(r.read(0, 100), b"ipxe")

    def test_exactNames(self) -> None:
        self.openFails(self.source, "/undionly.kpxe", FileNotFound)
        self.openFails(self.source, "UNDIONLY.KPXE", FileNotFound)
        self.openFails(self.source, "other", FileNotFound)

    def test_mappedButMissing(self) -> None:
        self.openFails(self.source, "gone.efi", FileNotFound)


class BytesSourceTests(_SourceMixin, SynchronousTestCase):
    def test_bytes(self) -> None:
        source = BytesSource({"boot.ipxe": b"#!ipxe\n"})
        verifyObject(IFileSource, source)
        r = self.openOK(source, "boot.ipxe")
        verifyObject(IReadable, r)
        self.assertIsInstance(r, BytesReadable)
        self.assertEqual(r.size, 7)
        self.assertEqual(r.read(2, 3), b"ipx")
        self.openFails(source, "other", FileNotFound)


class ChainSourceTests(_SourceMixin, SynchronousTestCase):
    def test_firstFound(self) -> None:
        chain = ChainSource([BytesSource({"a": b"1"}), BytesSource({"a": b"2", "b": b"3"})])
        verifyObject(IFileSource, chain)
        self.assertEqual(self.openOK(chain, "a").read(0, 1), b"1")
        self.assertEqual(self.openOK(chain, "b").read(0, 1), b"3")
        self.openFails(chain, "c", FileNotFound)

    def test_empty(self) -> None:
        self.openFails(ChainSource([]), "a", FileNotFound)

    def test_accessViolationStops(self) -> None:
        """A refusal does not fall through to the next source."""
        root = Path(self.mktemp())
        root.mkdir()
        chain = ChainSource([FilesystemSource(root), BytesSource({"../x": b"1"})])
        self.openFails(chain, "../x", AccessViolation)

    def test_asynchronous(self) -> None:
        """Sources may answer later."""
        pending: defer.Deferred[Any] = defer.Deferred()

        class Later:
            def open(self, filename: str, peer: tuple[str, int]) -> defer.Deferred[Any]:
                return pending

        d = ChainSource([Later(), BytesSource({"a": b"1"})]).open("a", PEER)  # type: ignore[list-item]
        self.assertNoResult(d)
        pending.errback(FileNotFound("a"))
        self.assertEqual(self.successResultOf(d).read(0, 1), b"1")


class CountingReadable(BytesReadable):
    def __init__(self, content: bytes) -> None:
        super().__init__(content)
        self.reads: list[tuple[int, int]] = []

    def read(self, offset: int, length: int) -> bytes:
        self.reads.append((offset, length))
        return super().read(offset, length)


class BlockReaderTests(SynchronousTestCase):
    def test_blocks(self) -> None:
        content = bytes(range(256)) * 4  # 1024 bytes
        r = CountingReadable(content)
        reader = BlockReader(r, 100, 4, read_ahead=0)
        got = [reader.block(n) for n in range(1, 12)]
        self.assertEqual(b"".join(got), content)
        self.assertEqual([len(b) for b in got], [100] * 10 + [24])
        self.assertEqual(r.reads, [(0, 400), (400, 400), (800, 400)])

    def test_readAhead(self) -> None:
        """A window smaller than the read-ahead still reads the read-ahead."""
        content = bytes(range(256)) * 4
        r = CountingReadable(content)
        reader = BlockReader(r, 100, 1, read_ahead=550)
        self.assertEqual(b"".join(reader.block(n) for n in range(1, 12)), content)
        self.assertEqual(r.reads, [(0, 500), (500, 500), (1000, 500)])
        self.assertEqual(BlockReader(r, 100, 1)._chunk, READ_AHEAD // 100 * 100)

    def test_datagrams(self) -> None:
        """DATA packets come ready to send, block numbers wrapped to 16 bits."""
        reader = BlockReader(BytesReadable(b"ab" * 5), 4, 2)
        self.assertEqual(reader.datagram(1), b"\x00\x03\x00\x01abab")
        self.assertEqual(reader.datagram(3), b"\x00\x03\x00\x03ab")
        big = BlockReader(BytesReadable(b"z" * 8 * 65537), 8, 1)
        self.assertEqual(big.datagram(65536), b"\x00\x03\x00\x00" + b"z" * 8)
        self.assertEqual(big.datagram(65537), b"\x00\x03\x00\x01" + b"z" * 8)

    def test_exactMultiple(self) -> None:
        reader = BlockReader(BytesReadable(b"a" * 800), 100, 4)
        self.assertEqual([len(reader.block(n)) for n in range(1, 10)], [100] * 8 + [0])

    def test_goBack(self) -> None:
        """Retransmitting an earlier window re-reads it."""
        content = bytes(range(200)) * 5
        r = CountingReadable(content)
        reader = BlockReader(r, 10, 4, read_ahead=0)
        for n in range(1, 9):
            reader.block(n)
        self.assertEqual(reader.block(3), content[20:30])
        self.assertEqual(r.reads[-1], (20, 40))

    def test_bufferBounded(self) -> None:
        """Huge blocks are read one at a time, small ones up to READ_CHUNK."""
        r = CountingReadable(b"z" * 200_000)
        BlockReader(r, 65464, 16).block(1)
        BlockReader(r, 1468, 65535).block(1)
        self.assertEqual([length for _, length in r.reads], [65464, (READ_CHUNK // 1468) * 1468])
