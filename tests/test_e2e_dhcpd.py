"""
End-to-end boots with pxed as the LAN's only DHCP server
(C{dhcp.mode: full}): no other DHCP server runs on the lab LAN (its
router only sends IPv6 router advertisements, which spare iPXE a 15 s
wait), so the firmware, iPXE and the kernel's address all come from pxed,
with the probe on.

One BIOS machine (SeaBIOS with QEMU's iPXE ROM) and one UEFI machine
(OVMF with EDK2's own PXE, which boots the file named in pxed's DHCP ACK
with no port-4011 step); each timeline is checked as in the other
end-to-end tests, and the machine's lease is in C{/_/leases} and in the
lease file, inside the range.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

from twisted.trial import unittest

from pxed.lab.demo import BootRun, boot_from_pxed
from pxed.lab.netns import Lab
from pxed.leasefile import read_lease_file
from tests.e2e import BIOS_STEPS, BOOT_TIMEOUT, UEFI_FULL_DHCP_STEPS, assert_booted, require_lab


class FullDHCPBootTests(unittest.TestCase):
    def _boot(self, firmware: str, mac: str, steps: list[str]) -> tuple[BootRun, str, Path]:
        require_lab()
        workdir = Path(self.mktemp()).resolve()
        run = boot_from_pxed(workdir, firmware, mac, BOOT_TIMEOUT, dhcp_server=True)
        log = assert_booted(self, run, workdir, steps)
        return run, log, workdir

    def check_lease(self, run: BootRun, log: str, workdir: Path) -> str:
        stored = read_lease_file(workdir / "leases.json")
        mine = [lease for lease in stored if lease.mac == run.mac]
        self.assertEqual(len(mine), 1, stored)
        address = mine[0].address
        low, high = (ipaddress.IPv4Address(a) for a in Lab.DHCP_RANGE)
        self.assertTrue(low <= ipaddress.IPv4Address(address) <= high, address)
        self.assertEqual(mine[0].state, "bound")
        self.assertIn(f"{run.mac}: dhcp ACK {address}", log)
        # The machine fetched its script from the address pxed gave it.
        self.assertIn(f"{run.mac}: served iPXE script", log)
        return str(address)

    def test_bios_full_dhcp(self) -> None:
        mac = "52:54:00:77:01:10"
        run, log, workdir = self._boot("bios", mac, BIOS_STEPS)
        self.check_lease(run, log, workdir)
        self.assertIn(f"{mac}: dhcp ACK", log)
        self.assertIn("(x86-bios -> http://", log)

    def test_uefi_full_dhcp(self) -> None:
        mac = "52:54:00:77:01:20"
        run, log, workdir = self._boot("uefi", mac, UEFI_FULL_DHCP_STEPS)
        self.check_lease(run, log, workdir)
        self.assertIn("(x64-uefi -> snponly.efi)", log)
        # EDK2 booted from the DHCP ACK: nothing was asked on port 4011.
        self.assertNotIn("bootserver", json.dumps(run.timeline))
