# -*- test-case-name: tests.test_tftp_session -*-
"""
TFTP option negotiation (RFC 2347 framework, RFC 2348 blksize, RFC 2349
timeout and tsize, RFC 7440 windowsize), as a pure function of the request,
the content size and the server's limits; and the plain values around a
transfer (what the server allows, what was agreed, how it ended), kept here
so that they can be used without the session machinery.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "SessionLimits",
    "Negotiated",
    "TransferResult",
    "negotiate",
    "refusal",
    "int_option",
    "MIN_BLKSIZE",
    "MAX_BLKSIZE",
    "DEFAULT_BLKSIZE",
    "MAX_WINDOWSIZE",
]

MIN_BLKSIZE = 8
MAX_BLKSIZE = 65464
DEFAULT_BLKSIZE = 512
MAX_WINDOWSIZE = 65535


@dataclass(frozen=True)
class SessionLimits:
    """What the server is willing to agree to, and how patient it is."""

    max_blksize: int = 1468
    max_windowsize: int = 16
    # Retransmission timeout ceiling, in seconds; the timeout actually used
    # follows the measured round trip (far shorter on a LAN), unless the
    # client negotiated one (RFC 2349).
    timeout: float = 1.0
    # Retransmissions at the full timeout before the server falls silent.
    retries: int = 5
    # Seconds without progress after which a transfer is given up (at least
    # (retries + 1) * timeout).  After its retransmissions the server waits
    # silently this long, because some clients (atftp, lock-step ROMs) only
    # repeat a lost ACK on their own timer, every few seconds.
    patience: float = 30.0
    # Largest client-requested timeout accepted: it bounds how long an
    # abandoned transfer holds its port.
    max_timeout: int = 30


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
    OACK) packets sent more than once.  For an upload (C{upload}),
    C{bytes_sent} counts the bytes received and kept, and C{retransmits}
    the ACKs sent again.
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
    #: A write request (into the upload root), not a download.
    upload: bool = False


def _int_option(options: Mapping[str, str], name: str) -> int | None:
    value = options.get(name)
    if value is None:
        return None
    value = value.strip()
    if not value.isdigit() or len(value) > 12:
        return None
    return int(value)


def int_option(options: Mapping[str, str], name: str) -> int | None:
    """The whole-number value of option C{name} (any case), if it has one."""
    for key, value in options.items():
        if key.lower() == name:
            return _int_option({name: value}, name)
    return None


def refusal(options: Mapping[str, str]) -> str | None:
    """
    Why the request's options cannot be met (RFC 2347 ERROR 8), or C{None}.

    Only one request cannot be met by lowering or leaving out an option: a
    block size under RFC 2348's minimum of 8.  Such a client cannot take the
    default 512-byte blocks either, so answering without the option would
    only fail later.  Everything else that is out of range is left out of
    the OACK (see L{negotiate}).
    """
    requested = int_option(options, "blksize")
    if requested is not None and requested < MIN_BLKSIZE:
        return f"blksize {requested} is below {MIN_BLKSIZE}"
    return None


def negotiate(options: Mapping[str, str], size: int | None, limits: SessionLimits) -> Negotiated:
    """
    Decide which requested options to accept (RFC 2347/2348/2349/7440).

    Invalid values are ignored rather than refused with ERROR 8: the client
    then falls back to plain RFC 1350, which is better than no boot (the
    one request that cannot be met that way is L{refusal}'s).  Values
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
    if requested is not None and 1 <= requested <= min(255, limits.max_timeout):
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
