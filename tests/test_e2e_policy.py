"""
End-to-end boots through the boot policy: real firmware in QEMU, a real
C{twistd pxed} and the LAN's own DHCP server, in network namespaces of
their own (see L{pxed.lab.netns.Lab}).

  - an C{ipxe} rule (a templated script) marked C{once}, then C{local}:
    the machine boots the script's kernel, its beacon sets the flag in the
    state file, and its next boot is sent to the local disk;
  - a C{chain} rule for iPXE: a second iPXE script, served by pxed, that
    loads its kernel from an exported directory;
  - a C{chain} rule for UEFI firmware: EDK2 fetches the chained program
    by TFTP under its own name, and that program's DHCP is answered by the
    next rule;
  - a C{linux} rule marked C{once}, then C{local}, through Secure Boot's
    shim and GRUB: GRUB boots the kernel with pxed's configuration, its
    fetch of the beacon sets the flag, and the next boot gets GRUB's
    local-disk configuration.

These need root, QEMU and the Debian packages that C{scripts/setup}
installs, and fail (never skip) without them.  On failure the serial
logs, the capture and pxed's log stay in the test's folder.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from twisted.trial import unittest

from pxed.lab.demo import start_pxed
from pxed.lab.netns import Lab, tail
from pxed.lab.payload import MARKER, build_initrd, find_kernel
from tests.e2e import require_lab

BOOT_TIMEOUT = 240.0


@dataclass
class Scenario:
    """
    One lab, one pxed, and the boots of one machine in a row, each until
    its needle shows on the serial console.
    """

    workdir: Path
    firmware: str
    mac: str
    token: str = field(default_factory=lambda: secrets.token_hex(8))
    seconds: list[float] = field(default_factory=list)

    @property
    def marker(self) -> bytes:
        return f"{MARKER}{self.token}".encode()

    def payload(self) -> tuple[Path, Path]:
        self.workdir.mkdir(parents=True, exist_ok=True)
        return find_kernel(), build_initrd(self.workdir / "initrd.gz")

    def run(self, config: str, needles: list[bytes],
            router: tuple[str, ...] = ()) -> tuple[list[bool], str]:
        self.workdir.mkdir(parents=True, exist_ok=True)
        path = self.workdir / "pxed.yaml"
        path.write_text(config)
        pxed_log = self.workdir / "pxed.log"
        found = []
        with Lab(self.workdir) as lab:
            lab.start_router(ipv6_ra=True, extra=router)
            pxed = start_pxed(lab, path, pxed_log)
            lab.start_capture()
            for n, needle in enumerate(needles):
                serial = self.workdir / f"serial-{n}.log"
                started = time.monotonic()
                qemu = lab.boot(self.firmware, serial, self.mac)
                ok = lab.wait_for(serial, needle, BOOT_TIMEOUT, proc=qemu)
                self.seconds.append(time.monotonic() - started)
                found.append(ok)
                if qemu.poll() is None:
                    try:  # the payload powers off; anything else is stopped
                        qemu.wait(timeout=20)
                    except subprocess.TimeoutExpired:
                        qemu.terminate()
                        qemu.wait(timeout=20)
                if not ok:
                    break
            assert pxed.poll() is None, f"pxed exited:\n{tail(pxed_log, 40)}"
        return found, pxed_log.read_text(errors="replace")

    def explain(self, n: int) -> str:
        return (f"kept in {self.workdir}\n--- serial {n} (tail)\n"
                f"{tail(self.workdir / f'serial-{n}.log', 30)}\n--- pxed (tail)\n"
                f"{tail(self.workdir / 'pxed.log', 40)}")


def header() -> str:
    return "server:\n  ports: {dhcp: 67, pxe: 4011, tftp: 69, http: 80}\n"


class PolicyBootTests(unittest.TestCase):
    def scenario(self, firmware: str, mac: str) -> Scenario:
        require_lab()
        return Scenario(Path(self.mktemp()).resolve(), firmware, mac)

    def done(self, s: Scenario, found: list[bool], expected: int) -> None:
        for n, ok in enumerate(found):
            if not ok:
                self.fail(f"{s.firmware} boot {n} did not reach its marker; {s.explain(n)}")
        self.assertEqual(len(found), expected)
        (s.workdir / "boot.pcapng").unlink(missing_ok=True)  # kept only on failure

    def test_ipxe_once_then_local(self) -> None:
        """
        SeaBIOS + iPXE ROM: an C{ipxe} rule marked C{once} boots the
        payload; after its beacon, the same machine is sent to its disk.
        """
        s = self.scenario("bios", "52:54:00:77:05:10")
        kernel, initrd = s.payload()
        state = s.workdir / "state.json"
        script = (
            "#!ipxe\n"
            "echo pxed ipxe rule for {{ mac }} ({{ arch }}) host {{ hostname }}\n"
            f"kernel {{{{ url('{kernel}') }}}} console=ttyS0,115200 panic=-1 "
            f"pxed.token={s.token} host={{{{ hostname }}}}\n"
            f"initrd {{{{ url('{initrd}') }}}}\n"
            "{{ beacon }}\n"
            "boot\n"
        )
        config = header() + (
            "policy:\n"
            f"  state_file: {state}\n"
            f'  hostnames: {{"{s.mac}": lab-one}}\n'
            "  rules:\n"
            "    - name: install\n"
            f'      match: {{mac: "{s.mac}", firmware: bios}}\n'
            "      once: true\n"
            f"      ipxe: {json.dumps(script)}\n"
            "    - name: disk\n"
            '      match: {mac: "52:54:00:77:05:*"}\n'
            "      local: true\n"
        )
        found, log = s.run(config, [s.marker, b"pxed: booting from the local disk"])
        self.done(s, found, 2)
        self.assertIn(f"{s.mac}: served iPXE script (IPXEScript from install)", log)
        self.assertIn(f"{s.mac}: booted once-rule install", log)
        self.assertIn(f"{s.mac}: served iPXE script (LocalBoot from disk)", log)
        self.assertEqual(json.loads(state.read_text())["once"], {s.mac: ["install"]})
        serial = (s.workdir / "serial-0.log").read_text(errors="replace")
        self.assertIn(f"pxed ipxe rule for {s.mac} (x86-bios) host lab-one", serial)
        print(f"\n  ipxe+once boot {s.seconds[0]:.1f} s, local boot {s.seconds[1]:.1f} s")

    def test_grub_once_then_local(self) -> None:
        """
        OVMF with Secure Boot, through Debian's signed shim and GRUB: a
        C{linux} rule marked C{once} boots the signed kernel with the
        configuration pxed writes for GRUB; GRUB's fetch of the boot's
        beacon ends it, so the next boot of the same machine gets the
        local-disk configuration, in GRUB's form.
        """
        s = self.scenario("uefi-sb", "52:54:00:77:05:30")
        kernel, initrd = s.payload()
        state = s.workdir / "state.json"
        config = header() + (
            "bootloaders: {x64-uefi: shim}\n"
            "policy:\n"
            f"  state_file: {state}\n"
            "  rules:\n"
            "    - name: install\n"
            f'      match: {{mac: "{s.mac}"}}\n'
            "      once: true\n"
            "      linux:\n"
            f"        kernel: {kernel}\n"
            f"        initrd: [{initrd}]\n"
            f'        cmdline: "console=ttyS0,115200 panic=-1 pxed.token={s.token}"\n'
            "    - name: disk\n"
            f'      match: {{mac: "{s.mac}"}}\n'
            "      local: true\n"
        )
        found, log = s.run(config, [s.marker, b"pxed: booting from the local disk"],
                           router=(f"--dhcp-boot=,,{Lab.SERVER_IP}",))
        self.done(s, found, 2)
        self.assertIn(f"{s.mac}: booted once-rule install", log)
        self.assertEqual(json.loads(state.read_text())["once"], {s.mac: ["install"]})
        first = (s.workdir / "serial-0.log").read_text(errors="replace")
        self.assertIn("Secure boot enabled", first)
        second = (s.workdir / "serial-1.log").read_text(errors="replace")
        self.assertNotIn(s.marker.decode(), second)
        print(f"\n  GRUB once boot {s.seconds[0]:.1f} s, local {s.seconds[1]:.1f} s")

    def test_chain_ipxe_script_with_export(self) -> None:
        """
        SeaBIOS + iPXE ROM: a C{chain} rule hands iPXE a second script (a
        plain file pxed serves), which loads the payload from an export.
        """
        s = self.scenario("bios", "52:54:00:77:05:20")
        kernel, initrd = s.payload()
        export = s.workdir / "export"
        export.mkdir()
        shutil.copy(kernel, export / "vmlinuz")
        shutil.copy(initrd, export / "initrd.gz")
        second = s.workdir / "second.ipxe"
        base = f"http://{Lab.SERVER_IP}/_/export/lab"
        second.write_text(
            "#!ipxe\n"
            "echo pxed chained script\n"
            f"kernel {base}/vmlinuz console=ttyS0,115200 panic=-1 pxed.token={s.token}\n"
            f"initrd {base}/initrd.gz\n"
            "boot\n")
        config = header() + (
            "policy:\n"
            f"  exports: {{lab: {export}}}\n"
            "  rules:\n"
            "    - name: chained\n"
            f'      match: {{mac: "{s.mac}"}}\n'
            f"      chain: {second}\n"
        )
        found, log = s.run(config, [s.marker])
        self.done(s, found, 1)
        self.assertIn(f"{s.mac}: served iPXE script (Chain from chained)", log)
        self.assertIn(f"{s.mac}: served exported file vmlinuz, ", log)
        self.assertIn(f"{s.mac}: served chained program {second.name}, ", log)
        print(f"\n  chain to a second script: {s.seconds[0]:.1f} s")

    def test_chain_uefi_by_tftp(self) -> None:
        """
        OVMF with EDK2's PXE: a C{chain} rule for the firmware names a file
        of its own, which EDK2 fetches by TFTP (here a copy of iPXE); that
        program's own DHCP is iPXE's, which the next rule boots into Linux.
        """
        s = self.scenario("uefi", "52:54:00:77:05:30")
        kernel, initrd = s.payload()
        program = s.workdir / "chained" / "snponly.efi"
        program.parent.mkdir()
        shutil.copy("/usr/lib/ipxe/snponly.efi", program)
        config = header() + (
            "policy:\n"
            "  rules:\n"
            "    - name: linux-for-ipxe\n"
            f'      match: {{mac: "{s.mac}", user_class: iPXE}}\n'
            "      linux:\n"
            f"        kernel: {kernel}\n"
            f"        initrd: [{initrd}]\n"
            f'        cmdline: "console=ttyS0,115200 panic=-1 pxed.token={s.token}"\n'
            "    - name: chain-firmware\n"
            f'      match: {{mac: "{s.mac}", firmware: uefi}}\n'
            f"      chain: {program}\n"
        )
        found, log = s.run(config, [s.marker])
        self.done(s, found, 1)
        from pxed.policy.actions import firmware_name

        name = firmware_name(str(program))
        self.assertIn(f"{s.mac}: bootserver x64-uefi -> {name}", log)
        self.assertIn(f"{s.mac}: served iPXE script (BootSpec from linux-for-ipxe)", log)
        print(f"\n  UEFI chain by TFTP: {s.seconds[0]:.1f} s")
