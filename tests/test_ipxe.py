"""
Tests for L{pxed.ipxe}: the iPXE scripts that boot Linux.
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from pxed.ipxe import initrd_names, linux_script, no_boot_script
from pxed.policy import BootSpec

BEACON = "http://10.0.0.1/_/booting?mac=52%3A54%3A00%3A12%3A34%3A56"


def local(location: str) -> str:
    """
    A stand-in for the HTTP layer's URL mapping: local paths under
    C{http://10.0.0.1/f}, URLs unchanged.
    """
    if location.startswith(("http://", "https://")):
        return location
    return "http://10.0.0.1/f" + location


def script_lines(spec: BootSpec) -> list[str]:
    text = linux_script(spec, local, BEACON)
    assert text.endswith("\n"), text
    return text.splitlines()


class LinuxScriptTests(unittest.TestCase):
    def test_kernel_initrds_cmdline(self) -> None:
        lines = script_lines(BootSpec("/srv/vmlinuz", ("/srv/initrd.img", "/srv/firmware.cpio"),
                                      "console=ttyS0 quiet"))
        self.assertEqual(lines[0], "#!ipxe")
        self.assertEqual(lines[2], "kernel http://10.0.0.1/f/srv/vmlinuz "
                                   "initrd=initrd.img initrd=firmware.cpio console=ttyS0 quiet")
        self.assertEqual(lines[3:5], [
            "initrd --name initrd.img http://10.0.0.1/f/srv/initrd.img",
            "initrd --name firmware.cpio http://10.0.0.1/f/srv/firmware.cpio",
        ])
        self.assertEqual(lines[-1], "boot")

    def test_beacon_before_boot(self) -> None:
        """
        The beacon is fetched after every image, then freed (so a BIOS
        kernel does not get it as an initrd), failure ignored, then boot.
        """
        lines = script_lines(BootSpec("/srv/vmlinuz", ("/srv/initrd.img",)))
        self.assertEqual(lines[-2:], [
            f"imgfetch --name pxed-beacon {BEACON} && imgfree pxed-beacon ||",
            "boot",
        ])
        beacon = lines.index(lines[-2])
        kernel = next(i for i, line in enumerate(lines) if line.startswith("kernel "))
        initrd = next(i for i, line in enumerate(lines) if line.startswith("initrd "))
        self.assertLess(kernel, beacon)
        self.assertLess(initrd, beacon)

    def test_no_initrd_no_cmdline(self) -> None:
        lines = script_lines(BootSpec("/srv/vmlinuz"))
        self.assertIn("kernel http://10.0.0.1/f/srv/vmlinuz", lines)
        self.assertFalse([line for line in lines if line.startswith("initrd")])
        self.assertNotIn("initrd=", "\n".join(lines))

    def test_cmdline_only(self) -> None:
        lines = script_lines(BootSpec("/srv/vmlinuz", (), "root=/dev/nfs ip=dhcp"))
        self.assertIn("kernel http://10.0.0.1/f/srv/vmlinuz root=/dev/nfs ip=dhcp", lines)

    def test_urls_unchanged(self) -> None:
        kernel = "https://deb.example.org/d-i/amd64/linux?x=1"
        initrd = "http://deb.example.org:8080/d-i/amd64/initrd.gz"
        lines = script_lines(BootSpec(kernel, (initrd,), "priority=critical"))
        self.assertIn(f"kernel {kernel} initrd=initrd.gz priority=critical", lines)
        self.assertIn(f"initrd --name initrd.gz {initrd}", lines)

    def test_duplicate_basenames(self) -> None:
        spec = BootSpec("/k", ("/a/initrd.img", "/b/initrd.img", "http://h/c/initrd.img"))
        lines = script_lines(spec)
        names = [line.split()[2] for line in lines if line.startswith("initrd ")]
        self.assertEqual(len(set(names)), 3, names)
        kernel = next(line for line in lines if line.startswith("kernel "))
        self.assertEqual(re.findall(r"initrd=(\S+)", kernel), names)
        urls = [line.split()[3] for line in lines if line.startswith("initrd ")]
        self.assertEqual(urls, ["http://10.0.0.1/f/a/initrd.img",
                                "http://10.0.0.1/f/b/initrd.img", "http://h/c/initrd.img"])


class InitrdNameTests(unittest.TestCase):
    def test_basenames(self) -> None:
        self.assertEqual(initrd_names(("/srv/initrd.img", "https://h/x/fw.cpio.gz?v=2")),
                         ["initrd.img", "fw.cpio.gz"])

    def test_unsafe_characters(self) -> None:
        names = initrd_names(("/srv/my initrd;rm -rf.img", "/srv/ü.img", "http://h/a%20b"))
        for name in names:
            self.assertRegex(name, r"^[A-Za-z0-9._-]+$")

    def test_no_basename(self) -> None:
        self.assertEqual(initrd_names(("http://h/",)), ["initrd"])

    def test_unique(self) -> None:
        names = initrd_names(("/a/x", "/b/x", "/c/x"))
        self.assertEqual(len(set(names)), 3)
        self.assertEqual(names[0], "x")

    def test_unique_when_renamed_name_taken(self) -> None:
        """
        A name made up for a duplicate must not be one that another initrd
        already has.
        """
        names = initrd_names(("/a/x", "/b/initrd2-x", "/c/x"))
        self.assertEqual(len(set(names)), 3, names)

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.sampled_from(
        ["/a/x", "/b/x", "/a/initrd1-x", "/a/initrd2-x", "/a/initrd3-x", "http://h/x",
         "http://h/", "/a/initrd", "/b/initrd1-initrd", "/c/initrd2-initrd2-x"]),
        max_size=6))
    def test_always_unique(self, initrds: list[str]) -> None:
        names = initrd_names(tuple(initrds))
        self.assertEqual(len(names), len(initrds))
        self.assertEqual(len(set(names)), len(names), names)


class NoBootScriptTests(unittest.TestCase):
    def test_exits(self) -> None:
        text = no_boot_script("no boot entry\nfor this machine")
        self.assertEqual(text.splitlines(),
                         ["#!ipxe", "echo pxed: no boot entry for this machine", "exit 1"])
