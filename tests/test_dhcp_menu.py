"""
Tests for L{pxed.dhcp.menu}: the PXE boot menu's option 43 encoding, and
the menu through the responder, the offer and the boot server's ACK.
"""

from __future__ import annotations

import socket
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.testing import FakeDatagramTransport
from twisted.trial import unittest

from pxed.dhcp.menu import (
    LOCAL_BOOT,
    MENU_DISCOVERY_CONTROL,
    NETWORK_BOOT,
    PXEMenu,
    boot_item,
    boot_item_option,
    menu_option,
)
from pxed.dhcp.packet import DHCPPacket, MessageType, Option, decode, encode
from pxed.dhcp.protocol import BootServerProtocol, ProxyDHCPProtocol
from pxed.dhcp.responder import BootResponder
from pxed.policy import BootSpec, StaticPolicy
from pxed.state import MemoryBootLog
from tests.fixtures import write_bootloaders

MAC = "52:54:00:77:00:10"
CHADDR = bytes.fromhex("525400770010") + b"\x00" * 10
SERVER = "192.168.77.1"


def suboptions(value: bytes) -> dict[int, bytes]:
    """
    An independent reader of option 43's code/length/value run.
    """
    out: dict[int, bytes] = {}
    i = 0
    while i < len(value) and value[i] != 255:
        code, length = value[i], value[i + 1]
        out[code] = value[i + 2:i + 2 + length]
        i += 2 + length
    assert value[i:] == b"\xff", value[i:]
    return out


class MenuOptionTests(unittest.TestCase):
    def test_layout(self) -> None:
        menu = PXEMenu(prompt="Choose", timeout=9, network_label="Net", local_label="Disk")
        subs = suboptions(menu_option(menu, SERVER))
        self.assertEqual(sorted(subs), [6, 8, 9, 10])
        self.assertEqual(subs[6], bytes((MENU_DISCOVERY_CONTROL,)))
        # Discovery control must not say "boot the offered file at once".
        self.assertFalse(subs[6][0] & 0x08)
        # Boot servers: type, count 1, pxed's address.
        self.assertEqual(subs[8], b"\x80\x01\x01" + socket.inet_aton(SERVER))
        # Menu: network item first (the default), then local boot (type 0).
        self.assertEqual(subs[9], b"\x80\x01\x03Net" + b"\x00\x00\x04Disk")
        self.assertEqual(subs[10], b"\x09Choose")

    def test_defaults(self) -> None:
        subs = suboptions(menu_option(PXEMenu(), "10.0.0.1"))
        self.assertIn(b"Boot from local disk", subs[9])
        self.assertEqual(subs[10][0], 5)
        self.assertEqual(subs[8][-4:], socket.inet_aton("10.0.0.1"))

    def test_items(self) -> None:
        self.assertEqual([kind for kind, _ in PXEMenu().items()], [NETWORK_BOOT, LOCAL_BOOT])
        self.assertGreaterEqual(NETWORK_BOOT, 0x8000)

    def test_long_text_truncated(self) -> None:
        subs = suboptions(menu_option(PXEMenu(prompt="p" * 300, network_label="n" * 300),
                                      SERVER))
        self.assertEqual(len(subs[10]), 1 + 70)
        self.assertLessEqual(len(subs[9]), 255)

    def test_boot_item_round_trip(self) -> None:
        for item in ((NETWORK_BOOT, 0), (0x8002, 3), (LOCAL_BOOT, 0)):
            self.assertEqual(boot_item(boot_item_option(item)), item)
        self.assertEqual(boot_item_option((NETWORK_BOOT, 0)), b"\x47\x04\x80\x01\x00\x00\xff")

    def test_boot_item_among_others(self) -> None:
        value = b"\x00\x06\x01\x07\x47\x04\x80\x01\x00\x02\xff"
        self.assertEqual(boot_item(value), (NETWORK_BOOT, 2))

    def test_no_boot_item(self) -> None:
        for value in (None, b"", b"\xff", b"\x06\x01\x08\xff", b"\x47\x03\x80\x01\x00\xff",
                      b"\x47", b"\x47\x04\x80", b"\x06\x01\x08", b"\xff\x47\x04\x80\x01\x00\x00"):
            self.assertIsNone(boot_item(value), value)

    @given(st.binary(max_size=300))
    def test_boot_item_never_raises(self, value: bytes) -> None:
        item = boot_item(value)
        if item is not None:
            self.assertTrue(0 <= item[0] <= 0xFFFF and 0 <= item[1] <= 0xFFFF)


