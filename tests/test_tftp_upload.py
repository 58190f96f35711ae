"""
Tests for L{pxed.tftp.upload}: the upload root's name rules, the receiving
session under a fake clock (windows, gaps, duplicates, timeouts, limits,
netascii), write requests over real UDP, and uploads from the real
clients (curl, tftp-hpa, atftp).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from pxed.testing.tftp import ServerTestCase
from pxed.tftp import packet as P
from pxed.tftp.options import SessionLimits, TransferResult
from pxed.tftp.source import AccessViolation, FileNotFound, FilesystemSource
from pxed.tftp.upload import DALLY, FileExists, TooLarge, UploadRefused, UploadRoot, WriteSession
from tests.fixtures import settle
from tests.interop import LOCAL, InteropMixin


class UploadRootTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.base = Path(self.mktemp()).absolute()
        self.root = self.base / "up"
        (self.root / "logs").mkdir(parents=True)
        (self.base / "outside").mkdir()
        self.uploads = UploadRoot(self.root, max_size=10)

    def test_create_then_commit(self) -> None:
        upload = self.uploads.create("logs/a.txt")
        upload.write(b"hello")
        self.assertFalse((self.root / "logs" / "a.txt").exists())  # not before the end
        upload.commit()
        self.assertEqual((self.root / "logs" / "a.txt").read_bytes(), b"hello")
        self.assertEqual(os.listdir(self.root / "logs"), ["a.txt"])

    def test_discard_leaves_nothing(self) -> None:
        upload = self.uploads.create("/logs/b")
        upload.write(b"x")
        upload.discard()
        self.assertEqual(os.listdir(self.root / "logs"), [])

    def test_limit(self) -> None:
        upload = self.uploads.create("c")
        upload.write(b"0123456789")
        self.assertRaises(TooLarge, upload.write, b"!")
        upload.discard()

    def test_names_refused(self) -> None:
        (self.root / "out").symlink_to(self.base / "outside")
        (self.root / "link").symlink_to(self.base / "outside" / "f")
        for name in ("../x", "logs/../../x", "a\0b", "", "/", "out/x", "link", "logs"):
            self.assertRaises(AccessViolation, self.uploads.create, name)
        self.assertRaises(FileNotFound, self.uploads.create, "nodir/x")
        self.assertEqual(os.listdir(self.base / "outside"), [])

    def test_no_overwrite(self) -> None:
        (self.root / "there").write_bytes(b"old")
        self.assertRaises(FileExists, self.uploads.create, "there")
        # Created meanwhile by someone else: still not replaced.
        upload = self.uploads.create("late")
        (self.root / "late").write_bytes(b"theirs")
        upload.write(b"mine")
        self.assertRaises(FileExists, upload.commit)
        self.assertEqual((self.root / "late").read_bytes(), b"theirs")
        self.assertEqual(sorted(os.listdir(self.root)), ["late", "logs", "there"])

    def test_overwrite(self) -> None:
        (self.root / "there").write_bytes(b"old")
        upload = UploadRoot(self.root, overwrite=True).create("there")
        upload.write(b"new")
        upload.commit()
        self.assertEqual((self.root / "there").read_bytes(), b"new")

    def test_open_maps_refusals(self) -> None:
        (self.root / "there").write_bytes(b"old")
        cases = [(P.WriteRequest("x", options={"tsize": "11"}), P.ERR_DISK_FULL),
                 (P.WriteRequest("nodir/x"), P.ERR_FILE_NOT_FOUND),
                 (P.WriteRequest("there"), P.ERR_FILE_EXISTS),
                 (P.WriteRequest("../x"), P.ERR_ACCESS_VIOLATION)]
        for request, code in cases:
            with self.assertRaises(UploadRefused) as caught:
                self.uploads.open(request)
            self.assertEqual(caught.exception.code, code)


class QuotaTests(SynchronousTestCase):
    """
    All uploads together stay within a quota (files already in the upload
    root count), and what a crash left half-written is removed at start.
    """

    def setUp(self) -> None:
        self.root = Path(self.mktemp()).absolute()
        self.root.mkdir()

    def test_quota(self) -> None:
        (self.root / "old").write_bytes(b"x" * 40)
        uploads = UploadRoot(self.root, quota=100)
        first = uploads.create("a")
        first.write(b"y" * 50)
        second = uploads.create("b")
        self.assertRaises(TooLarge, second.write, b"z" * 11)  # 40 + 50 + 11 > 100
        second.write(b"z" * 10)
        second.discard()  # its bytes come back
        first.commit()
        third = uploads.create("c")
        third.write(b"w" * 10)
        third.commit()
        with self.assertRaises(UploadRefused) as caught:
            uploads.open(P.WriteRequest("d"))  # nothing left
        self.assertEqual(caught.exception.code, P.ERR_DISK_FULL)
        self.assertIn("quota", caught.exception.reason)
        # A restart counts what is there.
        self.assertEqual(UploadRoot(self.root, quota=100).quota.used, 100)  # type: ignore

    def test_announced_size_over_quota(self) -> None:
        uploads = UploadRoot(self.root, quota=100)
        with self.assertRaises(UploadRefused) as caught:
            uploads.open(P.WriteRequest("d", options={"tsize": "101"}))
        self.assertEqual(caught.exception.code, P.ERR_DISK_FULL)

    def test_overwrite_gives_back_the_old_size(self) -> None:
        (self.root / "f").write_bytes(b"x" * 60)
        uploads = UploadRoot(self.root, quota=100, overwrite=True)
        upload = uploads.create("f")
        upload.write(b"y" * 30)
        upload.commit()
        self.assertEqual(uploads.quota.used, 30)  # type: ignore[union-attr]

    def test_crash_leftovers_removed_at_start(self) -> None:
        (self.root / "sub").mkdir()
        dead = 4_000_000  # above pid_max: no such process
        leftovers = [self.root / ".a.bin.deadbeef.part",  # an older pxed's name
                     self.root / "sub" / f".b.bin.{dead}.0123abcd.part",
                     self.root / f".c.bin.{os.getpid()}.0123abcd.part"]  # ours, from before
        alive = self.root / ".d.bin.1.0123abcd.part"  # PID 1 lives: another pxed's
        for path in [*leftovers, alive]:
            path.write_bytes(b"half")
        (self.root / "kept.part").write_bytes(b"an upload named so")
        UploadRoot(self.root)
        for path in leftovers:
            self.assertFalse(path.exists(), path)
        self.assertTrue(alive.exists())
        self.assertTrue((self.root / "kept.part").exists())


class SessionTests(SynchronousTestCase):
    """The receiving state machine, with a fake clock and a list for a network."""

    def setUp(self) -> None:
        self.root = Path(self.mktemp()).absolute()
        self.root.mkdir()
        self.clock = Clock()
        self.sent: list[P.Packet] = []
        self.results: list[TransferResult] = []

    def session(self, options: dict[str, str] | None = None, mode: str = "octet",
                max_size: int = 1 << 20, **limits: Any) -> WriteSession:
        upload = UploadRoot(self.root, max_size=max_size).create("f")
        s = WriteSession(P.WriteRequest("f", mode, options or {}), upload,
                         lambda d: self.sent.append(P.decode(d)), self.clock,
                         SessionLimits(**limits))
        s.done.addCallback(self.results.append)
        s.start()
        return s

    def data(self, s: WriteSession, block: int, payload: bytes) -> None:
        s.datagramReceived(P.encode(P.Data(block & 0xFFFF, payload)))

    def stored(self) -> bytes:
        return (self.root / "f").read_bytes()

    def test_lock_step(self) -> None:
        s = self.session()
        self.assertEqual(self.sent, [P.Ack(0)])
        self.data(s, 1, b"a" * 512)
        self.data(s, 2, b"bc")
        self.assertEqual(self.sent, [P.Ack(0), P.Ack(1), P.Ack(2)])
        self.assertEqual(self.stored(), b"a" * 512 + b"bc")
        # The final ACK is repeated if the client sends its last block again.
        self.data(s, 2, b"bc")
        self.assertEqual(self.sent[-1], P.Ack(2))
        self.clock.advance(5.9)
        self.assertEqual(self.results, [])  # still there for a resent last block
        self.clock.advance(0.1)
        self.assertEqual([(r.outcome, r.bytes_sent, r.blocks) for r in self.results],
                         [("complete", 514, 2)])

    def test_dally_is_bounded(self) -> None:
        """A client resending its last block for ever does not hold the slot for ever."""
        s = self.session()
        self.data(s, 1, b"end")
        for _ in range(5):
            self.clock.advance(DALLY - 1)
            self.data(s, 1, b"end")
        self.assertEqual([r.outcome for r in self.results], ["complete"])
        self.assertEqual(self.stored(), b"end")
        self.assertFalse(self.clock.getDelayedCalls())

    def test_options_and_windows(self) -> None:
        s = self.session({"blksize": "100", "windowsize": "4", "tsize": "950"})
        self.assertEqual(self.sent, [P.OptionAck({"blksize": "100", "tsize": "950",
                                                  "windowsize": "4"})])
        content = os.urandom(950)
        for n in range(1, 11):
            self.data(s, n, content[(n - 1) * 100 : n * 100])
        # One ACK per window of four, and one for the short last block.
        self.assertEqual(self.sent[1:], [P.Ack(4), P.Ack(8), P.Ack(10)])
        self.clock.advance(DALLY)
        self.assertEqual(self.stored(), content)

    def test_gap_is_acked_once(self) -> None:
        s = self.session({"blksize": "10", "windowsize": "4"})
        self.data(s, 1, b"1" * 10)
        for n in (3, 4, 5):  # 2 was lost: say so once, not per block
            self.data(s, n, b"x" * 10)
        self.assertEqual(self.sent[1:], [P.Ack(1)])
        for n in (2, 3, 4, 5):  # the sender resumes after block 1
            self.data(s, n, str(n).encode() * 10)
        self.data(s, 6, b"")
        self.assertEqual(self.sent[1:], [P.Ack(1), P.Ack(5), P.Ack(6)])
        self.clock.advance(DALLY)
        self.assertEqual(self.stored(), b"".join(str(n).encode() * 10 for n in range(1, 6)))

    def test_first_block_lost(self) -> None:
        """
        The OACK is repeated only while no DATA has come back; a gap before
        block 1 is ACK 0, which a windowed sender resumes from (atftp takes
        a repeated OACK for an ACK of its whole window, and loses block 1).
        """
        s = self.session({"blksize": "10", "windowsize": "4"})
        self.clock.advance(1.0)  # nothing came back: the OACK may be lost
        self.assertEqual(self.sent, [P.OptionAck({"blksize": "10", "windowsize": "4"})] * 2)
        for n in (2, 3, 4):
            self.data(s, n, b"x" * 10)
        self.assertEqual(self.sent[2:], [P.Ack(0)])
        self.clock.advance(2.0)  # the second timeout backs off to 2 s
        self.assertEqual(self.sent[3:], [P.Ack(0)])  # the timer, too, says ACK 0 now
        for n in (1, 2, 3, 4):
            self.data(s, n, str(n).encode() * 10)
        self.data(s, 5, b"")
        self.assertEqual(self.sent[4:], [P.Ack(4), P.Ack(5)])

    def test_rollover(self) -> None:
        s = self.session({"blksize": "8"})
        for n in range(1, 65540):
            self.data(s, n, n.to_bytes(8, "big"))
        self.data(s, 65540, b"end")
        self.assertEqual(self.sent[-1], P.Ack(65540 & 0xFFFF))
        self.clock.advance(DALLY)
        self.assertEqual(self.results[0].blocks, 65540)
        self.assertEqual(len(self.stored()), 65539 * 8 + 3)

    def test_timeout_repeats_then_gives_up(self) -> None:
        s = self.session(timeout=1.0, retries=2, patience=5.0)
        self.data(s, 1, b"a" * 512)
        self.clock.advance(1.0)
        self.assertEqual(self.sent[-1], P.Ack(1))  # repeated: the client may resume
        self.assertEqual(self.sent.count(P.Ack(1)), 2)
        self.clock.pump([1.0] * 10)
        self.assertEqual(self.sent[-1], P.Error(P.ERR_UNDEFINED, "Timeout"))
        self.assertEqual(self.results[0].outcome, "timeout")
        self.assertEqual(os.listdir(self.root), [])  # nothing half-written is left
        self.assertFalse(self.clock.getDelayedCalls())

    def test_never_answered(self) -> None:
        """
        A write request whose client then sends nothing (perhaps a spoofed
        one) gets its answer twice, never an ERROR, and ends when a real
        client would have sent again on its own timer (6 s after the second
        copy, as a read waits: pxed.tftp.deadline.quiet_end), its temporary
        file gone.
        """
        for options, answer in (({}, P.Ack(0)), ({"blksize": "1024"},
                                                 P.OptionAck({"blksize": "1024"}))):
            del self.sent[:], self.results[:]
            self.session(options, timeout=1.0, retries=5, patience=30.0)
            self.clock.pump([0.5] * 20)
            self.assertEqual(self.sent, [answer, answer])
            self.assertEqual(self.results[0].error, "client never answered")
            self.assertEqual(self.results[0].duration, 7.0)
            self.assertEqual(os.listdir(self.root), [])
            self.assertFalse(self.clock.getDelayedCalls())

    def test_first_data_on_the_clients_timer(self) -> None:
        """
        A client whose first block was lost sends it again on its own 5 s
        timer (tftp-hpa), restarted by the second copy of the answer: that
        block, 6.5 s after the request, still starts the upload.
        """
        s = self.session(timeout=1.0, retries=5, patience=30.0)
        self.clock.pump([0.5] * 13)
        self.assertEqual(self.results, [])
        self.data(s, 1, b"end")
        self.assertEqual(self.sent[-1], P.Ack(1))
        self.clock.advance(DALLY)
        self.assertEqual(self.results[0].outcome, "complete")

    def test_too_large(self) -> None:
        s = self.session(max_size=600)
        self.data(s, 1, b"a" * 512)
        self.data(s, 2, b"a" * 512)
        self.assertEqual(self.sent[-1],
                         P.Error(P.ERR_DISK_FULL, "Disk full or allocation exceeded"))
        self.assertEqual(self.results[0].outcome, "error")
        self.assertEqual(os.listdir(self.root), [])

    def test_client_error_and_oversized_block(self) -> None:
        s = self.session()
        s.datagramReceived(P.encode(P.Error(0, "bye")))
        self.assertEqual(self.results[0].outcome, "aborted")
        s = self.session()
        self.data(s, 1, b"a" * 513)
        self.assertEqual(self.sent[-1].code, P.ERR_ILLEGAL_OPERATION)  # type: ignore[union-attr]
        self.assertEqual(os.listdir(self.root), [])

    def test_netascii(self) -> None:
        s = self.session({"blksize": "8"}, mode="netascii")
        wire = b"one\r\ntwo\r\0\r\nend\r\n"
        blocks = [wire[i : i + 8] for i in range(0, len(wire), 8)]
        for n, block in enumerate(blocks, 1):
            self.data(s, n, block)
        if len(blocks[-1]) == 8:
            self.data(s, len(blocks) + 1, b"")
        self.clock.advance(DALLY)
        self.assertEqual(self.stored(), b"one\ntwo\r\nend\n")

    def test_garbage_ignored(self) -> None:
        s = self.session()
        for junk in (b"", b"\x00", b"\x00\x03", b"\xff" * 20, P.encode(P.Ack(3))):
            s.datagramReceived(junk)
        self.assertEqual(self.sent, [P.Ack(0)])
        self.data(s, 1, b"ok")
        self.clock.advance(DALLY)
        self.assertEqual(self.stored(), b"ok")


class WriteRequestTests(ServerTestCase):
    """Write requests over UDP on 127.0.0.1."""

    def setUp(self) -> None:
        super().setUp()
        self.upload_root = self.root.parent / "uploads"
        self.upload_root.mkdir()
        self.writer = self.makeServer(FilesystemSource(self.root),
                                      upload=UploadRoot(self.upload_root, max_size=5000))
        port = reactor.listenUDP(0, self.writer, interface=LOCAL)  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)
        self.writerAddr = (LOCAL, port.getHost().port)

    @defer.inlineCallbacks
    def test_refused_without_upload_root(self) -> Any:
        raw = self.rawClient()
        raw.send(P.WriteRequest("x"), self.addr)
        pkt, _ = yield raw.next()
        self.assertEqual(pkt.code, P.ERR_ACCESS_VIOLATION)  # type: ignore[union-attr]

    @defer.inlineCallbacks
    def test_upload(self) -> Any:
        raw = self.rawClient()
        content = os.urandom(2000)
        raw.send(P.WriteRequest("got.bin", options={"blksize": "1000", "tsize": "2000"}),
                 self.writerAddr)
        pkt, tid = yield raw.next()
        self.assertEqual(pkt, P.OptionAck({"blksize": "1000", "tsize": "2000"}))
        self.assertNotEqual(tid, self.writerAddr)  # a fresh transfer ID
        for n, chunk in enumerate((content[:1000], content[1000:], b""), 1):
            raw.send(P.Data(n, chunk), tid)
            pkt, _ = yield raw.next()
            self.assertEqual(pkt, P.Ack(n))
        self.assertEqual((self.upload_root / "got.bin").read_bytes(), content)
        # Observers hear of the upload's end (after its dally), and of no
        # start: that hook is for downloads, the steps of a boot.
        yield self.waitForEnds(1)
        self.assertEqual([(e[1], e[2].upload, e[2].bytes_sent) for e in self.ends],
                         [("got.bin", True, 2000)])
        self.assertEqual(self.starts, [])

    @defer.inlineCallbacks
    def test_refusals(self) -> Any:
        (self.upload_root / "there").write_bytes(b"x")
        raw = self.rawClient()
        for request, code in [
            (P.WriteRequest("there"), P.ERR_FILE_EXISTS),
            (P.WriteRequest("big", options={"tsize": "5001"}), P.ERR_DISK_FULL),
            (P.WriteRequest("../escape"), P.ERR_ACCESS_VIOLATION),
            (P.WriteRequest("no/dir"), P.ERR_FILE_NOT_FOUND),
            (P.WriteRequest("tiny", options={"blksize": "4"}), P.ERR_OPTION_NEGOTIATION),
            (P.WriteRequest("mail", "mail"), P.ERR_ILLEGAL_OPERATION),
            (P.ReadRequest("small.txt", options={"blksize": "7"}), P.ERR_OPTION_NEGOTIATION),
        ]:
            raw.send(request, self.writerAddr)
            pkt, _ = yield raw.next()
            self.assertEqual(pkt.code, code, request)  # type: ignore[union-attr]
        self.assertEqual(os.listdir(self.upload_root), ["there"])


class RealClientUploadTests(InteropMixin, TestCase):
    """Uploads from the clients Debian ships, into an upload root."""

    tools = ("curl", "tftp", "atftp")

    def setUp(self) -> None:
        super().setUp()
        self.uploads = self.root.parent / "uploads"
        self.uploads.mkdir()
        self.server.upload = UploadRoot(self.uploads)

    def landed(self, name: str, source: str) -> None:
        self.assertEqual((self.uploads / name).read_bytes(), self.files[source])

    @defer.inlineCallbacks
    def test_curl(self) -> Any:
        for name, blksize in (("odd.bin", "1468"), ("exact512.bin", "512")):
            out, err, code = yield self.runClient(
                "curl", "-s", "-S", "-T", str(self.root / name), "--tftp-blksize", blksize,
                f"tftp://{LOCAL}:{self.portNumber}/c-{name}")
            self.assertEqual(code, 0, err)
            self.landed(f"c-{name}", name)
        yield settle(self.ends, 2)
        self.assertEqual({r.outcome for r in self.ends}, {"complete"})

    @defer.inlineCallbacks
    def test_tftp_hpa(self) -> Any:
        for name in ("odd.bin", "empty", "exact1468.bin"):
            out, err, code = yield self.runClient(
                "tftp", LOCAL, str(self.portNumber), "-m", "binary", "-c", "put",
                str(self.root / name), f"h-{name}")
            self.assertEqual((code, out + err), (0, b""))
            self.landed(f"h-{name}", name)
        # The same name again is refused, and the first upload stays.
        out, err, code = yield self.runClient(
            "tftp", LOCAL, str(self.portNumber), "-m", "binary", "-c", "put",
            str(self.root / "one.txt"), "h-odd.bin")
        self.assertIn(b"File already exists", out + err)
        self.landed("h-odd.bin", "odd.bin")

    @defer.inlineCallbacks
    def test_atftp_windowsize(self) -> Any:
        out, err, code = yield self.runClient(
            "atftp", "--option", "windowsize 8", "--option", "blksize 1428", "-p",
            "-l", str(self.root / "odd.bin"), "-r", "a-odd.bin", LOCAL, str(self.portNumber))
        self.assertEqual(code, 0, out + err)
        self.landed("a-odd.bin", "odd.bin")
        yield settle(self.ends, 1)
        self.assertEqual({(r.outcome, r.windowsize, r.blksize) for r in self.ends},
                         {("complete", 8, 1428)})

    @defer.inlineCallbacks
    def test_netascii_put(self) -> Any:
        text = b"first line\nsecond\r line\n"
        (self.root / "text").write_bytes(text)
        out, err, code = yield self.runClient(
            "tftp", LOCAL, str(self.portNumber), "-m", "ascii", "-c", "put",
            str(self.root / "text"), "t.txt")
        self.assertEqual(code, 0, out + err)
        self.assertEqual((self.uploads / "t.txt").read_bytes(), text)
