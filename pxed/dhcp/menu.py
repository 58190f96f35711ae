# -*- test-case-name: tests.test_dhcp_menu -*-
"""
The native PXE boot menu: option 43 sub-options 6, 8, 9 and 10 in the
proxy offer, and sub-option 71 (the chosen boot item) on port 4011.

Firmware that implements the PXE 2.1 menu (Intel and most BIOS PXE ROMs,
EDK2's PXE) shows the prompt, lets the user pick an item within the
timeout, and then asks the listed boot server for that item.  A "local
boot" item (type 0) is handled by the firmware itself: it returns to the
next boot device without asking anyone, which is why a menu is the
friendly way to let an operator skip a network boot.

Pure: bytes in, bytes out.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

__all__ = ["PXEMenu", "LOCAL_BOOT", "NETWORK_BOOT", "menu_option", "boot_item",
           "boot_item_option"]

#: PXE boot server type 0: "boot from the local disk", done by the client.
LOCAL_BOOT = 0
#: Vendor-unique boot server types are 0x8000..0xFFFE (PXE 2.1, table 2-2).
NETWORK_BOOT = 0x8001

_DISCOVERY_CONTROL = 6
_BOOT_SERVERS = 8
_BOOT_MENU = 9
_MENU_PROMPT = 10
_BOOT_ITEM = 71
_END = 255

#: Discovery control for a menu: bits 0 and 1 turn broadcast and multicast
#: discovery off, bit 2 restricts it to the servers in sub-option 8, and bit
#: 3 (boot the offered file at once) stays clear so the menu is shown.
MENU_DISCOVERY_CONTROL = 0x07

#: Longest label or prompt accepted: one sub-option holds at most 255
#: bytes, and PXE ROMs draw the menu on an 80-column text screen.
MAX_TEXT = 70


@dataclass(frozen=True)
class PXEMenu:
    """
    A two-item menu: boot from pxed, or from the local disk.

    @ivar timeout: seconds before the first item is chosen on its own;
        0 boots at once without showing the menu, 255 waits for the user.
    """

    prompt: str = "Press F8 for the boot menu"
    timeout: int = 5
    network_label: str = "Boot from the network (pxed)"
    local_label: str = "Boot from local disk"

    def items(self) -> list[tuple[int, str]]:
        """
        (type, label) in the order shown; the first is the default.
        """
        return [(NETWORK_BOOT, self.network_label), (LOCAL_BOOT, self.local_label)]


def _sub(code: int, value: bytes) -> bytes:
    if len(value) > 255:
        raise ValueError(f"sub-option {code} is {len(value)} bytes long")
    return bytes((code, len(value))) + value


def _text(value: str) -> bytes:
    return value.encode("ascii", "replace")[:MAX_TEXT]


def menu_option(menu: PXEMenu, server: str) -> bytes:
    """
    The option 43 value of a proxy offer that shows C{menu} and sends the
    chosen network item to C{server} (port 4011).
    """
    address = socket.inet_aton(server)
    servers = NETWORK_BOOT.to_bytes(2, "big") + b"\x01" + address
    entries = b"".join(
        kind.to_bytes(2, "big") + bytes((len(_text(label)),)) + _text(label)
        for kind, label in menu.items()
    )
    prompt = bytes((menu.timeout,)) + _text(menu.prompt)
    return (
        _sub(_DISCOVERY_CONTROL, bytes((MENU_DISCOVERY_CONTROL,)))
        + _sub(_BOOT_SERVERS, servers)
        + _sub(_BOOT_MENU, entries)
        + _sub(_MENU_PROMPT, prompt)
        + bytes((_END,))
    )


def boot_item(option43: bytes | None) -> tuple[int, int] | None:
    """
    The (type, layer) of sub-option 71 in a request's option 43, or
    C{None} when absent or malformed (the request is then an ordinary
    boot-server request).
    """
    if not option43:
        return None
    i, end = 0, len(option43)
    while i < end:
        code = option43[i]
        if code == _END:
            return None
        if code == 0:
            i += 1
            continue
        if i + 1 >= end:
            return None
        length = option43[i + 1]
        value = option43[i + 2:i + 2 + length]
        if len(value) != length:
            return None
        if code == _BOOT_ITEM:
            if length != 4:
                return None
            return int.from_bytes(value[:2], "big"), int.from_bytes(value[2:], "big")
        i += 2 + length
    return None


def boot_item_option(item: tuple[int, int]) -> bytes:
    """
    The option 43 value of the boot server's ACK for boot item C{item}:
    the PXE spec has the server echo the type and layer it is answering.
    """
    kind, layer = item
    return _sub(_BOOT_ITEM, kind.to_bytes(2, "big") + layer.to_bytes(2, "big")) + bytes((_END,))
