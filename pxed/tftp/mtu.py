# -*- test-case-name: tests.test_tftp_mtu -*-
"""
The largest TFTP block that fits in one frame of an interface.

A block size larger than the path MTU makes every DATA packet an IP
fragment train.  Many PXE ROMs cannot reassemble fragments, and a lost
fragment loses the whole block, so the server lowers a requested blksize
to what fits the MTU of the interface the request arrived on (RFC 2348
lets the server answer with a smaller value than asked).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable

from twisted.internet.interfaces import IReactorTime

from .options import MAX_BLKSIZE, MIN_BLKSIZE

__all__ = ["HEADERS", "MTUCache", "blksize_for_mtu", "interface_mtu"]

#: IPv4 (without options), UDP and TFTP DATA headers.
HEADERS = 20 + 8 + 4
SIOCGIFMTU = 0x8921
_IFREQ = struct.Struct("16si20x")  # struct ifreq: the name, then ifr_mtu


def interface_mtu(ifindex: int) -> int | None:
    """The MTU of interface number C{ifindex}, or C{None} if it is gone."""
    import fcntl

    try:
        name = socket.if_indextoname(ifindex)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            answer = fcntl.ioctl(s.fileno(), SIOCGIFMTU, _IFREQ.pack(name.encode(), 0))
    except OSError:
        return None
    mtu: int = _IFREQ.unpack(answer)[1]
    return mtu if mtu > 0 else None


def blksize_for_mtu(mtu: int) -> int:
    """The largest blksize whose DATA packet fits in one C{mtu}-byte packet."""
    return max(MIN_BLKSIZE, min(MAX_BLKSIZE, mtu - HEADERS))


class MTUCache:
    """
    L{interface_mtu} for each datagram's interface, remembered for C{ttl}
    seconds: a request costs no system call, yet a changed MTU is noticed.
    """

    def __init__(self, clock: IReactorTime, ttl: float = 60.0,
                 lookup: Callable[[int], int | None] = interface_mtu) -> None:
        self.clock = clock
        self.ttl = ttl
        self.lookup = lookup
        self._known: dict[int, tuple[float, int | None]] = {}

    def max_blksize(self, ifindex: int) -> int | None:
        """The largest blksize for interface C{ifindex}, or C{None} if unknown."""
        if ifindex <= 0:
            return None
        now = self.clock.seconds()
        known = self._known.get(ifindex)
        if known is None or now - known[0] >= self.ttl:
            if len(self._known) > 4096:
                self._known.clear()
            known = (now, self.lookup(ifindex))
            self._known[ifindex] = known
        mtu = known[1]
        return None if mtu is None else blksize_for_mtu(mtu)
