"""
End-to-end Secure Boot: OVMF with Secure Boot enforced and Microsoft's
keys enrolled (Debian's C{OVMF_CODE_4M.ms.fd}, a fresh copy of
C{OVMF_VARS_4M.ms.fd}) boots from pxed through Debian's signed shim, its
signed netboot GRUB and its signed kernel, with the configuration pxed
writes for GRUB; and the same firmware refuses an unsigned program, which
pxed's timeline shows as the last step of that boot.

Same lab as L{tests.test_e2e_boot} (network namespaces the test creates
and removes, dnsmasq as the LAN's DHCP server, a real C{twistd pxed},
QEMU under TCG).  Need root, QEMU and the Debian packages C{scripts/setup}
installs; they fail, never skip, without them.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

from twisted.trial import unittest

from pxed.lab.demo import BootRun, boot_from_pxed
from pxed.lab.netns import Lab, tail
from pxed.lab.payload import find_kernel
from tests.e2e import BOOT_TIMEOUT, in_order, require_lab, step

#: The steps of a shim boot in proxy mode: pxed's offer and 4011 ACK name
#: shimx64.efi, then TFTP of shim (and of grubx64.efi, grub.cfg: more
#: "program" steps), GRUB's configuration, the kernel and initrd by TFTP,
#: the beacon GRUB reads.
SHIM_STEPS = ["offer", "bootserver", "tftp-start", "program", "script", "kernel", "initrd",
              "booted"]

#: The same with pxed as the LAN's DHCP server: its offer and ACK name
#: shimx64.efi, and EDK2 needs no port-4011 step.
SHIM_FULL_DHCP_STEPS = ["offer", "tftp-start", "program", "script", "kernel", "initrd", "booted"]

#: What EDK2 prints when Secure Boot refuses an image.
REFUSED = b"Access Denied"


def unsigned_copy(kernel: Path, target: Path) -> Path:
    """
    C{kernel} without its Authenticode signature, as a locally built kernel
    would be: the PE security directory emptied and its certificate table
    (at the end of the file) cut off.
    """
    data = bytearray(kernel.read_bytes())
    pe = struct.unpack_from("<I", data, 0x3C)[0]
    if data[pe:pe + 4] != b"PE\0\0":
        raise AssertionError(f"{kernel} is not a PE image")
    optional = pe + 24
    directories = optional + (112 if struct.unpack_from("<H", data, optional)[0] == 0x20B else 96)
    security = directories + 4 * 8
    offset, size = struct.unpack_from("<II", data, security)
    if not offset or offset + size != len(data):
        raise AssertionError(f"{kernel} has no signature table at its end")
    struct.pack_into("<II", data, security, 0, 0)
    target.write_bytes(bytes(data[:offset]))
    return target


class SecureBootTests(unittest.TestCase):
    def _boot(self, mac: str, firmware: str = "uefi-sb", **kw: object) -> tuple[BootRun, Path]:
        require_lab()
        workdir = Path(self.mktemp()).resolve()
        run = boot_from_pxed(workdir, firmware, mac, BOOT_TIMEOUT, **kw)  # type: ignore[arg-type]
        return run, workdir

    def _explain(self, run: BootRun, workdir: Path) -> str:
        return (f"kept in {workdir}\n--- serial (tail)\n{tail(run.serial, 30)}\n"
                f"--- pxed (tail)\n{tail(run.pxed_log, 30)}\n--- timeline\n"
                f"{json.dumps(run.timeline, indent=1)}")

    def test_shim_chain_with_the_sites_next_server(self) -> None:
        """
        Proxy mode, with the LAN's DHCP server naming pxed as next-server
        (and no boot file): the firmware takes shimx64.efi from pxed's
        proxy offer and port-4011 ACK, shim fetches grubx64.efi beside it,
        GRUB reads /grub/grub.cfg from the ACK's next-server (pxed), then
        its own configuration, the kernel (checked against Debian's key by
        shim) and the initrd by TFTP.  The kernel says Secure Boot was on,
        and got the command line as written (a quoted value with a space).
        """
        mac = "52:54:00:77:00:a0"
        run, workdir = self._boot(
            mac, extra="bootloaders: {x64-uefi: shim}\n", cmdline=' pxed.words="a b"',
            router=(f"--dhcp-boot=,,{Lab.SERVER_IP}",))
        why = self._explain(run, workdir)
        self.assertTrue(run.ok, f"no boot marker; {why}")
        self.assertTrue(run.pxed_survived, why)
        serial = run.serial.read_text(errors="replace")
        self.assertIn("Secure boot enabled", serial, why)
        line = next((x for x in serial.splitlines() if "Kernel command line:" in x), "")
        self.assertIn(f"pxed.token={run.token}", line, why)
        self.assertIn('"pxed.words=a b"', line, why)
        log = run.pxed_log.read_text(errors="replace")
        self.assertIn(f"{mac}: bootserver x64-uefi -> shimx64.efi", log)
        self.assertIn(f"{mac}: served GRUB configuration", log)
        self.assertIn(f"{mac}: booting", log)
        self.assertEqual(in_order(run.timeline, SHIM_STEPS), SHIM_STEPS, why)
        # shim's and GRUB's optional probes are answered "not found" and are
        # no step of the boot.
        self.assertNotIn("tftp-not-found", [e["stage"] for e in run.timeline], why)
        files = [e["fields"].get("file") for e in run.timeline if e["stage"] == "tftp-end"
                 and e["fields"].get("outcome") == "complete"]
        self.assertIn("shimx64.efi", files, why)
        self.assertIn("grubx64.efi", files, why)
        self.assertTrue(any(re.fullmatch(r"/?grub/grub\.cfg", f or "") for f in files), why)
        run.pcap.unlink(missing_ok=True)

    def test_shim_chain_with_secure_boot_off(self) -> None:
        """
        The same chain on OVMF without Secure Boot: shim just runs GRUB,
        and the kernel says Secure Boot was off.
        """
        mac = "52:54:00:77:00:a4"
        run, workdir = self._boot(mac, firmware="uefi", extra="bootloaders: {x64-uefi: shim}\n",
                                  router=(f"--dhcp-boot=,,{Lab.SERVER_IP}",))
        why = self._explain(run, workdir)
        self.assertTrue(run.ok, f"no boot marker; {why}")
        serial = run.serial.read_text(errors="replace")
        self.assertNotIn("Secure boot enabled", serial, why)
        self.assertIn("secureboot: Secure boot disabled", serial, why)
        self.assertEqual(in_order(run.timeline, SHIM_STEPS), SHIM_STEPS, why)
        run.pcap.unlink(missing_ok=True)

    def test_shim_chain_with_pxed_as_dhcp_server(self) -> None:
        """
        pxed as the LAN's only DHCP server (C{dhcp.mode: full}): its ACK
        names itself as next-server and shimx64.efi as the file, which is
        all Debian's GRUB needs to find C{/grub/grub.cfg} on pxed.
        """
        mac = "52:54:00:77:00:a2"
        run, workdir = self._boot(mac, extra="bootloaders: {x64-uefi: shim}\n",
                                  dhcp_server=True)
        why = self._explain(run, workdir)
        self.assertTrue(run.ok, f"no boot marker; {why}")
        self.assertTrue(run.pxed_survived, why)
        self.assertIn("Secure boot enabled", run.serial.read_text(errors="replace"), why)
        self.assertEqual(in_order(run.timeline, SHIM_FULL_DHCP_STEPS), SHIM_FULL_DHCP_STEPS,
                         why)
        self.assertNotIn("bootserver", [step(e) for e in run.timeline], why)
        self.assertIn(f"{mac}: booting", run.pxed_log.read_text(errors="replace"))
        run.pcap.unlink(missing_ok=True)

    def test_unsigned_program_refused(self) -> None:
        """
        Secure Boot on, and pxed serving Debian's unsigned snponly.efi: the
        firmware fetches it and refuses to run it.  pxed's timeline shows
        where the boot stopped: the program's TFTP download is its last
        step, and nothing of iPXE follows.
        """
        mac = "52:54:00:77:00:a1"
        run, workdir = self._boot(mac, expect=REFUSED)
        why = self._explain(run, workdir)
        self.assertTrue(run.ok, f"the firmware never said {REFUSED!r}; {why}")
        self.assertTrue(run.pxed_survived, why)
        steps = [step(e) for e in run.timeline]
        self.assertEqual(in_order(run.timeline, ["offer", "bootserver", "tftp-start", "program"]),
                         ["offer", "bootserver", "tftp-start", "program"], why)
        for later in ("ipxe-dhcp", "script", "kernel", "initrd", "booted"):
            self.assertNotIn(later, steps, why)
        last = [e for e in run.timeline if step(e) == "program"][-1]
        self.assertEqual(last["fields"].get("file"), "snponly.efi", why)
        run.pcap.unlink(missing_ok=True)

    def test_unsigned_kernel_refused(self) -> None:
        """
        The chain up to GRUB is signed, the kernel is not: GRUB has shim
        check it and refuses it, pxed's configuration says the boot failed,
        and the timeline shows the GRUB configuration and the kernel's
        download, but no beacon.
        """
        mac = "52:54:00:77:00:a3"
        require_lab()
        workdir = Path(self.mktemp()).resolve()
        workdir.mkdir(parents=True)
        kernel = unsigned_copy(find_kernel(), workdir / "vmlinuz-unsigned")
        run = boot_from_pxed(workdir, "uefi-sb", mac, BOOT_TIMEOUT,
                             extra="bootloaders: {x64-uefi: shim}\n",
                             router=(f"--dhcp-boot=,,{Lab.SERVER_IP}",),
                             expect=b"pxed: the boot failed", kernel=kernel)
        why = self._explain(run, workdir)
        self.assertTrue(run.ok, f"GRUB's configuration never said the boot failed; {why}")
        self.assertTrue(run.pxed_survived, why)
        serial = run.serial.read_text(errors="replace")
        self.assertNotIn("Linux version", serial, why)
        self.assertIn("error: bad shim signature", serial, why)  # GRUB's reason, then pxed's
        steps = [step(e) for e in run.timeline]
        self.assertEqual(in_order(run.timeline, ["offer", "bootserver", "program", "script",
                                                 "kernel"]),
                         ["offer", "bootserver", "program", "script", "kernel"], why)
        self.assertNotIn("booted", steps, why)
        self.assertNotIn("initrd", steps, why)
        run.pcap.unlink(missing_ok=True)
