# -*- test-case-name: tests.test_classify -*-
"""
Who is asking: the domain model of a network-booting client.

A L{Machine} is what the rest of pxed (policy, HTTP, logs) knows about a
client, independent of which packet revealed it.  The architecture table
is the IANA "Processor Architecture Types" registry (DHCP option 93), so
every code a firmware can send has a name and a firmware kind, and an
unknown code is a value we can log rather than an exception.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

__all__ = ["Firmware", "Architecture", "ARCHITECTURES", "architecture", "Machine", "is_mac"]

_MAC = re.compile(r"^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$")


def is_mac(text: str) -> bool:
    """
    Whether C{text} is a MAC address in the form pxed writes and compares
    (L{Machine.mac}): six lower-case hex pairs separated by colons.
    Everything a client or an operator names a machine by is checked here.
    """
    return _MAC.match(text) is not None


class Firmware(enum.Enum):
    """
    The kind of firmware, which decides how the client is steered.
    """

    BIOS = "bios"
    UEFI = "uefi"
    OTHER = "other"


@dataclass(frozen=True)
class Architecture:
    """
    One entry of the IANA processor architecture registry.

    @ivar slug: the stable name used in the configuration (C{x64-uefi}).
    @ivar http: C{True} for the "boot from HTTP" codes (UEFI HTTP Boot).
    """

    code: int
    slug: str
    description: str
    firmware: Firmware
    http: bool = False

    @property
    def pxe_slug(self) -> str | None:
        """
        For a "boot from HTTP" code, the slug of the same processor booting
        by PXE (C{x64-uefi} for C{x64-uefi-http}); C{None} otherwise.

        An HTTP Boot client runs the same EFI program its PXE twin would,
        only fetched over HTTP, so the configuration need not name it twice.
        """
        if not self.http or self.firmware is Firmware.BIOS or not self.slug.endswith("-http"):
            # A BIOS HTTP client cannot run what a BIOS PXE ROM runs.
            return None
        base = self.slug[: -len("-http")]
        return base if base in ARCHITECTURE_SLUGS else None


_B, _U, _O = Firmware.BIOS, Firmware.UEFI, Firmware.OTHER

ARCHITECTURES: dict[int, Architecture] = {
    a.code: a
    for a in (
        Architecture(0, "x86-bios", "x86 BIOS", _B),
        Architecture(1, "nec-pc98", "NEC/PC98", _O),
        Architecture(2, "itanium", "Itanium", _O),
        Architecture(3, "dec-alpha", "DEC Alpha", _O),
        Architecture(4, "arc-x86", "Arc x86", _O),
        Architecture(5, "intel-lean", "Intel Lean Client", _O),
        Architecture(6, "x86-uefi", "x86 (IA32) UEFI", _U),
        # RFC 4578 named 7 "EFI BC" and 9 "EFI x86-64"; real x64 firmware
        # sends 7 (EDK2/OVMF) or 9 (VMware), so both are x64 UEFI.
        Architecture(7, "x64-uefi", "x64 UEFI", _U),
        Architecture(8, "xscale-uefi", "EFI Xscale", _U),
        Architecture(9, "x64-uefi", "x64 UEFI (code 9)", _U),
        Architecture(10, "arm32-uefi", "ARM 32-bit UEFI", _U),
        Architecture(11, "arm64-uefi", "ARM 64-bit UEFI", _U),
        Architecture(12, "ppc-openfirmware", "PowerPC Open Firmware", _O),
        Architecture(13, "ppc-epapr", "PowerPC ePAPR", _O),
        Architecture(14, "power-opal", "POWER OPAL v3", _O),
        Architecture(15, "x86-uefi-http", "x86 UEFI HTTP", _U, True),
        Architecture(16, "x64-uefi-http", "x64 UEFI HTTP", _U, True),
        Architecture(17, "ebc-http", "EBC from HTTP", _U, True),
        Architecture(18, "arm32-uefi-http", "ARM 32-bit UEFI HTTP", _U, True),
        Architecture(19, "arm64-uefi-http", "ARM 64-bit UEFI HTTP", _U, True),
        Architecture(20, "x86-bios-http", "PC/AT BIOS HTTP", _B, True),
        Architecture(21, "arm32-uboot", "ARM 32-bit U-Boot", _O),
        Architecture(22, "arm64-uboot", "ARM 64-bit U-Boot", _O),
        Architecture(23, "arm32-uboot-http", "ARM 32-bit U-Boot HTTP", _O, True),
        Architecture(24, "arm64-uboot-http", "ARM 64-bit U-Boot HTTP", _O, True),
        Architecture(25, "riscv32-uefi", "RISC-V 32-bit UEFI", _U),
        Architecture(26, "riscv32-uefi-http", "RISC-V 32-bit UEFI HTTP", _U, True),
        Architecture(27, "riscv64-uefi", "RISC-V 64-bit UEFI", _U),
        Architecture(28, "riscv64-uefi-http", "RISC-V 64-bit UEFI HTTP", _U, True),
        Architecture(29, "riscv128-uefi", "RISC-V 128-bit UEFI", _U),
        Architecture(30, "riscv128-uefi-http", "RISC-V 128-bit UEFI HTTP", _U, True),
        Architecture(31, "s390-basic", "s390 Basic", _O),
        Architecture(32, "s390-extended", "s390 Extended", _O),
        Architecture(33, "mips32-uefi", "MIPS 32-bit UEFI", _U),
        Architecture(34, "mips64-uefi", "MIPS 64-bit UEFI", _U),
        Architecture(35, "sunway32-uefi", "Sunway 32-bit UEFI", _U),
        Architecture(36, "sunway64-uefi", "Sunway 64-bit UEFI", _U),
        Architecture(37, "loongarch32-uefi", "LoongArch 32-bit UEFI", _U),
        Architecture(38, "loongarch32-uefi-http", "LoongArch 32-bit UEFI HTTP", _U, True),
        Architecture(39, "loongarch64-uefi", "LoongArch 64-bit UEFI", _U),
        Architecture(40, "loongarch64-uefi-http", "LoongArch 64-bit UEFI HTTP", _U, True),
        Architecture(41, "arm-rpiboot", "ARM rpiboot", _O),
    )
}

#: Every slug the configuration may name.
ARCHITECTURE_SLUGS = frozenset(a.slug for a in ARCHITECTURES.values())


def architecture(code: int) -> Architecture:
    """
    Look up an option 93 code, inventing a descriptive entry for codes the
    registry does not (yet) have, so callers never need a special case.
    """
    found = ARCHITECTURES.get(code)
    if found is not None:
        return found
    return Architecture(code, f"unknown-{code}", f"unknown architecture {code}", _O)


@dataclass(frozen=True, slots=True)
class Machine:
    """
    A network-booting client, as classified from one of its requests.

    @ivar mac: lower-case colon-separated hardware address.
    @ivar uuid: the client machine GUID from option 97, if sent.
    @ivar ipxe: C{True} when the firmware is iPXE itself (user class
        C{iPXE}): it gets an HTTP script, never iPXE again, or it loops.
    @ivar http_boot: C{True} for UEFI HTTP Boot clients (C{HTTPClient}).
    """

    mac: str
    arch: Architecture
    uuid: str | None = None
    ipxe: bool = False
    http_boot: bool = False
    user_class: str | None = None

    @property
    def firmware(self) -> Firmware:
        return self.arch.firmware
