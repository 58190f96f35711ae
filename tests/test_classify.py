"""
Tests for L{pxed.dhcp.classify} and L{pxed.machine}: who is asking.
"""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial import unittest

from pxed.dhcp.classify import NotNetworkBooting, classify
from pxed.dhcp.packet import DHCPPacket, MessageType, Option, decode
from pxed.machine import (
    ARCHITECTURE_SLUGS,
    ARCHITECTURES,
    Architecture,
    Firmware,
    Machine,
    architecture,
)
from tests import pcap

MAC = "52:54:00:77:00:10"
CHADDR = bytes.fromhex("525400770010") + b"\x00" * 10
NULL_UUID = "00000000-0000-0000-0000-000000000000"


def discover(vendor: bytes | None = b"PXEClient:Arch:00000:UNDI:002001",
             arch: bytes | None = b"\x00\x00", **extra: bytes) -> DHCPPacket:
    """
    A DHCPDISCOVER with the given vendor class (60) and arch (93), plus
    options given as C{o<code>=value}.
    """
    options = {Option.MESSAGE_TYPE: bytes((MessageType.DISCOVER,))}
    if vendor is not None:
        options[Option.VENDOR_CLASS] = vendor
    if arch is not None:
        options[Option.CLIENT_ARCH] = arch
    for name, value in extra.items():
        options[int(name[1:])] = value
    return DHCPPacket(chaddr=CHADDR, options=options)


class RealFirmwareTests(unittest.TestCase):
    """
    The captured firmware classifies as what it is.
    """

    def test_ovmf_pxe(self) -> None:
        machine = classify(decode(pcap.payload(pcap.UEFI_CAPTURE, 1)))
        self.assertEqual(machine.mac, MAC)
        self.assertEqual(machine.arch.code, 7)
        self.assertEqual(machine.arch.slug, "x64-uefi")
        self.assertIs(machine.firmware, Firmware.UEFI)
        self.assertEqual(machine.uuid, NULL_UUID)
        self.assertFalse(machine.ipxe)
        self.assertFalse(machine.http_boot)
        self.assertIsNone(machine.user_class)

    def test_ovmf_boot_server_request(self) -> None:
        machine = classify(decode(pcap.payload(pcap.UEFI_CAPTURE, 6)))
        self.assertEqual((machine.mac, machine.arch.slug, machine.ipxe),
                         (MAC, "x64-uefi", False))

    def test_ipxe_on_uefi(self) -> None:
        machine = classify(decode(pcap.payload(pcap.UEFI_CAPTURE, 18)))
        self.assertEqual(machine.arch.slug, "x64-uefi")
        self.assertTrue(machine.ipxe)
        self.assertEqual(machine.user_class, "iPXE")

    def test_ipxe_rom_on_bios(self) -> None:
        machine = classify(decode(pcap.payload(pcap.BIOS_CAPTURE, 1)))
        self.assertEqual(machine.arch.code, 0)
        self.assertEqual(machine.arch.slug, "x86-bios")
        self.assertIs(machine.firmware, Firmware.BIOS)
        self.assertTrue(machine.ipxe)
        self.assertEqual(machine.uuid, NULL_UUID)

    def test_plain_dhcp_server_reply_is_not_a_client(self) -> None:
        """
        The LAN's DHCP server's offer has no PXE vendor class.
        """
        self.assertRaises(NotNetworkBooting, classify,
                          decode(pcap.payload(pcap.UEFI_CAPTURE, 3)))


