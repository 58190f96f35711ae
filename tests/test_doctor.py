"""
Tests for C{pxed doctor}: its packet and findings on their own, then the
whole command in network namespaces (L{pxed.lab.netns}) beside a real
C{twistd pxed}, the LAN's DHCP server and a second ProxyDHCP (dnsmasq in
proxy mode) that the doctor must name as what breaks BIOS and UEFI boots.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from twisted.trial import unittest

from pxed.config import parse_config
from pxed.dhcp.packet import BOOTREPLY, DHCPPacket, MessageType, Option, decode, encode
from pxed.doctor import offer_findings
from pxed.doctor.checks import BIOS, HTTP_BOOT, IPXE, UEFI, file_findings, port_findings
from pxed.doctor.probe import _answer, pxe_discover
from pxed.lab.demo import start_pxed
from pxed.lab.netns import Lab
from pxed.lab.procs import dnsmasq_argv
from pxed.ports import PortHolder

REPO = Path(__file__).resolve().parents[1]
MAC = bytes.fromhex("525400123456")


def config(base: Path, **server: object) -> object:
    for name in ("undionly.kpxe", "snponly.efi", "vmlinuz"):
        (base / name).write_bytes(b"x")
    return parse_config({
        "server": {"address": "192.0.2.1", **server},
        "bootloaders": {"x86-bios": str(base / "undionly.kpxe"),
                        "x64-uefi": str(base / "snponly.efi")},
        "boot": {"default": {"kernel": str(base / "vmlinuz")}},
    }, "test.yaml")


class PacketTests(unittest.TestCase):
    def test_discover_is_pxe_firmwares(self) -> None:
        packet = decode(encode(pxe_discover(MAC, 7, 0x1234)))
        self.assertEqual(packet.message_type, MessageType.DISCOVER)
        self.assertEqual(packet.mac, "52:54:00:12:34:56")
        self.assertEqual(packet.options[Option.CLIENT_ARCH], b"\x00\x07")
        self.assertEqual(packet.options[Option.VENDOR_CLASS], b"PXEClient:Arch:00007:UNDI:002001")
        self.assertTrue(packet.broadcast)

    def test_answer_read_from_an_offer(self) -> None:
        offer = DHCPPacket(op=BOOTREPLY, xid=1, siaddr="192.0.2.9", file=b"rogue.0",
                           options={Option.MESSAGE_TYPE: bytes([MessageType.OFFER]),
                                    Option.SERVER_ID: bytes([192, 0, 2, 9]),
                                    Option.VENDOR_CLASS: b"PXEClient"})
        answer = _answer(0, "192.0.2.9", decode(encode(offer)), b"")
        self.assertEqual((answer.proxy, answer.boot_file, answer.next_server, answer.pxe_client),
                         (True, "rogue.0", "192.0.2.9", True))


class FindingTests(unittest.TestCase):
    def setUp(self) -> None:
        self.base = Path(self.mktemp()).absolute()
        self.base.mkdir()
        self.config = config(self.base, ports={"dhcp": 67, "pxe": 4011, "tftp": 69, "http": 80})

    def test_ports(self) -> None:
        me = PortHolder(os.getpid(), "trial")  # its command line names no pxed

        def holders(kind: str, port: int) -> list[PortHolder]:
            return {67: [me], 69: []}.get(port, [])

        findings = {f.topic: f for f in port_findings(self.config, holders)}  # type: ignore
        dhcp = findings["UDP 67 (server.ports.dhcp)"]
        self.assertEqual(dhcp.level, "fail")
        self.assertIn(f"held by trial (pid {os.getpid()})", dhcp.message)
        self.assertEqual(dhcp.breaks, (BIOS, UEFI, HTTP_BOOT, IPXE))
        tftp = findings["UDP 69 (server.ports.tftp)"]
        self.assertEqual(tftp.level, "warn")  # pxed can have it; it is not running
        self.assertIn("free: nothing listens", tftp.message)

    def test_files(self) -> None:
        os.chmod(self.base / "snponly.efi", 0o600)
        findings = {f.topic: f for f in file_findings(self.config)}  # type: ignore[arg-type]
        self.assertEqual(findings["bootloaders.x64-uefi"].level, "warn")
        self.assertIn("dynamic user", findings["bootloaders.x64-uefi"].message)
        (self.base / "undionly.kpxe").unlink()
        findings = {f.topic: f for f in file_findings(self.config)}  # type: ignore[arg-type]
        self.assertEqual(findings["bootloaders.x86-bios"].level, "fail")
        self.assertEqual(findings["bootloaders.x86-bios"].breaks, (BIOS,))

    def test_offers(self) -> None:
        """
        Silence from pxed where its policy boots the machine, another boot
        server, and no DHCP server: each breaks the architecture it
        concerns; a plain DHCP server breaks nothing.
        """
        dhcp = _answer(0, "192.0.2.254", decode(encode(DHCPPacket(
            op=BOOTREPLY, yiaddr="192.0.2.100",
            options={Option.MESSAGE_TYPE: bytes([MessageType.OFFER])}))), b"")
        findings = list(offer_findings(self.config, [dhcp], "52:54:00:12:34:56",  # type: ignore
                                       pxed_running=True))
        levels = [(f.level, f.breaks, f.message.split(":")[0]) for f in findings]
        self.assertIn(("fail", (BIOS,), "this pxed did not answer a BIOS DISCOVER from "
                                        "52"), levels)
        self.assertIn(("ok", (), "192.0.2.254"), levels)
        self.assertIn(("fail", (UEFI,), "no DHCP server offered an address"), levels)


class NamespaceTests(unittest.TestCase):
    """
    The doctor run on the pxed host of a lab LAN, as an operator would.
    Traffic stays inside the lab's namespaces.
    """

    timeout = 240

    def setUp(self) -> None:
        if os.geteuid() != 0:
            raise AssertionError("the doctor test needs root (network namespaces)")
        if shutil.which("dnsmasq") is None:
            raise AssertionError("dnsmasq is missing: run scripts/setup")

    def doctor(self, lab: Lab, config: Path) -> tuple[int, str]:
        argv = ["ip", "netns", "exec", lab.srv, sys.executable, "-m", "pxed.cli", "doctor",
                "--config", str(config), "--wait", "2"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=90, cwd=REPO,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
        return done.returncode, done.stdout + done.stderr

    def test_second_proxydhcp(self) -> None:
        work = Path(self.mktemp()).absolute()
        work.mkdir()
        (work / "vmlinuz").write_bytes(b"kernel")
        path = work / "pxed.yaml"
        path.write_text("server:\n  address: 192.168.77.1\n  interface: eth0\n"
                        f"boot:\n  default: {{kernel: {work}/vmlinuz}}\n")
        with Lab(work / "lab") as lab:
            lab.start_router()
            start_pxed(lab, path, work / "pxed.log")
            code, report = self.doctor(lab, path)
            self.assertEqual(code, 0, report)
            self.assertIn("BIOS  192.168.77.1    this pxed ProxyDHCP, boot file undionly.kpxe",
                          report)
            self.assertIn("UEFI  192.168.77.1    this pxed ProxyDHCP, boot file snponly.efi",
                          report)
            self.assertIn("HTTP  192.168.77.1    this pxed ProxyDHCP, boot file "
                          "http://192.168.77.1/_/boot/snponly.efi", report)
            self.assertIn("192.168.77.254: DHCP (offers 192.168.77.", report)
            self.assertIn("OK    TFTP undionly.kpxe: 192.168.77.1:69 sends it", report)
            self.assertIn("OK    HTTP: http://192.168.77.1/ answers", report)
            self.assertIn("OK    boot server 192.168.77.1:4011: answers UEFI firmware with "
                          "snponly.efi", report)
            self.assertIn("no problems found", report)

            # A second ProxyDHCP on the LAN: dnsmasq in proxy mode.
            lab.run_in(lab.lan, ["ip", "addr", "add", "192.168.77.250/24", "dev", "br0"])
            rogue = dnsmasq_argv(
                "--interface=br0", "--dhcp-range=192.168.77.0,proxy,255.255.255.0",
                '--pxe-service=x86PC,"other",other', '--pxe-service=BC_EFI,"other",other-efi',
                f"--log-facility={work}/rogue.log")
            proc = lab.spawn_in(lab.lan, rogue, work / "rogue.out", label="rogue")
            self.assertTrue(lab.wait_listening(lab.lan, 67, udp=True, timeout=15, proc=proc))
            code, report = self.doctor(lab, path)
        self.assertEqual(code, 1, report)
        for arch, breaks in (("BIOS", "BIOS PXE"), ("UEFI", "UEFI PXE")):
            self.assertIn(f"{arch}  192.168.77.250            ProxyDHCP", report)
            line = next(line for line in report.splitlines()
                        if f"{arch} offers: another boot server answers: 192.168.77.250" in line)
            following = report.splitlines()[report.splitlines().index(line) + 1]
            self.assertTrue(line.startswith("  FAIL"), line)
            self.assertEqual(following.strip(), f"breaks: {breaks}")
        self.assertIn("2 problem(s); would break: BIOS PXE, UEFI PXE", report)
        (work / "doctor-report.txt").write_text(report)
