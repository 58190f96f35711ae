# -*- test-case-name: tests.test_tftp_packet -*-
"""
TFTP wire format (RFC 1350, with the option extension of RFC 2347).

This module is a pure codec: it turns datagrams into packet objects and back
and performs no I/O, so that the session logic and the tests can reason about
packets as values.  Everything that can arrive from the network goes through
L{decode}, which raises only L{MalformedPacket}: callers handle a single
exception type and a hostile datagram can never escape as an unexpected
C{IndexError} or C{UnicodeDecodeError} deep inside a Twisted callback.

Normalisation done while decoding (and why):
  - the transfer mode and option names are case-insensitive (RFC 1350,
    RFC 2347), so they are returned lower-cased;
  - when an option name appears twice the first occurrence wins, rather than
    rejecting a request that a lenient server would have served;
  - NUL padding after the last option is tolerated, because some ROMs pad
    their requests;
  - an ACK longer than 4 bytes is accepted and the excess ignored, and an
    ERROR whose message lacks its terminating NUL is accepted: dropping such
    packets would only stall a transfer.
Filenames must be UTF-8 (in practice ASCII); anything else is malformed.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "OP_RRQ",
    "OP_WRQ",
    "OP_DATA",
    "OP_ACK",
    "OP_ERROR",
    "OP_OACK",
    "ERR_UNDEFINED",
    "ERR_FILE_NOT_FOUND",
    "ERR_ACCESS_VIOLATION",
    "ERR_DISK_FULL",
    "ERR_ILLEGAL_OPERATION",
    "ERR_UNKNOWN_TID",
    "ERR_FILE_EXISTS",
    "ERR_NO_SUCH_USER",
    "ERR_OPTION_NEGOTIATION",
    "MalformedPacket",
    "UnknownOpcode",
    "ReadRequest",
    "WriteRequest",
    "Data",
    "Ack",
    "Error",
    "OptionAck",
    "Packet",
    "decode",
    "encode",
]

OP_RRQ = 1
OP_WRQ = 2
OP_DATA = 3
OP_ACK = 4
OP_ERROR = 5
OP_OACK = 6

ERR_UNDEFINED = 0
ERR_FILE_NOT_FOUND = 1
ERR_ACCESS_VIOLATION = 2
ERR_DISK_FULL = 3
ERR_ILLEGAL_OPERATION = 4
ERR_UNKNOWN_TID = 5
ERR_FILE_EXISTS = 6
ERR_NO_SUCH_USER = 7
ERR_OPTION_NEGOTIATION = 8

_HEADER = struct.Struct("!H")
_HEADER_BLOCK = struct.Struct("!HH")


class MalformedPacket(ValueError):
    """
    A datagram is not a valid TFTP packet.

    This is the only exception L{decode} raises, whatever bytes it is given.
    """


class UnknownOpcode(MalformedPacket):
    """
    A datagram is long enough to carry an opcode, but the opcode is not one
    that TFTP defines.  Kept distinct so that a server can answer it with
    ERROR 4 (illegal operation) while staying silent on plain garbage.
    """

    def __init__(self, opcode: int) -> None:
        super().__init__(f"unknown opcode {opcode}")
        self.opcode = opcode


@dataclass(frozen=True)
class ReadRequest:
    """RRQ: the client wants to read C{filename}."""

    filename: str
    mode: str = "octet"
    options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class WriteRequest:
    """WRQ: the client wants to write C{filename}."""

    filename: str
    mode: str = "octet"
    options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Data:
    """DATA: one block of file content; C{block} is the 16-bit wire number."""

    block: int
    payload: bytes


@dataclass(frozen=True)
class Ack:
    """ACK: acknowledges DATA C{block} (0 acknowledges an OACK)."""

    block: int


@dataclass(frozen=True)
class Error:
    """ERROR: ends a transfer; C{code} is one of the C{ERR_*} constants."""

    code: int
    message: str = ""


@dataclass(frozen=True)
class OptionAck:
    """OACK: the options a server accepted (RFC 2347)."""

    options: dict[str, str] = field(default_factory=dict)


Packet = ReadRequest | WriteRequest | Data | Ack | Error | OptionAck


def _split_strings(body: bytes) -> list[bytes]:
    """
    Split a sequence of NUL-terminated strings.

    The last string must be terminated: a request cut short in transit is
    malformed rather than silently truncated.
    """
    if not body.endswith(b"\0"):
        raise MalformedPacket("unterminated string")
    return body[:-1].split(b"\0")


def _ascii(raw: bytes, what: str) -> str:
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise MalformedPacket(f"{what} is not ASCII") from None


def _decode_options(fields: list[bytes]) -> dict[str, str]:
    # Trailing empty strings are NUL padding, not an option.
    while fields and fields[-1] == b"":
        fields = fields[:-1]
    if len(fields) % 2:
        raise MalformedPacket("option without a value")
    options: dict[str, str] = {}
    for i in range(0, len(fields), 2):
        name = _ascii(fields[i], "option name").lower()
        if not name:
            raise MalformedPacket("empty option name")
        options.setdefault(name, _ascii(fields[i + 1], "option value"))
    return options


def _decode_request(opcode: int, body: bytes) -> ReadRequest | WriteRequest:
    fields = _split_strings(body)
    if len(fields) < 2:
        raise MalformedPacket("request without a mode")
    try:
        filename = fields[0].decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedPacket("filename is not UTF-8") from None
    mode = _ascii(fields[1], "mode").lower()
    if not mode:
        raise MalformedPacket("empty mode")
    options = _decode_options(fields[2:])
    if opcode == OP_RRQ:
        return ReadRequest(filename, mode, options)
    return WriteRequest(filename, mode, options)


def decode(datagram: bytes) -> Packet:
    """
    Parse one datagram.

    @raise MalformedPacket: for anything that is not a valid packet (and
        L{UnknownOpcode} for a well-sized datagram with an undefined opcode).
    """
    if len(datagram) < 2:
        raise MalformedPacket("datagram too short")
    (opcode,) = _HEADER.unpack_from(datagram)
    body = datagram[2:]
    if opcode in (OP_RRQ, OP_WRQ):
        return _decode_request(opcode, body)
    if opcode == OP_DATA:
        if len(body) < 2:
            raise MalformedPacket("DATA without a block number")
        (block,) = _HEADER.unpack_from(body)
        return Data(block, bytes(body[2:]))
    if opcode == OP_ACK:
        if len(body) < 2:
            raise MalformedPacket("ACK without a block number")
        (block,) = _HEADER.unpack_from(body)
        return Ack(block)
    if opcode == OP_ERROR:
        if len(body) < 2:
            raise MalformedPacket("ERROR without a code")
        (code,) = _HEADER.unpack_from(body)
        # The message is for humans only: decode it leniently.
        message = body[2:].split(b"\0", 1)[0].decode("utf-8", "replace")
        return Error(code, message)
    if opcode == OP_OACK:
        if not body:
            return OptionAck({})
        return OptionAck(_decode_options(_split_strings(body)))
    raise UnknownOpcode(opcode)


def _cstring(value: str, what: str, encoding: str = "ascii") -> bytes:
    raw = value.encode(encoding)
    if b"\0" in raw:
        raise ValueError(f"{what} contains a NUL byte")
    return raw + b"\0"


def _encode_options(options: Mapping[str, str]) -> bytes:
    parts = []
    for name, value in options.items():
        if not name:
            raise ValueError("empty option name")
        parts.append(_cstring(name, "option name"))
        parts.append(_cstring(value, "option value"))
    return b"".join(parts)


def _check_u16(value: int, what: str) -> None:
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"{what} {value} does not fit in 16 bits")


def encode(packet: Packet) -> bytes:
    """
    Serialise a packet.

    @raise ValueError: if the packet cannot be represented on the wire (a
        NUL inside a string, a block number or code outside 16 bits, a
        non-ASCII mode or option).  These are programming errors, never
        network input.
    """
    if isinstance(packet, ReadRequest | WriteRequest):
        opcode = OP_RRQ if isinstance(packet, ReadRequest) else OP_WRQ
        if not packet.mode:
            raise ValueError("empty mode")
        return (
            _HEADER.pack(opcode)
            + _cstring(packet.filename, "filename", "utf-8")
            + _cstring(packet.mode, "mode")
            + _encode_options(packet.options)
        )
    if isinstance(packet, Data):
        _check_u16(packet.block, "block")
        return _HEADER_BLOCK.pack(OP_DATA, packet.block) + packet.payload
    if isinstance(packet, Ack):
        _check_u16(packet.block, "block")
        return _HEADER_BLOCK.pack(OP_ACK, packet.block)
    if isinstance(packet, Error):
        _check_u16(packet.code, "error code")
        return _HEADER_BLOCK.pack(OP_ERROR, packet.code) + _cstring(
            packet.message, "message", "utf-8"
        )
    if isinstance(packet, OptionAck):
        return _HEADER.pack(OP_OACK) + _encode_options(packet.options)
    raise TypeError(f"not a TFTP packet: {packet!r}")