class MenuProtocolTests(unittest.TestCase):
    """
    With a menu configured, PXE firmware gets it in the offer, and the
    chosen item's request on port 4011 gets an ACK naming that item.
    """

    def setUp(self) -> None:
        base = Path(self.mktemp()).absolute()
        base.mkdir()
        kernel = base / "vmlinuz"
        kernel.write_bytes(b"k")
        loaders = write_bootloaders(base)
        policy = StaticPolicy({MAC: BootSpec(kernel=str(kernel))})
        self.menu = PXEMenu(prompt="Pick", timeout=3)
        responder = BootResponder(policy, loaders, 80, MemoryBootLog(), menu=self.menu)
        self.proxy = ProxyDHCPProtocol(responder, SERVER)
        self.proxy_out = FakeDatagramTransport()
        self.proxy.makeConnection(self.proxy_out)
        self.boot = BootServerProtocol(responder, SERVER)
        self.boot_out = FakeDatagramTransport()
        self.boot.makeConnection(self.boot_out)

    def request(self, kind: int, arch: int = 0, **options: bytes) -> bytes:
        opts = {Option.MESSAGE_TYPE: bytes((kind,)),
                Option.VENDOR_CLASS: b"PXEClient:Arch:%05d:UNDI:002001" % arch,
                Option.CLIENT_ARCH: arch.to_bytes(2, "big")}
        opts.update({int(k[1:]): v for k, v in options.items()})
        return encode(DHCPPacket(xid=42, chaddr=CHADDR, ciaddr="0.0.0.0", options=opts))

    def test_offer_carries_menu(self) -> None:
        for arch in (0, 7):
            self.proxy.datagramReceived(self.request(MessageType.DISCOVER, arch), ("0.0.0.0", 68))
        for data, _ in self.proxy_out.written:
            reply = decode(data)
            self.assertEqual(reply.options[Option.VENDOR_SPECIFIC],
                             menu_option(self.menu, SERVER))
        self.assertEqual(len(self.proxy_out.written), 2)

    def test_ipxe_gets_no_menu(self) -> None:
        self.proxy.datagramReceived(self.request(MessageType.DISCOVER, 0, o77=b"iPXE"),
                                    ("0.0.0.0", 68))
        reply = decode(self.proxy_out.written[0][0])
        self.assertEqual(reply.options[Option.VENDOR_SPECIFIC], b"\x06\x01\x08\xff")
        self.assertTrue(reply.file.startswith(b"http://"))

    def test_chosen_item_acked(self) -> None:
        chosen = boot_item_option((NETWORK_BOOT, 0))
        self.boot.datagramReceived(self.request(MessageType.REQUEST, 0, o43=chosen),
                                   ("192.168.77.150", 4011))
        [(data, dest)] = self.boot_out.written
        reply = decode(data)
        self.assertEqual(dest, ("192.168.77.150", 4011))
        self.assertEqual(reply.message_type, MessageType.ACK)
        self.assertEqual(reply.options[Option.VENDOR_SPECIFIC], chosen)
        self.assertEqual(reply.file, b"undionly.kpxe")

    def test_local_item_not_answered(self) -> None:
        self.boot.datagramReceived(
            self.request(MessageType.REQUEST, 0, o43=boot_item_option((LOCAL_BOOT, 0))),
            ("192.168.77.150", 4011))
        self.assertEqual(self.boot_out.written, [])

    def test_items_pxed_never_offered_not_answered(self) -> None:
        """
        A choice from another boot server's menu (a vendor type pxed did not
        offer, or a standard one such as type 1, Windows NT's boot server)
        is that server's to answer.
        """
        for kind in (1, 0x8002, 0xFFFE):
            self.boot.datagramReceived(
                self.request(MessageType.REQUEST, 0, o43=boot_item_option((kind, 0))),
                ("192.168.77.150", 4011))
        self.assertEqual(self.boot_out.written, [])