class ClassifyTests(unittest.TestCase):
    def test_bios(self) -> None:
        machine = classify(discover())
        self.assertEqual(machine.arch, ARCHITECTURES[0])
        self.assertIs(machine.firmware, Firmware.BIOS)
        self.assertFalse(machine.ipxe)
        self.assertFalse(machine.http_boot)

    def test_uefi_x64_code_7_and_9(self) -> None:
        for code in (7, 9):
            machine = classify(discover(b"PXEClient:Arch:%05d:UNDI:003000" % code,
                                        code.to_bytes(2, "big")))
            self.assertEqual(machine.arch.code, code)
            self.assertEqual(machine.arch.slug, "x64-uefi")
            self.assertIs(machine.firmware, Firmware.UEFI)

    def test_option_93_wins_over_vendor_class(self) -> None:
        machine = classify(discover(b"PXEClient:Arch:00000:UNDI:002001", b"\x00\x0b"))
        self.assertEqual(machine.arch.slug, "arm64-uefi")

    def test_first_of_several_architectures(self) -> None:
        machine = classify(discover(arch=b"\x00\x07\x00\x00"))
        self.assertEqual(machine.arch.code, 7)

    def test_ipxe_user_class(self) -> None:
        machine = classify(discover(o77=b"iPXE"))
        self.assertTrue(machine.ipxe)
        self.assertEqual(machine.user_class, "iPXE")

    def test_rfc3004_user_class(self) -> None:
        machine = classify(discover(o77=b"\x04iPXE"))
        self.assertTrue(machine.ipxe)
        self.assertEqual(machine.user_class, "iPXE")
        self.assertEqual(classify(discover(o77=b"\x03abc\x02de")).user_class, "abc")

    def test_other_user_class_is_not_ipxe(self) -> None:
        machine = classify(discover(o77=b"gPXE"))
        self.assertFalse(machine.ipxe)
        self.assertEqual(machine.user_class, "gPXE")

    def test_ipxe_encapsulated_options(self) -> None:
        self.assertTrue(classify(discover(o175=b"\xb1\x05\x01\x80\x86\x10\x0e")).ipxe)

    def test_http_client(self) -> None:
        machine = classify(discover(b"HTTPClient:Arch:00016:UNDI:003000", b"\x00\x10"))
        self.assertTrue(machine.http_boot)
        self.assertEqual(machine.arch.slug, "x64-uefi-http")
        self.assertTrue(machine.arch.http)
        self.assertIs(machine.firmware, Firmware.UEFI)

    def test_arch_from_vendor_class(self) -> None:
        """
        Without option 93, the vendor class's Arch field tells.
        """
        machine = classify(discover(b"PXEClient:Arch:00007:UNDI:003000", None))
        self.assertEqual(machine.arch.slug, "x64-uefi")
        machine = classify(discover(b"HTTPClient:Arch:00019", None))
        self.assertEqual(machine.arch.slug, "arm64-uefi-http")

    def test_short_option_93_falls_back(self) -> None:
        machine = classify(discover(b"PXEClient:Arch:00009:UNDI:003000", b"\x07"))
        self.assertEqual(machine.arch.code, 9)

    def test_no_arch_at_all_is_bios(self) -> None:
        for vendor in (b"PXEClient", b"PXEClient:Arch:", b"PXEClient:Arch:x86",
                       b"PXEClient:Arch:\xff\xfe"):
            self.assertEqual(classify(discover(vendor, None)).arch.code, 0, vendor)

    def test_unknown_arch(self) -> None:
        machine = classify(discover(b"PXEClient:Arch:00200", b"\x00\xc8"))
        self.assertEqual(machine.arch.slug, "unknown-200")
        self.assertIs(machine.firmware, Firmware.OTHER)

    def test_guid(self) -> None:
        guid = uuid.UUID("12345678-9abc-def0-1122-334455667788")
        machine = classify(discover(o97=b"\x00" + guid.bytes_le))
        self.assertEqual(machine.uuid, str(guid))

    def test_missing_guid(self) -> None:
        self.assertIsNone(classify(discover()).uuid)

    def test_malformed_guid(self) -> None:
        guid = uuid.uuid4().bytes_le
        for raw in (b"", guid, b"\x01" + guid, b"\x00" + guid + b"\x00"):
            self.assertIsNone(classify(discover(o97=raw)).uuid, raw)

    def test_not_network_booting(self) -> None:
        """
        An ordinary DHCP client, whatever it sends, is not classified.
        """
        for vendor in (None, b"", b"MSFT 5.0", b"android-dhcp-13", b"udhcp 1.36.1",
                       b"pxeclient", b"XPXEClient"):
            self.assertRaises(NotNetworkBooting, classify, discover(vendor, None))

    def test_not_ethernet(self) -> None:
        packet = discover()
        packet.htype = 6
        self.assertRaises(NotNetworkBooting, classify, packet)
        packet = discover()
        packet.hlen = 8
        self.assertRaises(NotNetworkBooting, classify, packet)


