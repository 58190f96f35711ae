"""
Tests for L{pxed.tftp.packet}.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from pxed.tftp import packet as P

# Characters allowed in names and values (no NUL).
_text = st.text(
    alphabet=st.characters(blacklist_characters="\0", max_codepoint=0x7F), min_size=1, max_size=20
)
_lower = _text.map(str.lower)
_options = st.dictionaries(
    _lower,
    st.text(
        alphabet=st.characters(blacklist_characters="\0", max_codepoint=0x7F), max_size=20
    ).filter(lambda v: v != ""),
    max_size=5,
)
_filename = st.text(
    alphabet=st.characters(blacklist_characters="\0", blacklist_categories=["Cs"]),
    min_size=1,
    max_size=40,
)
_u16 = st.integers(min_value=0, max_value=0xFFFF)

packets = st.one_of(
    st.builds(P.ReadRequest, _filename, _lower, _options),
    st.builds(P.WriteRequest, _filename, _lower, _options),
    st.builds(P.Data, _u16, st.binary(max_size=600)),
    st.builds(P.Ack, _u16),
    st.builds(
        P.Error,
        _u16,
        st.text(
            alphabet=st.characters(blacklist_characters="\0", blacklist_categories=["Cs"]),
            max_size=40,
        ),
    ),
    st.builds(P.OptionAck, _options),
)


class EncodeTests(SynchronousTestCase):
    """Exact wire bytes for each packet type."""

    def test_rrq(self) -> None:
        self.assertEqual(
            P.encode(P.ReadRequest("pxelinux.0", "octet", {"blksize": "1468", "tsize": "0"})),
            b"\x00\x01pxelinux.0\x00octet\x00blksize\x001468\x00tsize\x000\x00",
        )

    def test_wrq(self) -> None:
        self.assertEqual(P.encode(P.WriteRequest("f", "octet")), b"\x00\x02f\x00octet\x00")

    def test_data(self) -> None:
        self.assertEqual(P.encode(P.Data(258, b"abc")), b"\x00\x03\x01\x02abc")

    def test_emptyData(self) -> None:
        self.assertEqual(P.encode(P.Data(7, b"")), b"\x00\x03\x00\x07")

    def test_ack(self) -> None:
        self.assertEqual(P.encode(P.Ack(65535)), b"\x00\x04\xff\xff")

    def test_error(self) -> None:
        self.assertEqual(
            P.encode(P.Error(P.ERR_FILE_NOT_FOUND, "File not found")),
            b"\x00\x05\x00\x01File not found\x00",
        )

    def test_oack(self) -> None:
        self.assertEqual(
            P.encode(P.OptionAck({"blksize": "1468", "tsize": "850528"})),
            b"\x00\x06blksize\x001468\x00tsize\x00850528\x00",
        )

    def test_errorCodes(self) -> None:
        self.assertEqual(
            (
                P.ERR_UNDEFINED,
                P.ERR_FILE_NOT_FOUND,
                P.ERR_ACCESS_VIOLATION,
                P.ERR_ILLEGAL_OPERATION,
                P.ERR_UNKNOWN_TID,
                P.ERR_OPTION_NEGOTIATION,
            ),
            (0, 1, 2, 4, 5, 8),
        )

    def test_unencodable(self) -> None:
        """Values that cannot go on the wire are programming errors: ValueError."""
        for bad in [
            P.Data(65536, b""),
            P.Ack(-1),
            P.Error(70000, "x"),
            P.ReadRequest("a\0b", "octet"),
            P.ReadRequest("a", ""),
            P.ReadRequest("a", "octet", {"": "1"}),
            P.OptionAck({"blksize": "1\x00"}),
        ]:
            self.assertRaises(ValueError, P.encode, bad)


class DecodeTests(SynchronousTestCase):
    """Decoding, normalisation and tolerance."""

    def test_edk2Request(self) -> None:
        """The RRQ OVMF sends for its tsize probe (from the capture)."""
        pkt = P.decode(
            b"\x00\x01ipxe.efi\x00octet\x00tsize\x000\x00blksize\x001468\x00windowsize\x004\x00"
        )
        self.assertEqual(
            pkt,
            P.ReadRequest(
                "ipxe.efi", "octet", {"tsize": "0", "blksize": "1468", "windowsize": "4"}
            ),
        )

    def test_caseInsensitive(self) -> None:
        """Mode and option names are case-insensitive and come back lower-cased."""
        pkt = P.decode(b"\x00\x01F\x00OCTET\x00BlkSize\x00512\x00")
        self.assertEqual(pkt, P.ReadRequest("F", "octet", {"blksize": "512"}))

    def test_duplicateOptionFirstWins(self) -> None:
        pkt = P.decode(b"\x00\x01f\x00octet\x00blksize\x00512\x00BLKSIZE\x001024\x00")
        self.assertEqual(pkt, P.ReadRequest("f", "octet", {"blksize": "512"}))

    def test_nulPadding(self) -> None:
        """NUL padding after the options is ignored."""
        pkt = P.decode(b"\x00\x01f\x00octet\x00tsize\x000\x00\x00\x00\x00")
        self.assertEqual(pkt, P.ReadRequest("f", "octet", {"tsize": "0"}))

    def test_utf8Filename(self) -> None:
        self.assertEqual(
            P.decode(b"\x00\x01caf\xc3\xa9\x00octet\x00"), P.ReadRequest("caf\xe9", "octet", {})
        )

    def test_longAck(self) -> None:
        """Bytes after an ACK's block number are ignored."""
        self.assertEqual(P.decode(b"\x00\x04\x00\x05\x00\x00"), P.Ack(5))

    def test_errorWithoutTerminator(self) -> None:
        self.assertEqual(P.decode(b"\x00\x05\x00\x08abort"), P.Error(8, "abort"))

    def test_errorBadUtf8(self) -> None:
        """An ERROR message is for humans: undecodable bytes are replaced."""
        self.assertEqual(P.decode(b"\x00\x05\x00\x00\xff\x00"), P.Error(0, "\ufffd"))

    def test_emptyOack(self) -> None:
        self.assertEqual(P.decode(b"\x00\x06"), P.OptionAck({}))

    def test_malformed(self) -> None:
        for datagram in [
            b"",
            b"\x00",
            b"\x00\x01",  # RRQ with nothing
            b"\x00\x01file",  # unterminated filename
            b"\x00\x01file\x00",  # no mode
            b"\x00\x01file\x00octet",  # unterminated mode
            b"\x00\x01file\x00\x00",  # empty mode
            b"\x00\x01file\x00octet\x00blksize\x00",  # option without a value
            b"\x00\x01file\x00octet\x00\x00512\x00",  # empty option name
            b"\x00\x01\xff\xfe\x00octet\x00",  # filename not UTF-8
            b"\x00\x01f\x00oct\xe9t\x00",  # mode not ASCII
            b"\x00\x01f\x00octet\x00bl\xffk\x00512\x00",  # option not ASCII
            b"\x00\x03\x00",  # DATA without a block
            b"\x00\x04\x01",  # ACK without a block
            b"\x00\x05\x00",  # ERROR without a code
            b"\x00\x06blksize\x00512",  # unterminated OACK
        ]:
            self.assertRaises(P.MalformedPacket, P.decode, datagram)

    def test_unknownOpcode(self) -> None:
        for opcode in (0, 7, 255, 65535):
            e = self.assertRaises(
                P.UnknownOpcode, P.decode, bytes([opcode >> 8, opcode & 255]) + b"x"
            )
            self.assertEqual(e.opcode, opcode)
            self.assertIsInstance(e, P.MalformedPacket)
            self.assertIsInstance(e, ValueError)


class PropertyTests(SynchronousTestCase):
    """Properties over arbitrary input."""

    @given(st.binary(max_size=600))
    def test_arbitraryBytes(self, datagram: bytes) -> None:
        """Any datagram either decodes or raises MalformedPacket, nothing else."""
        try:
            P.decode(datagram)
        except P.MalformedPacket:
            pass

    @given(st.binary(max_size=100))
    def test_arbitraryRequestBody(self, body: bytes) -> None:
        """Request-shaped junk: the most complex path in the decoder."""
        for opcode in (b"\x00\x01", b"\x00\x02", b"\x00\x06"):
            try:
                P.decode(opcode + body)
            except P.MalformedPacket:
                pass

    @given(packets)
    def test_roundTrip(self, pkt: P.Packet) -> None:
        self.assertEqual(P.decode(P.encode(pkt)), pkt)

    @given(st.binary(max_size=100))
    def test_reencodeStable(self, datagram: bytes) -> None:
        """Whatever decodes re-encodes to something that decodes the same."""
        try:
            pkt = P.decode(datagram)
        except P.MalformedPacket:
            return
        self.assertEqual(P.decode(P.encode(pkt)), pkt)
