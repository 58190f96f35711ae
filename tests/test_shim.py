"""
Tests for the Secure Boot chain's configuration and serving
(C{bootloaders: {x64-uefi: shim}}): Debian's signed shim served as
C{shimx64.efi}, Debian's signed netboot GRUB beside it as C{grubx64.efi},
the optional probes answered "file not found", and chained files'
directories (their siblings) served under the name the client asks for.

The signed files come from the Debian packages C{scripts/setup} installs
(C{grub-efi-amd64-signed}, C{shim-signed} unpacked): without them these
tests fail rather than skip.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from twisted.internet.defer import ensureDeferred
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from pxed.config import ConfigError, load_config, parse_config
from pxed.config.server import SHIM, SHIM_GRUB, served_name
from pxed.machine import Machine, architecture
from pxed.policy.actions import firmware_directory, firmware_name
from pxed.service import makeBootService
from pxed.tftp.source import AccessViolation, DirectorySource, FileNotFound
from tests.fixtures import write_bootloaders

MAC = "52:54:00:12:34:56"
PEER = ("192.168.77.50", 1234)


def shim_path() -> Path:
    found = next((path for path in SHIM if path.is_file()), None)
    if found is None or not SHIM_GRUB.is_file():
        raise AssertionError("Debian's signed shim or GRUB is missing: run scripts/setup")
    return found


class ShimConfigTests(unittest.TestCase):
    def setUp(self) -> None:
        self.base = Path(self.mktemp()).absolute()
        self.base.mkdir()
        self.programs = write_bootloaders(self.base)
        self.shim = shim_path()

    def parse(self, bootloaders: dict[str, Any]) -> Any:
        return parse_config({"bootloaders": {"x86-bios": str(self.programs["x86-bios"]),
                                             **bootloaders}}, "pxed.yaml")

    def test_keyword(self) -> None:
        config = self.parse({"x64-uefi": "shim"})
        self.assertEqual(config.bootloaders["x64-uefi"], self.shim)
        programs = config.programs()
        self.assertEqual(programs["shimx64.efi"], self.shim)
        self.assertEqual(programs["grubx64.efi"], SHIM_GRUB)
        self.assertEqual(programs["undionly.kpxe"], self.programs["x86-bios"])

    def test_served_name(self) -> None:
        self.assertEqual(served_name(Path("/usr/lib/shim/shimx64.efi.signed")), "shimx64.efi")
        self.assertEqual(served_name(Path("/usr/lib/ipxe/snponly.efi")), "snponly.efi")
        self.assertEqual(served_name(Path("/x/.signed")), ".signed")

    def test_only_x64(self) -> None:
        with self.assertRaises(ConfigError) as caught:
            self.parse({"arm64-uefi": "shim"})
        self.assertEqual(str(caught.exception),
                         "pxed.yaml: bootloaders.arm64-uefi: 'shim' is only for x64-uefi "
                         "(Debian's signed x64 shim and GRUB)")

    def test_name_taken_by_shims_grub(self) -> None:
        grub = self.base / "grubx64.efi"
        grub.write_bytes(b"grub")
        with self.assertRaises(ConfigError) as caught:
            self.parse({"x64-uefi": "shim", "x86-uefi": str(grub)})
        self.assertIn("bootloaders.x86-uefi: file name 'grubx64.efi' is the GRUB that shim loads",
                      str(caught.exception))

    def test_no_companion_without_keyword(self) -> None:
        """
        A shim named by path gets no GRUB beside it: the operator's own
        grubx64.efi (in tftp.root) is not shadowed.
        """
        config = self.parse({"x64-uefi": str(self.shim)})
        self.assertEqual(config.programs().get("shimx64.efi"), self.shim)
        self.assertNotIn("grubx64.efi", config.programs())


class ShimServingTests(unittest.TestCase):
    """
    What the firmware, shim and GRUB ask of pxed, in the order they ask.
    """

    def setUp(self) -> None:
        self.base = Path(self.mktemp()).absolute()
        self.base.mkdir()
        programs = write_bootloaders(self.base)
        self.shim = shim_path()
        kernel = self.base / "vmlinuz"
        kernel.write_bytes(b"kernel")
        path = self.path = self.base / "pxed.yaml"
        path.write_text(textwrap.dedent(f"""\
            server: {{address: 192.168.77.1, ports: {{dhcp: 0, pxe: 0, tftp: 0, http: 0}}}}
            bootloaders:
              x86-bios: {programs["x86-bios"]}
              x64-uefi: shim
            boot:
              default: {{kernel: {kernel}, cmdline: "console=ttyS0"}}
            """))
        self.top = makeBootService(load_config(path), reactor=MemoryReactorClock())
        self.runtime: Any = self.top.getServiceNamed("policy")
        self.responder = self.top.getServiceNamed("bootserver").protocol.responder

    def read(self, name: str) -> bytes:
        readable = self.successResultOf(self.runtime.tftp.open(name, PEER))
        try:
            return bytes(readable.read(0, 64 << 20))
        finally:
            readable.close()

    def test_next_server_note(self) -> None:
        """
        In proxy mode, starting says what the site's DHCP server must do.
        """
        logged: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        makeBootService(load_config(self.path), reactor=MemoryReactorClock())
        notes = [e for e in logged if "next-server" in e.get("log_format", "")]
        self.assertEqual(len(notes), 1)
        self.assertEqual(notes[0]["log_level"].name, "info")

    def test_bootfile(self) -> None:
        answer = self.successResultOf(ensureDeferred(self.responder.answer(
            Machine(MAC, architecture(7)), "192.168.77.1", "bootserver")))
        self.assertEqual(answer.bootfile, "shimx64.efi")

    def test_chain(self) -> None:
        self.assertEqual(self.read("shimx64.efi"), self.shim.read_bytes())
        self.assertEqual(self.read("grubx64.efi"), SHIM_GRUB.read_bytes())
        for probe in ("revocations_sku.efi", "revocations_sbat.efi", "shim_certificate_0.efi",
                      "/grub/x86_64-efi/command.lst", "/grub/x86_64-efi/fs.lst",
                      "/grub/x86_64-efi/grub.cfg"):
            self.failureResultOf(self.runtime.tftp.open(probe, PEER), FileNotFound)
        self.assertIn(b"${net_default_mac}", self.read("/grub/grub.cfg"))
        config = self.read(f"/_/grub/x86_64-efi/{MAC}.cfg").decode()
        self.assertIn("'console=ttyS0'; then", config)

    def test_http_boot_programs(self) -> None:
        programs = set(self.runtime.parts.current.programs)
        self.assertEqual(programs >= {"shimx64.efi", "grubx64.efi"}, True)


class ChainedDirectoryTests(unittest.TestCase):
    def setUp(self) -> None:
        self.base = Path(self.mktemp()).absolute()
        (self.base / "boot" / "grub" / "x86_64-efi").mkdir(parents=True)
        (self.base / "boot" / "shimx64.efi").write_bytes(b"shim")
        (self.base / "boot" / "grubx64.efi").write_bytes(b"grub")
        (self.base / "boot" / "grub" / "grub.cfg").write_bytes(b"cfg")
        (self.base / "boot" / "grub" / "x86_64-efi" / "normal.mod").write_bytes(b"mod")
        (self.base / "secret").write_bytes(b"secret")
        (self.base / "boot" / "out").symlink_to(self.base / "secret")
        self.shim = str(self.base / "boot" / "shimx64.efi")
        self.source = DirectorySource({firmware_directory(self.shim): Path(self.shim).parent})

    def read(self, name: str) -> bytes:
        readable = self.successResultOf(self.source.open(name, PEER))
        try:
            return bytes(readable.read(0, 1000))
        finally:
            readable.close()

    def test_siblings(self) -> None:
        name = firmware_name(self.shim)
        prefix = firmware_directory(self.shim)
        self.assertEqual(name, f"{prefix}/shimx64.efi")
        self.assertRegex(prefix, r"^chain-[0-9a-f]{12}$")
        self.assertEqual(self.read(name), b"shim")
        self.assertEqual(self.read(f"{prefix}/grubx64.efi"), b"grub")
        self.assertEqual(self.read(f"/{prefix}/grub/grub.cfg"), b"cfg")
        self.assertEqual(self.read(f"{prefix}\\grub\\x86_64-efi\\normal.mod"), b"mod")

    def test_same_directory_same_name(self) -> None:
        self.assertEqual(firmware_directory(self.shim),
                         firmware_directory(str(self.base / "boot" / "grubx64.efi")))
        self.assertNotEqual(firmware_directory(self.shim),
                            firmware_directory(str(self.base / "secret")))

    def test_never_outside(self) -> None:
        prefix = firmware_directory(self.shim)
        self.failureResultOf(self.source.open(f"{prefix}/../secret", PEER), AccessViolation)
        self.failureResultOf(self.source.open(f"{prefix}/out", PEER), AccessViolation)
        self.failureResultOf(self.source.open(f"{prefix}/grub", PEER), AccessViolation)
        self.failureResultOf(self.source.open(f"{prefix}/missing", PEER), FileNotFound)
        self.failureResultOf(self.source.open(prefix, PEER), FileNotFound)
        self.failureResultOf(self.source.open("chain-000000000000/shimx64.efi", PEER),
                             FileNotFound)
