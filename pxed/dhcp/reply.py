# -*- test-case-name: tests.test_dhcp_reply -*-
"""
Build ProxyDHCP offers and boot-server ACKs.

Pure functions from a request and a decision to a reply packet; the wire
facts they encode (yiaddr 0, option 60 C{PXEClient}, option 97 echoed,
siaddr always set) are what real firmware checks before it will follow a
proxy server.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from pxed.dhcp.menu import PXEMenu, boot_item, boot_item_option, menu_option
from pxed.dhcp.packet import BROADCAST_FLAG, DHCPPacket, MessageType, Option

__all__ = ["BootAnswer", "proxy_offer", "boot_ack", "DISCOVERY_CONTROL_BOOT_FILE"]

#: Option 43, sub-option 6 (PXE_DISCOVERY_CONTROL) = 8: "skip discovery,
#: boot the file named in this offer", then END.  BIOS PXE ROMs want it.
DISCOVERY_CONTROL_BOOT_FILE = b"\x06\x01\x08\xff"


@dataclass(frozen=True, slots=True)
class BootAnswer:
    """
    What pxed tells one client.

    @ivar server: the address advertised as server identifier and siaddr.
    @ivar bootfile: a TFTP file name, or an C{http://} URL for iPXE.
    @ivar discovery_control: add option 43 telling a BIOS ROM to boot the
        file at once; left out for UEFI, which then asks on port 4011.
    @ivar vendor_class: option 60 of the reply: C{PXEClient}, or
        C{HTTPClient} for UEFI HTTP Boot clients.
    @ivar menu: show this PXE boot menu instead (option 43 sub-options 6,
        8, 9 and 10); the chosen item then comes to port 4011.
    @ivar kind: what the boot file is (C{bootloader}, C{ipxe-script},
        C{http-boot}, C{chain}), for logs only.
    """

    server: str
    bootfile: str
    discovery_control: bool = False
    vendor_class: bytes = b"PXEClient"
    menu: PXEMenu | None = None
    kind: str = field(default="", compare=False)


def _reply(request: DHCPPacket, answer: BootAnswer, message_type: int) -> DHCPPacket:
    bootfile = answer.bootfile.encode("utf-8")
    options: dict[int, bytes] = {
        Option.MESSAGE_TYPE: bytes((message_type,)),
        Option.SERVER_ID: socket.inet_aton(answer.server),
        Option.VENDOR_CLASS: answer.vendor_class,
    }
    uuid = request.options.get(Option.CLIENT_UUID)
    if uuid is not None:
        options[Option.CLIENT_UUID] = uuid
    item = boot_item(request.options.get(Option.VENDOR_SPECIFIC))
    if message_type == MessageType.ACK and item is not None:
        # The answer to a menu choice names the item it answers.
        options[Option.VENDOR_SPECIFIC] = boot_item_option(item)
    elif answer.menu is not None:
        options[Option.VENDOR_SPECIFIC] = menu_option(answer.menu, answer.server)
    elif answer.discovery_control:
        options[Option.VENDOR_SPECIFIC] = DISCOVERY_CONTROL_BOOT_FILE
    # The file field is what most ROMs read; option 67 carries names too
    # long for it (URLs) and is what some UEFI stacks prefer.
    options[Option.BOOTFILE_NAME] = bootfile
    return request.reply(
        ciaddr=request.ciaddr,
        yiaddr="0.0.0.0",
        siaddr=answer.server,
        file=bootfile if len(bootfile) <= 127 else b"",
        options=options,
    )


def proxy_offer(request: DHCPPacket, answer: BootAnswer) -> DHCPPacket:
    """
    The ProxyDHCP OFFER for a DISCOVER on port 67: no address (yiaddr 0 is
    what makes it a proxy offer), broadcast so the client without an
    address can hear it.
    """
    reply = _reply(request, answer, MessageType.OFFER)
    reply.flags |= BROADCAST_FLAG
    return reply


def boot_ack(request: DHCPPacket, answer: BootAnswer) -> DHCPPacket:
    """
    The boot server's ACK for a DHCPREQUEST on port 4011, sent back by
    unicast to the requester (which has its address by then).
    """
    return _reply(request, answer, MessageType.ACK)