class ArchitectureTests(unittest.TestCase):
    def test_every_iana_code(self) -> None:
        for code in range(42):
            arch = architecture(code)
            self.assertIsInstance(arch, Architecture)
            self.assertEqual(arch.code, code)
            self.assertIs(arch, ARCHITECTURES[code])
            self.assertRegex(arch.slug, r"^[a-z0-9]+(-[a-z0-9]+)*$")
            self.assertFalse(arch.slug.startswith("unknown"))
            self.assertIn(arch.slug, ARCHITECTURE_SLUGS)
            self.assertTrue(arch.description)
            self.assertIsInstance(arch.firmware, Firmware)

    def test_slugs_unique_except_x64(self) -> None:
        by_slug: dict[str, list[int]] = {}
        for code, arch in ARCHITECTURES.items():
            by_slug.setdefault(arch.slug, []).append(code)
        shared = {slug: codes for slug, codes in by_slug.items() if len(codes) > 1}
        self.assertEqual(shared, {"x64-uefi": [7, 9]})

    def test_well_known(self) -> None:
        expected = {
            0: ("x86-bios", Firmware.BIOS, False),
            6: ("x86-uefi", Firmware.UEFI, False),
            7: ("x64-uefi", Firmware.UEFI, False),
            9: ("x64-uefi", Firmware.UEFI, False),
            10: ("arm32-uefi", Firmware.UEFI, False),
            11: ("arm64-uefi", Firmware.UEFI, False),
            15: ("x86-uefi-http", Firmware.UEFI, True),
            16: ("x64-uefi-http", Firmware.UEFI, True),
            18: ("arm32-uefi-http", Firmware.UEFI, True),
            19: ("arm64-uefi-http", Firmware.UEFI, True),
            20: ("x86-bios-http", Firmware.BIOS, True),
            25: ("riscv32-uefi", Firmware.UEFI, False),
            26: ("riscv32-uefi-http", Firmware.UEFI, True),
            27: ("riscv64-uefi", Firmware.UEFI, False),
            28: ("riscv64-uefi-http", Firmware.UEFI, True),
        }
        for code, (slug, firmware, http) in expected.items():
            arch = architecture(code)
            self.assertEqual((arch.slug, arch.firmware, arch.http), (slug, firmware, http), code)

    def test_unknown_codes(self) -> None:
        for code in (42, 200, 65535):
            arch = architecture(code)
            self.assertEqual(arch.code, code)
            self.assertEqual(arch.slug, f"unknown-{code}")
            self.assertIs(arch.firmware, Firmware.OTHER)
            self.assertFalse(arch.http)
            self.assertIn(str(code), arch.description)
            self.assertNotIn(arch.slug, ARCHITECTURE_SLUGS)
        self.assertEqual(architecture(200), architecture(200))


class MachineTests(unittest.TestCase):
    def test_firmware_follows_arch(self) -> None:
        self.assertIs(Machine(MAC, architecture(0)).firmware, Firmware.BIOS)
        self.assertIs(Machine(MAC, architecture(7)).firmware, Firmware.UEFI)
        self.assertIs(Machine(MAC, architecture(41)).firmware, Firmware.OTHER)

    def test_defaults(self) -> None:
        machine = Machine(MAC, architecture(0))
        self.assertEqual((machine.uuid, machine.ipxe, machine.http_boot, machine.user_class),
                         (None, False, False, None))

    def test_hashable_value(self) -> None:
        self.assertEqual(Machine(MAC, architecture(7)), Machine(MAC, architecture(7)))
        self.assertEqual(len({Machine(MAC, architecture(7)), Machine(MAC, architecture(9))}), 2)


class HTTPTwinTests(unittest.TestCase):
    def test_every_http_code_has_its_pxe_twin(self) -> None:
        """
        Each UEFI (and U-Boot) "from HTTP" code runs what its PXE twin
        runs: the same slug without C{-http}, which is a registry slug too.
        """
        twins = {code: ARCHITECTURES[code].pxe_slug for code in ARCHITECTURES
                 if ARCHITECTURES[code].http}
        self.assertEqual(twins, {
            15: "x86-uefi", 16: "x64-uefi", 17: None, 18: "arm32-uefi", 19: "arm64-uefi",
            20: None, 23: "arm32-uboot", 24: "arm64-uboot", 26: "riscv32-uefi",
            28: "riscv64-uefi", 30: "riscv128-uefi", 38: "loongarch32-uefi",
            40: "loongarch64-uefi",
        })

    def test_pxe_codes_have_no_twin(self) -> None:
        for code, arch in ARCHITECTURES.items():
            if not arch.http:
                self.assertIsNone(arch.pxe_slug, code)
        self.assertIsNone(architecture(500).pxe_slug)


class GUIDFormatTests(unittest.TestCase):
    @given(st.binary(min_size=16, max_size=16))
    def test_same_as_uuid_module(self, raw: bytes) -> None:
        """
        The fast GUID formatting agrees with the standard library's.
        """
        machine = classify(discover(o97=b"\x00" + raw))
        self.assertEqual(machine.uuid, str(uuid.UUID(bytes_le=raw)))
