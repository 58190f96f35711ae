# -*- test-case-name: tests.test_peers -*-
"""
Which machine (MAC) is behind a client address.

Boot timelines are kept by MAC, but TFTP and HTTP only see an IP address.
pxed learns the pairs where a request carries both: a DHCPREQUEST on port
4011 comes from the client's own address, and iPXE names its MAC in the
script URL.  For anything else (a BIOS PXE ROM fetching its program by
TFTP right after the LAN's DHCP server gave it an address), the kernel's
neighbour table knows the MAC of a client on the same link; a client
behind a router has no entry there, so it is never mistaken for the
router.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from twisted.logger import Logger

__all__ = ["PeerMap", "read_neighbours"]

log = Logger()

_INCOMPLETE = 0x0
_NO_MAC = "00:00:00:00:00:00"


def read_neighbours(path: str = "/proc/net/arp") -> dict[str, str]:
    """
    The kernel's IPv4 neighbour table (of this network namespace): address
    to MAC, complete entries only.  Empty where there is no such file.
    """
    table: dict[str, str] = {}
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            next(f, None)  # the header
            for line in f:
                columns = line.split()
                if len(columns) < 4:
                    continue
                address, _hwtype, flags, mac = columns[:4]
                try:
                    complete = int(flags, 16) != _INCOMPLETE
                except ValueError:
                    continue
                if complete and mac != _NO_MAC:
                    table[address] = mac.lower()
    except OSError:
        return {}
    return table


class PeerMap:
    """
    Client addresses to MACs: learned pairs, most recent first, bounded,
    and the neighbour table for addresses never learned.

    @param neighbours: reads the neighbour table (tests pass their own).
    """

    def __init__(
        self,
        max_entries: int = 8192,
        neighbours: Callable[[], dict[str, str]] = read_neighbours,
    ) -> None:
        self.max_entries = max_entries
        self.neighbours = neighbours
        self._macs: OrderedDict[str, str] = OrderedDict()

    def learn(self, address: str | None, mac: str) -> None:
        """
        C{mac} was seen asking from C{address}: addresses move between
        machines (DHCP leases), so the latest pair wins.
        """
        if not address or not mac or address == "0.0.0.0":
            return
        macs = self._macs
        if macs.get(address) == mac:
            macs.move_to_end(address)
            return
        macs[address] = mac
        macs.move_to_end(address)
        while len(macs) > self.max_entries:
            macs.popitem(last=False)

    def mac(self, address: str) -> str | None:
        """
        The MAC behind C{address}, or C{None} if pxed cannot tell.
        """
        found = self._macs.get(address)
        if found is not None:
            return found
        # Not cached: the table follows leases moving between machines,
        # which a cached answer would not.
        found = self.neighbours().get(address)
        if found is not None:
            log.debug("{peer} is {mac} (neighbour table)", peer=address, mac=found)
        return found
