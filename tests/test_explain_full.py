"""
Tests for L{pxed.explainfull}: C{pxed explain} with C{dhcp.mode: full}
runs the DHCP server's own protocol over a capture, statefully.
"""

from __future__ import annotations

import socket
from pathlib import Path

from twisted.trial import unittest

from pxed.config import load_config
from pxed.dhcp.packet import DHCPPacket, MessageType, Option, decode, encode
from pxed.explain import Datagram, explain, read_capture, render
from tests import pcap

SERVER = "192.168.77.1"


class FullModeExplainTests(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).absolute()
        self.dir.mkdir()
        for name in ("vmlinuz", "undionly.kpxe", "snponly.efi"):
            (self.dir / name).write_bytes(name.encode())
        path = self.dir / "pxed.yaml"
        path.write_text(
            f"server: {{address: {SERVER}, ports: {{http: 8080}}}}\n"
            f"bootloaders: {{x86-bios: {self.dir / 'undionly.kpxe'}, "
            f"x64-uefi: {self.dir / 'snponly.efi'}}}\n"
            f"boot: {{default: {{kernel: {self.dir / 'vmlinuz'}}}}}\n"
            "dhcp:\n  mode: full\n  range: 192.168.77.100-192.168.77.199\n"
            f"  router: 192.168.77.254\n  lease_file: {self.dir / 'leases.json'}\n")
        self.config = load_config(path)

    def test_ovmf_capture(self) -> None:
        """
        The firmware's DISCOVER gets an offer with an address and its file;
        its REQUEST in the capture names the capture's DHCP server, so pxed
        stays silent and says why.
        """
        datagrams = read_capture(pcap.capture(pcap.UEFI_CAPTURE))
        results = {r.datagram.frame: r for r in explain(datagrams, self.config, SERVER)}
        offer = results[1]
        self.assertEqual(offer.stage, "dhcp")
        assert offer.reply is not None
        self.assertEqual(offer.reply.message_type, MessageType.OFFER)
        self.assertIn(offer.reply.yiaddr, [f"192.168.77.{i}" for i in range(100, 200)])
        self.assertEqual(offer.reply.file, b"snponly.efi")
        self.assertEqual(offer.destination, ("255.255.255.255", 68))
        text = render(offer)
        self.assertIn("option 1 (subnet mask): 255.255.255.0", text)
        self.assertIn("option 3 (router): 192.168.77.254", text)
        self.assertIn("option 51 (lease time): 3600 s", text)
        self.assertIn("note: with dhcp.ping", text)
        request = results[4]
        self.assertIsNone(request.reply)
        self.assertIn("not this one", request.ignored or "")

    def test_exchange_is_stateful(self) -> None:
        chaddr = bytes.fromhex("020000000001") + bytes(10)
        discover = DHCPPacket(xid=1, chaddr=chaddr, flags=0x8000,
                              options={Option.MESSAGE_TYPE: b"\x01"})
        first = list(explain([Datagram(1, ("0.0.0.0", 68), ("255.255.255.255", 67),
                                       encode(discover))], self.config, SERVER))[0]
        assert first.reply is not None
        request = DHCPPacket(xid=1, chaddr=chaddr, flags=0x8000, options={
            Option.MESSAGE_TYPE: b"\x03", Option.SERVER_ID: socket.inet_aton(SERVER),
            Option.REQUESTED_ADDRESS: socket.inet_aton(first.reply.yiaddr)})
        results = list(explain([
            Datagram(1, ("0.0.0.0", 68), ("255.255.255.255", 67), encode(discover)),
            Datagram(2, ("0.0.0.0", 68), ("255.255.255.255", 67), encode(request)),
            Datagram(3, ("0.0.0.0", 68), ("255.255.255.255", 67), b"junk")],
            self.config, SERVER))
        ack = results[1].reply
        assert ack is not None
        self.assertEqual((ack.message_type, ack.yiaddr), (MessageType.ACK, first.reply.yiaddr))
        self.assertEqual(decode(results[1].reply_bytes), ack)
        self.assertIn("malformed", results[2].ignored or "")
