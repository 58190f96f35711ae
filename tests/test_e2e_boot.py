"""
End-to-end boots of real firmware from pxed.

In network namespaces of their own: a "router" running dnsmasq as the
LAN's ordinary DHCP server (no PXE, no TFTP, no DNS), pxed started by
C{twistd} as a separate host, and QEMU booting over a tap device (SeaBIOS
with QEMU's iPXE ROM, or OVMF with EDK2's own PXE).  The machine boots
Debian's kernel with a busybox initrd whose /init prints a marker with a
random token that only pxed's configuration carried; the test passes only
when that marker reaches the serial console.

These need root, QEMU and the Debian packages that C{scripts/setup}
installs.  They fail (never skip) when those are missing: CI installs them.
On failure, the serial log, the capture (boot.pcapng) and the logs stay in
the test's folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from twisted.trial import unittest

from pxed.lab.demo import boot_from_pxed, start_pxed, twistd
from pxed.lab.netns import Lab
from tests.e2e import BOOT_TIMEOUT, assert_booted, require_lab

REPO = Path(__file__).resolve().parents[1]

GARBAGE = [b"", b"\x00", b"\xff" * 7, os.urandom(300), b"\x01\x01\x06\x00" + b"\x00" * 400,
           b"\x00\x01boot\x00", b"\x00\x05\x00\x04", b"\x00\x09garbage"]


def send_garbage(lab: Lab) -> None:
    """
    From the router host, send malformed datagrams to every pxed UDP port and
    junk to its HTTP port; the boot that follows proves nothing was stopped.
    """
    script = (
        "import socket,sys,ast\n"
        "g=ast.literal_eval(sys.argv[1])\n"
        "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
        "for p in (67,4011,69):\n"
        "  for d in g: s.sendto(d,(sys.argv[2],p))\n"
        "t=socket.create_connection((sys.argv[2],80),timeout=5)\n"
        "t.sendall(b'\\x16\\x03\\x01garbage\\r\\n\\r\\n');t.recv(100);t.close()\n"
    )
    lab.run_in(lab.rtr, [sys.executable, "-c", script, repr(GARBAGE), lab.SERVER_IP])


class EndToEndBootTests(unittest.TestCase):
    """
    Real firmware, real network stack, real pxed process.
    """

    def _boot(
        self, firmware: str, mac: str, before_boot: Callable[[Lab], None] | None = None
    ) -> str:
        require_lab()
        workdir = Path(self.mktemp()).resolve()
        run = boot_from_pxed(workdir, firmware, mac, BOOT_TIMEOUT, before_boot=before_boot)
        return assert_booted(self, run, workdir)

    def test_bios_seabios_ipxe_rom(self) -> None:
        """
        SeaBIOS with QEMU's iPXE e1000 ROM: the client is iPXE from its first
        packet, so it goes straight to the HTTP script.  Garbage sent to every
        port first must not stop anything.
        """
        mac = "52:54:00:77:00:10"
        log = self._boot("bios", mac, before_boot=send_garbage)
        self.assertIn(f"{mac}: proxydhcp x86-bios -> http://", log)
        self.assertIn(f"{mac}: served iPXE script", log)

    def test_uefi_ovmf_edk2_pxe(self) -> None:
        """
        OVMF with EDK2's own PXE on virtio-net: the proxy offer without option
        43, the port-4011 DHCPREQUEST, the TFTP download of iPXE (after EDK2's
        tsize probe), then iPXE over HTTP.
        """
        mac = "52:54:00:77:00:20"
        log = self._boot("uefi", mac)
        self.assertIn(f"{mac}: proxydhcp x64-uefi -> snponly.efi", log)
        self.assertIn(f"{mac}: bootserver x64-uefi -> snponly.efi", log)
        self.assertIn(f"{mac}: proxydhcp x64-uefi -> http://", log)


class TwistdTests(unittest.TestCase):
    """
    The packaging promises: the plugin is installed, lists its options,
    starts with the example config, and rejects a bad one in one line.
    """

    def test_help_lists_options(self) -> None:
        out = subprocess.run([twistd(), "pxed", "--help"], capture_output=True, text=True,
                             timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("--config", out.stdout)

    def test_bad_config_is_one_line(self) -> None:
        bad = Path(self.mktemp())
        bad.write_text("boot:\n  machines:\n    \"52:54:00:zz:00:01\": {kernel: /nonexistent}\n")
        out = subprocess.run([twistd(), "-n", "--pidfile=", "pxed", "--config", str(bad)],
                             capture_output=True, text=True, timeout=60)
        self.assertNotEqual(out.returncode, 0)
        text = out.stdout + out.stderr
        self.assertIn(f"{bad}: boot.machines.52:54:00:zz:00:01: is not a MAC address", text)
        self.assertNotIn("Traceback", text)

    def test_example_config_starts(self) -> None:
        """
        C{twistd -n pxed --config etc/pxed.yaml} starts every service (in a
        namespace of its own, where the well-known ports are free).
        """
        require_lab()
        workdir = Path(self.mktemp()).resolve()
        with Lab(workdir) as lab:
            proc = start_pxed(lab, REPO / "etc" / "pxed.yaml", workdir / "pxed.log")
            self.assertIsNone(proc.poll())
