"""
Tests for L{pxed.explain} and the C{pxed} command (L{pxed.cli}): the
explanation of real firmware captures, and that what C{explain} says pxed
would send is byte for byte what the protocols do send.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from twisted.trial import unittest

from pxed import cli
from pxed.dhcp.packet import DHCPPacket, MessageType, Option, encode
from tests import pcap

MAC = "52:54:00:77:00:10"
CHADDR = bytes.fromhex("525400770010") + b"\x00" * 10


class ExplainTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).absolute()
        self.dir.mkdir()
        for name in ("vmlinuz", "undionly.kpxe", "snponly.efi"):
            (self.dir / name).write_bytes(name.encode())

    def config(self, *server: str, machines: str = f'"{MAC}"') -> Path:
        """
        A configuration file; C{server} are lines of its server section
        (default: the address of the reference server in the captures).
        """
        lines = ["server:", *(f"  {line}" for line in server or ["address: 192.168.77.1"]),
                 "  ports: {http: 8080}",
                 "bootloaders:",
                 f"  x86-bios: {self.dir / 'undionly.kpxe'}",
                 f"  x64-uefi: {self.dir / 'snponly.efi'}",
                 "boot:",
                 "  machines:",
                 f"    {machines}: {{kernel: {self.dir / 'vmlinuz'}}}"]
        path = self.dir / "pxed.yaml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def pxed(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = cli.main(list(argv), out, err)
        return code, out.getvalue(), err.getvalue()

    def sections(self, text: str) -> dict[int, str]:
        """
        The report split per frame number.
        """
        out = {}
        for block in text.strip().split("\n\n"):
            number = int(block.split(":", 1)[0].split()[1])
            out[number] = block
        return out


class CaptureTests(ExplainTestCase):
    def test_uefi_capture(self) -> None:
        code, out, err = self.pxed("explain", "--config", str(self.config()), "--pcap",
                                  str(pcap.capture(pcap.UEFI_CAPTURE)))
        self.assertEqual((code, err), (0, ""))
        frames = self.sections(out)
        # Every DHCP datagram of the capture is there, and nothing else.
        self.assertEqual(sorted(frames), [1, 2, 3, 4, 5, 6, 7, 18, 19, 20, 21, 22])
        self.assertIn("client: UEFI PXE firmware, architecture 7 (x64 UEFI, x64-uefi)",
                      frames[1])
        self.assertIn(f"policy: boot.machines.{MAC}", frames[1])
        self.assertIn("reply: DHCPOFFER xid 0x14383625", frames[1])
        self.assertIn('file "snponly.efi"', frames[1])
        self.assertIn("broadcast", frames[1])
        self.assertIn("REQUEST message type is not answered on the proxydhcp port", frames[4])
        self.assertIn("reply: DHCPACK xid 0x5d17be46", frames[6])
        self.assertIn("to 192.168.77.145:4011 (unicast to the requester)", frames[6])
        self.assertIn("client: iPXE", frames[18])
        self.assertIn('http://192.168.77.1:8080/_/ipxe?mac=52:54:00:77:00:10&arch=7', frames[18])
        for number in (2, 3, 5, 19, 20, 22):
            self.assertIn("no reply: sent to port 68", frames[number])
        self.assertIn("no reply: a BOOTREPLY", frames[7])

    def test_bios_capture(self) -> None:
        code, out, _ = self.pxed("explain", "--config", str(self.config()), "--pcap",
                                str(pcap.capture(pcap.BIOS_CAPTURE)))
        self.assertEqual(code, 0)
        first = self.sections(out)[1]
        self.assertIn("client: iPXE, architecture 0 (x86 BIOS, x86-bios)", first)
        self.assertIn("option 43 (vendor specific): 06 01 08 ff", first)

    def test_unknown_machine(self) -> None:
        code, out, _ = self.pxed("explain", "--config",
                                str(self.config(machines='"52:54:00:00:00:99"')),
                                "--pcap", str(pcap.capture(pcap.UEFI_CAPTURE)))
        self.assertEqual(code, 0)
        first = self.sections(out)[1]
        self.assertIn("policy: none", first)
        self.assertIn("no reply: the policy has no boot for this machine", first)
        self.assertNotIn("reply: DHCP", out)

    def test_address_of_server_interface(self) -> None:
        """
        With server.interface and no server.address, explain advertises
        that interface's address, as the server does.
        """
        config = str(self.config("interface: lo"))
        _, out, _ = self.pxed("explain", "--config", config, "--pcap",
                             str(pcap.capture(pcap.UEFI_CAPTURE)))
        self.assertIn("siaddr 127.0.0.1", self.sections(out)[1])

    def test_address_from_interface(self) -> None:
        """
        Without server.address, and with no address to be had from
        server.interface, a broadcast's answer depends on the interface
        address, which only --address can say.
        """
        config = str(self.config("interface: pxnone0"))
        _, out, _ = self.pxed("explain", "--config", config, "--pcap",
                             str(pcap.capture(pcap.UEFI_CAPTURE)))
        frames = self.sections(out)
        self.assertIn("no address to advertise", frames[1])
        # The 4011 request was unicast to the server: its address is known.
        self.assertIn("siaddr 192.168.77.1", frames[6])
        _, out, _ = self.pxed("explain", "--config", config, "--address", "10.1.1.1", "--pcap",
                             str(pcap.capture(pcap.UEFI_CAPTURE)))
        self.assertIn("siaddr 10.1.1.1", self.sections(out)[1])

    def test_missing_capture(self) -> None:
        code, out, err = self.pxed("explain", "--config", str(self.config()), "--pcap",
                                  str(self.dir / "none.pcap"))
        self.assertEqual((code, out), (1, ""))
        self.assertIn("none.pcap", err)

    def test_not_a_capture(self) -> None:
        junk = self.dir / "junk.pcap"
        junk.write_bytes(b"\x00" * 64)
        code, _, err = self.pxed("explain", "--config", str(self.config()), "--pcap", str(junk))
        self.assertEqual(code, 1)
        self.assertIn("junk.pcap", err)


class HexTests(ExplainTestCase):
    def discover(self, **fields: Any) -> str:
        options = fields.pop("options", {})
        packet = DHCPPacket(xid=0x1234, chaddr=CHADDR, options={
            Option.MESSAGE_TYPE: bytes((MessageType.DISCOVER,)),
            Option.VENDOR_CLASS: b"PXEClient:Arch:00000:UNDI:002001",
            Option.CLIENT_ARCH: b"\x00\x00", **options}, **fields)
        return encode(packet).hex()

    def test_bios_discover(self) -> None:
        code, out, _ = self.pxed("explain", "--config", str(self.config()), "--hex",
                                self.discover())
        self.assertEqual(code, 0)
        self.assertIn("reply: DHCPOFFER xid 0x00001234", out)
        self.assertIn('file "undionly.kpxe"', out)

    def test_relayed(self) -> None:
        config = self.config('relays: {"10.2.0.0/16": 172.16.5.5}')
        code, out, _ = self.pxed("explain", "--config", str(config), "--source", "10.2.0.1:67",
                                "--hex", self.discover(giaddr="10.2.0.1"))
        self.assertEqual(code, 0)
        self.assertIn("via relay 10.2.0.1", out)
        self.assertIn("to 10.2.0.1:67 (unicast to the relay)", out)
        self.assertIn("siaddr 172.16.5.5", out)

    def test_bootserver_request_to_a_relay_address(self) -> None:
        """
        The port-4011 request a relayed client sends to the address its
        offer named is answered with that address, as the server does.
        """
        config = self.config("address: 192.168.77.1", 'relays: {"10.2.0.0/16": 172.16.5.5}')
        request = bytes.fromhex(self.discover(ciaddr="10.2.0.50", options={
            Option.MESSAGE_TYPE: bytes((MessageType.REQUEST,))}))
        code, out, _ = self.pxed("explain", "--config", str(config), "--port", "4011",
                                "--source", "10.2.0.50:4011", "--address", "172.16.5.5",
                                "--hex", request.hex())
        self.assertEqual(code, 0, out)
        self.assertIn("reply: DHCPACK", out)
        self.assertIn("siaddr 172.16.5.5", out)

    def test_unserved_architecture(self) -> None:
        # (ARM64 is served by default: pxed builds its GRUB; see test_arm64.)
        _, out, _ = self.pxed("explain", "--config", str(self.config()), "--hex", self.discover(
            options={Option.CLIENT_ARCH: b"\x00\x1b"}))
        self.assertIn("architecture 27 (RISC-V 64-bit UEFI, riscv64-uefi)", out)
        self.assertIn("no network bootstrap program for architecture 27", out)
        self.assertIn("bootloaders.riscv64-uefi", out)

    def test_http_boot(self) -> None:
        _, out, _ = self.pxed("explain", "--config", str(self.config()), "--hex", self.discover(
            options={Option.CLIENT_ARCH: b"\x00\x10",
                     Option.VENDOR_CLASS: b"HTTPClient:Arch:00016:UNDI:003000"}))
        self.assertIn("client: UEFI HTTP Boot", out)
        self.assertIn('option 60 (vendor class): "HTTPClient"', out)
        self.assertIn('"http://192.168.77.1:8080/_/boot/snponly.efi"', out)

    def test_interface_restriction(self) -> None:
        config = str(self.config("interfaces: [eth1]", "address: 192.168.77.1"))
        _, out, _ = self.pxed("explain", "--config", config, "--interface", "eth0", "--hex",
                             self.discover())
        self.assertIn("arrived on eth0, and server.interfaces is eth1", out)
        _, out, _ = self.pxed("explain", "--config", config, "--interface", "eth1", "--hex",
                             self.discover())
        self.assertIn("reply: DHCPOFFER", out)

    def test_garbage(self) -> None:
        code, out, _ = self.pxed("explain", "--config", str(self.config()), "--hex", "0102030405")
        self.assertEqual(code, 0)
        self.assertIn("no reply: malformed", out)

    def test_bad_hex(self) -> None:
        code, _, err = self.pxed("explain", "--config", str(self.config()), "--hex", "zz")
        self.assertEqual(code, 1)
        self.assertIn("pxed:", err)


class CheckTests(ExplainTestCase):
    def test_valid(self) -> None:
        path = self.config()
        self.assertEqual(self.pxed("check", "--config", str(path)),
                         (0, f"pxed: {path} is valid\n", ""))

    def test_invalid(self) -> None:
        path = self.dir / "bad.yaml"
        path.write_text("server: {address: 300.1.1.1}\n")
        code, out, err = self.pxed("check", "--config", str(path))
        self.assertEqual((code, out), (1, ""))
        self.assertIn(f"{path}: server.address:", err)

    def test_explain_needs_a_source(self) -> None:
        self.assertRaises(SystemExit, self.pxed, "explain", "--config", str(self.config()))
