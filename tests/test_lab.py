"""
Scratch tests for pxed.lab (candidate content for tests/test_lab.py).

Fast tests need nothing; the namespace test needs root and iproute2 and is
skipped otherwise.  No QEMU boot here: that is `python -m pxed.lab selftest`.
"""

from __future__ import annotations

import gzip
import os
import shutil
import stat
import subprocess
from pathlib import Path

from twisted.trial import unittest

from pxed.lab import payload, qemu
from pxed.lab.procs import netns_list, wait_for_file


def parse_newc(data: bytes) -> dict[str, tuple[int, bytes, tuple[int, int]]]:
    """Minimal independent newc reader: name -> (mode, data, rdev)."""
    out = {}
    pos = 0
    while True:
        assert data[pos : pos + 6] == b"070701", data[pos : pos + 6]
        f = [int(data[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, rmaj, rmin, namesize = f[1], f[6], f[9], f[10], f[11]
        name = data[pos + 110 : pos + 110 + namesize - 1].decode()
        pos += 110 + namesize
        pos += -pos % 4
        body = data[pos : pos + size]
        pos += size
        pos += -pos % 4
        if name == "TRAILER!!!":
            return out
        out[name] = (mode, body, (rmaj, rmin))


class PayloadTests(unittest.TestCase):
    def test_initrd_layout(self) -> None:
        busybox = Path(self.mktemp())
        busybox.write_bytes(b"\x7fELF fake busybox")
        path = payload.build_initrd(Path(self.mktemp()), busybox)
        members = parse_newc(gzip.decompress(path.read_bytes()))
        self.assertEqual(members["bin/busybox"][1], b"\x7fELF fake busybox")
        self.assertTrue(stat.S_ISREG(members["init"][0]))
        self.assertTrue(members["init"][0] & 0o100)
        self.assertIn(payload.MARKER.encode(), members["init"][1])
        self.assertEqual(members["dev/console"][2], (5, 1))
        for d in ("proc", "sys", "dev", "bin"):
            self.assertTrue(stat.S_ISDIR(members[d][0]), d)

    def test_initrd_agrees_with_cpio(self) -> None:
        if shutil.which("cpio") is None:
            raise unittest.SkipTest("no cpio binary")
        path = payload.build_initrd(Path(self.mktemp()), Path("/bin/sh"))
        listing = subprocess.run(
            ["cpio", "-it"], input=gzip.decompress(path.read_bytes()),
            capture_output=True, check=True,
        ).stdout.decode().split()  # fmt: skip
        names = [e.name for e in payload.initrd_entries(Path("/bin/sh"))]
        self.assertEqual(sorted(listing), sorted(names))

    def test_find_kernel_newest_and_missing(self) -> None:
        boot = Path(self.mktemp())
        boot.mkdir()
        err = self.assertRaises(FileNotFoundError, payload.find_kernel, boot)
        self.assertIn("linux-image-amd64", str(err))
        for v in ("6.1.0-9-amd64", "6.1.0-10-amd64", "5.10.0-30-amd64"):
            (boot / f"vmlinuz-{v}").write_bytes(b"")
        self.assertEqual(payload.find_kernel(boot).name, "vmlinuz-6.1.0-10-amd64")


class QemuArgvTests(unittest.TestCase):
    def test_bios(self) -> None:
        argv = qemu.qemu_argv("bios", Path("/x/serial.log"), "52:54:00:12:34:56", Path("/x"))
        joined = " ".join(argv)
        self.assertIn("-machine pc", joined)
        self.assertIn("e1000,netdev=net0,mac=52:54:00:12:34:56,bootindex=1", joined)
        self.assertIn("-no-reboot", argv)
        self.assertNotIn("kvm", joined)

    def test_uefi_copies_vars(self) -> None:
        work = Path(self.mktemp())
        work.mkdir()
        argv = qemu.qemu_argv("uefi", work / "s.log", "52:54:00:12:34:56", work)
        self.assertTrue((work / "OVMF_VARS-525400123456.fd").exists())
        self.assertIn("name=opt/org.tianocore/IPv6PXESupport,string=no", argv)

    def test_arm64(self) -> None:
        """
        An ARM64 machine: aarch64 QEMU, virt board, AAVMF code read-only and
        a copy of its variables, EDK2's PXE on virtio-net (no option ROM).
        """
        work = Path(self.mktemp())
        work.mkdir()
        argv = qemu.qemu_argv("arm64", work / "s.log", "52:54:00:12:34:56", work)
        joined = " ".join(argv)
        self.assertEqual(argv[0], "qemu-system-aarch64")
        self.assertIn("-machine virt -cpu cortex-a57", joined)
        self.assertIn(f"readonly=on,file={qemu.AAVMF_CODE}", joined)
        self.assertTrue((work / "AAVMF_VARS-525400123456.fd").exists())
        self.assertIn("virtio-net-pci,netdev=net0,mac=52:54:00:12:34:56,romfile=,bootindex=1",
                      joined)
        self.assertNotIn("kvm", joined)

    def test_arm64_payload(self) -> None:
        kernel, busybox = payload.arm64_payload()
        self.assertEqual(kernel.read_bytes()[56:60], b"ARM\x64", "an arm64 Image")
        self.assertEqual(busybox.read_bytes()[18:20], b"\xb7\x00", "an aarch64 ELF")
        err = self.assertRaises(FileNotFoundError, payload.arm64_payload, Path(self.mktemp()))
        self.assertIn("scripts/setup", str(err))

    def test_rejects(self) -> None:
        mac = "52:54:00:00:00:01"
        self.assertRaises(ValueError, qemu.qemu_argv, "pxe", Path("s"), mac, Path("."))
        self.assertRaises(ValueError, qemu.check_mac, "01:00:5e:00:00:01")
        self.assertRaises(ValueError, qemu.check_mac, "52:54:00:00:00")
        self.assertRaises(ValueError, qemu.qemu_argv, "bios", Path("a,b"), "52:54:00:00:00:01",
                          Path("."))


class WaitTests(unittest.TestCase):
    def test_wait_for_file(self) -> None:
        path = Path(self.mktemp())
        self.assertFalse(wait_for_file(path, b"x", 0.3))
        path.write_bytes(b"abc PXED-BOOT-OK token=1\n")
        self.assertTrue(wait_for_file(path, b"token=1", 1))

    def test_stops_when_process_exits(self) -> None:
        proc = subprocess.Popen(["true"])
        proc.wait()
        self.assertFalse(wait_for_file(Path(self.mktemp()), b"x", 60, proc))


class LabNamespaceTests(unittest.TestCase):
    def setUp(self) -> None:
        if os.geteuid() != 0 or shutil.which("ip") is None:
            raise unittest.SkipTest("needs root and iproute2")

    def test_create_and_teardown(self) -> None:
        from pxed.lab.netns import Lab

        lab = Lab(Path(self.mktemp()))
        with lab:
            self.assertTrue({lab.lan, lab.rtr, lab.srv} <= set(netns_list()))
            host_links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True)
            self.assertNotIn("srv0", host_links.stdout)
            lab.start_router()
            self.assertTrue(lab.wait_listening(lab.rtr, 67, True, 10))
            out = lab.run_in(lab.lan, ["sysctl", "-n", "net.bridge.bridge-nf-call-iptables"])
            self.assertEqual(out.stdout.strip(), "0")
            router = lab.procs[0][1]
        self.assertIsNotNone(router.poll())
        self.assertFalse({lab.lan, lab.rtr, lab.srv} & set(netns_list()))
