"""
End-to-end ARM64 boots: QEMU's C{virt} machine (Cortex-A57) with Debian's
AAVMF network-boots an arm64 kernel from a real C{twistd pxed} whose
configuration has nothing but the machine's kernel, initrd and command
line: pxed builds the arm64 GRUB itself (L{pxed.grub.image}) and writes
its configuration from the policy.

Same lab and proof as L{tests.test_e2e_boot}: the busybox initrd prints a
random token only pxed's configuration carried, and the machine's
timeline is checked from the JSON API.  Need root, QEMU for aarch64,
AAVMF and the arm64 packages C{scripts/setup} unpacks; they fail, never
skip, without them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from twisted.trial import unittest

from pxed.grub.image import DEFAULT_CACHE_DIR
from pxed.lab.demo import BootRun, boot_from_pxed
from pxed.lab.payload import arm64_payload
from pxed.lab.qemu import AAVMF_CODE, QEMU_ARM64
from tests.e2e import BOOT_TIMEOUT, assert_booted, require_lab


def require_arm64() -> None:
    require_lab()
    if shutil.which(QEMU_ARM64) is None:
        raise AssertionError(f"{QEMU_ARM64} is missing: run scripts/setup")
    if not AAVMF_CODE.is_file():
        raise AssertionError(f"{AAVMF_CODE} is missing: run scripts/setup")
    arm64_payload()  # raises, naming scripts/setup


class EndToEndARM64Tests(unittest.TestCase):
    def _boot(self, firmware: str, mac: str, second_lan: str | None = None,
              server: str = "") -> tuple[BootRun, str]:
        require_arm64()
        workdir = Path(self.mktemp()).resolve()
        run = boot_from_pxed(workdir, firmware, mac, BOOT_TIMEOUT, second_lan=second_lan,
                             server=server)
        return run, assert_booted(self, run, workdir)

    def _first_program(self, run: BootRun) -> str:
        starts = [e for e in run.timeline if e["stage"] in ("tftp-start", "program")]
        self.assertTrue(starts, run.timeline)
        return str(starts[0]["fields"].get("file"))

    def test_arm64_pxe(self) -> None:
        """
        AAVMF's PXE (architecture 11) takes the proxy offer, asks port
        4011, fetches the GRUB image pxed built for 192.168.77.1 by TFTP,
        and that GRUB reads its configuration, the kernel and the initrd
        from pxed and fetches the beacon.
        """
        mac = "52:54:00:77:00:50"
        # An image left by an earlier run would be reused: this boot must
        # see pxed build it (the cache is pxed's own, and rebuilt at will).
        for old in (DEFAULT_CACHE_DIR / "grub-arm64-efi").glob("192.168.77.1-*.efi"):
            old.unlink()
        run, log = self._boot("arm64", mac)
        name = "grubaa64-192.168.77.1.efi"
        self.assertIn(f"{mac}: proxydhcp arm64-uefi -> {name}", log)
        self.assertIn(f"{mac}: bootserver arm64-uefi -> {name}", log)
        self.assertEqual(self._first_program(run), name)
        self.assertIn("built the arm64-efi GRUB image for 192.168.77.1", log)
        images = list((DEFAULT_CACHE_DIR / "grub-arm64-efi").glob("192.168.77.1-*.efi"))
        self.assertEqual(len(images), 1, images)

    def test_arm64_http_boot_on_second_interface(self) -> None:
        """
        AAVMF's UEFI HTTP Boot (architecture 19) on pxed's second
        interface: the offer names the image for that interface's address
        (192.168.99.1), over HTTP, and the GRUB inside finds pxed there.
        """
        mac = "52:54:00:77:00:60"
        run, log = self._boot("arm64-http", mac, second_lan="direct",
                              server="  interfaces: [eth0, eth1]\n")
        url = "http://192.168.99.1/_/boot/grubaa64-192.168.99.1.efi"
        self.assertIn(f"{mac}: proxydhcp arm64-uefi-http -> {url}", log)
        self.assertEqual(self._first_program(run), "grubaa64-192.168.99.1.efi")
        images = list((DEFAULT_CACHE_DIR / "grub-arm64-efi").glob("192.168.99.1-*.efi"))
        self.assertEqual(len(images), 1, images)

    def test_arm64_through_relay(self) -> None:
        """
        An ARM64 machine on 192.168.88.0/24 behind a DHCP relay: the
        relayed offer names pxed's image for 192.168.77.1, and the GRUB
        inside reaches pxed across the router (through the gateway the
        firmware's DHCP gave it).
        """
        mac = "52:54:00:77:00:70"
        run, log = self._boot("arm64", mac, second_lan="relay")
        self.assertIn(f"{mac}: proxydhcp arm64-uefi -> grubaa64-192.168.77.1.efi", log)
        self.assertEqual(self._first_program(run), "grubaa64-192.168.77.1.efi")
        files = [e for e in run.timeline if e["stage"] in ("kernel", "initrd")]
        peers = {e["fields"].get("peer") for e in files}
        self.assertEqual(len(peers), 1, run.timeline)
        self.assertTrue(str(peers.pop()).startswith("192.168.88."), run.timeline)
