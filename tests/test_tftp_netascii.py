"""
Tests for L{pxed.tftp.netascii}: the conversion both ways, by position and
in pieces, and a netascii read over real UDP.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from pxed.testing.tftp import ServerTestCase
from pxed.tftp import packet as P
from pxed.tftp.netascii import NetasciiDecoder, NetasciiReadable, to_netascii
from pxed.tftp.source import BytesReadable

TEXT = st.binary(max_size=3000) | st.lists(
    st.sampled_from([b"a", b"\r", b"\n", b"\0", b"\r\n"]), max_size=400).map(b"".join)


class ConversionTests(SynchronousTestCase):
    def test_line_ends(self) -> None:
        self.assertEqual(to_netascii(b"a\nb\rc\r\n"), b"a\r\nb\r\0c\r\0\r\n")

    @given(TEXT, st.integers(1, 700))
    def test_decoder_undoes_in_any_pieces(self, text: bytes, piece: int) -> None:
        wire = to_netascii(text)
        decoder = NetasciiDecoder()
        back = b"".join(decoder.feed(wire[i : i + piece]) for i in range(0, len(wire), piece))
        self.assertEqual(back + decoder.flush(), text)

    @given(TEXT, st.integers(1, 64), st.integers(1, 600), st.data())
    def test_positional_reads(self, text: bytes, chunk: int, length: int, data: Any) -> None:
        """Any read, in any order, is the slice of the converted stream."""
        wire = to_netascii(text)
        readable = NetasciiReadable(BytesReadable(text), chunk=chunk)
        self.assertIsNone(readable.size)
        for _ in range(5):
            offset = data.draw(st.integers(0, len(wire) + 10))
            self.assertEqual(readable.read(offset, length), wire[offset : offset + length])

    def test_sequential_reads_to_the_end(self) -> None:
        text = b"line\n" * 5000 + b"tail\r"
        wire = to_netascii(text)
        readable = NetasciiReadable(BytesReadable(text), chunk=1000)
        got = b""
        while True:
            block = readable.read(len(got), 512)
            got += block
            if len(block) < 512:
                break
        self.assertEqual(got, wire)


class NetasciiReadTests(ServerTestCase):
    @defer.inlineCallbacks
    def test_lines_over_several_blocks(self) -> Any:
        text = b"".join(b"line %d\n" % i for i in range(300))
        (self.root / "lines.txt").write_bytes(text)
        raw = self.rawClient()
        raw.send(P.ReadRequest("lines.txt", "netascii", {"tsize": "0", "blksize": "700"}),
                 self.addr)
        pkt, tid = yield raw.next()
        # The converted size is not known before the end: no tsize.
        self.assertEqual(pkt, P.OptionAck({"blksize": "700"}))
        received, block = b"", 0
        while True:
            raw.send(P.Ack(block), tid)
            pkt, _ = yield raw.next()
            assert isinstance(pkt, P.Data)
            block += 1
            self.assertEqual(pkt.block, block)
            received += pkt.payload
            if len(pkt.payload) < 700:
                break
        raw.send(P.Ack(block), tid)
        self.assertEqual(received, text.replace(b"\n", b"\r\n"))
        yield self.waitForEnds(1)
        self.assertEqual(self.ends[0][2].outcome, "complete")
