"""
Tests for C{pxed doctor}: its packet and findings on their own, then the
whole command in network namespaces (L{pxed.lab.netns}) beside a real
C{twistd pxed}, the LAN's DHCP server and a second ProxyDHCP (dnsmasq in
proxy mode) that the doctor must name as what breaks BIOS and UEFI boots;
and pxed as the DHCP server beside that LAN's own, which the doctor must
name as a second DHCP server.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
from twisted.trial import unittest

from pxed.config import parse_config
from pxed.dhcp.packet import BOOTREPLY, DHCPPacket, MessageType, Option, decode, encode
from pxed.doctor import offer_findings
from pxed.doctor.checks import (
    BIOS,
    HTTP_BOOT,
    IPXE,
    ONCE,
    UEFI,
    Finding,
    file_findings,
    port_findings,
    state_findings,
)
from pxed.doctor.probe import _answer, pxe_discover
from pxed.lab.demo import start_pxed
from pxed.lab.netns import Lab
from pxed.lab.procs import dnsmasq_argv
from pxed.pg.schema import SCHEMA_VERSION, migrate
from pxed.ports import PortHolder
from pxed.testing.postgres import free_port, shared_server

REPO = Path(__file__).resolve().parents[1]
MAC = bytes.fromhex("525400123456")


def config(base: Path, dhcp: dict[str, object] | None = None, **server: object) -> object:
    for name in ("undionly.kpxe", "snponly.efi", "vmlinuz"):
        (base / name).write_bytes(b"x")
    return parse_config({
        "server": {"address": "192.0.2.1", **server},
        "bootloaders": {"x86-bios": str(base / "undionly.kpxe"),
                        "x64-uefi": str(base / "snponly.efi")},
        "boot": {"default": {"kernel": str(base / "vmlinuz")}},
        **({"dhcp": dhcp} if dhcp is not None else {}),
    }, "test.yaml")


def offer(source: str, arch: int, yiaddr: str = "0.0.0.0", boot_file: bytes = b"") -> object:
    """
    The doctor's reading of one server's OFFER to its DISCOVER as C{arch}.
    """
    return _answer(arch, source, decode(encode(DHCPPacket(
        op=BOOTREPLY, yiaddr=yiaddr, file=boot_file,
        options={Option.MESSAGE_TYPE: bytes([MessageType.OFFER]),
                 Option.SERVER_ID: bytes(int(part) for part in source.split("."))}))), b"")


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

    def test_second_dhcp_server_in_full_mode(self) -> None:
        """
        With C{dhcp.mode: full} pxed is the LAN's DHCP server: another
        server offering addresses (with or without a boot file) is a
        second DHCP server, named as breaking the boots it answers; the
        same answers in proxy mode are the LAN's DHCP server, as wanted.
        """
        full = config(self.base, dhcp={
            "mode": "full", "range": "192.0.2.100-192.0.2.110", "ping": False,
            "lease_file": str(self.base / "leases.json")},
            ports={"dhcp": 67, "pxe": 4011, "tftp": 69, "http": 80})
        pxed = offer("192.0.2.1", 0, "192.0.2.100", b"undionly.kpxe")
        pxed.this_host = True  # type: ignore[attr-defined]
        answers = [pxed, offer("192.0.2.254", 0, "192.0.2.77"),
                   offer("192.0.2.253", 7, "192.0.2.78", b"other.efi")]
        mac = "52:54:00:12:34:56"
        findings = list(offer_findings(full, answers, mac, pxed_running=True))  # type: ignore
        failures = [(f.breaks, f.message) for f in findings if f.level == "fail"]
        second = [(breaks, message) for breaks, message in failures
                  if message.startswith("another DHCP server offers addresses")]
        self.assertEqual([(breaks, message.split(": ")[1]) for breaks, message in second],
                         [((BIOS,), "192.0.2.254"), ((UEFI,), "192.0.2.253")])
        self.assertIn("DHCP (offers 192.0.2.77), no boot file; pxed is this LAN's DHCP "
                      "server (dhcp.mode: full)", second[0][1])
        self.assertIn("boot file other.efi", second[1][1])
        self.assertFalse([f for f in findings if "the LAN's DHCP server)" in f.message])
        self.assertIn(((HTTP_BOOT,), "no DHCP server offered an address: pxed is the LAN's "
                       "DHCP server (dhcp.mode: full) and offered none"), failures)
        self.assertIn(("ok", "BIOS offers", "this pxed answers: DHCP (offers 192.0.2.100), "
                       "boot file undionly.kpxe"), [(f.level, f.topic, f.message)
                                                   for f in findings])

        # Proxy mode: the same plain DHCP server is the LAN's, and fine.
        findings = list(offer_findings(self.config, answers[1:2], mac,  # type: ignore
                                       pxed_running=True))
        self.assertIn(("ok", "192.0.2.254: DHCP (offers 192.0.2.77), no boot file (the LAN's "
                       "DHCP server)"), [(f.level, f.message) for f in findings])


class DatabaseTests(unittest.TestCase):
    """
    The shared database's finding, against a PostgreSQL server of the
    test's own (L{pxed.testing.postgres}).
    """

    def findings(self, url: str) -> list[Finding]:
        base = Path(self.mktemp()).absolute()
        base.mkdir()
        for name in ("undionly.kpxe", "snponly.efi", "vmlinuz"):
            (base / name).write_bytes(b"x")
        conf = parse_config({"bootloaders": {"x86-bios": str(base / "undionly.kpxe")},
                             "boot": {"default": {"kernel": str(base / "vmlinuz")}},
                             "state": {"url": url}}, "test.yaml")
        return list(state_findings(conf))

    def test_answers(self) -> None:
        """
        A fresh database answers (pxed will make its tables); a migrated
        one answers at this pxed's schema version; one from a newer pxed
        is a failure of every boot.
        """
        url = shared_server().create_database(f"d{uuid.uuid4().hex[:12]}")
        [fresh] = self.findings(url)
        self.assertEqual(fresh.level, "ok")
        self.assertIn(f"from version 0 to {SCHEMA_VERSION}", fresh.message)
        with psycopg.connect(url, autocommit=True) as conn:
            migrate(conn)
        [current] = self.findings(url)
        self.assertEqual((current.level, current.message),
                         ("ok", f"answers, schema version {SCHEMA_VERSION}"))
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("UPDATE pxed_schema SET version = %s", (SCHEMA_VERSION + 1,))
        [newer] = self.findings(url)
        self.assertEqual(newer.level, "fail")
        self.assertIn("upgrade pxed", newer.message)

    def test_does_not_answer(self) -> None:
        """
        A database nobody listens for is a failure of 'once' installs only
        (everything else is served meanwhile), and the password never shows.
        """
        url = f"postgresql://pxed:s3cret@127.0.0.1:{free_port()}/pxed?connect_timeout=2"
        [finding] = self.findings(url)
        self.assertEqual((finding.level, finding.breaks), ("fail", (ONCE,)))
        self.assertIn("does not answer", finding.message)
        self.assertNotIn("s3cret", finding.message + finding.topic)


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

    def test_full_mode_beside_the_lans_dhcp_server(self) -> None:
        """
        pxed as the DHCP server (C{dhcp.mode: full}) on a LAN whose router
        (dnsmasq) already hands out addresses: the doctor names the router
        as a second DHCP server, breaking every kind of boot it answers.
        """
        work = Path(self.mktemp()).absolute()
        work.mkdir()
        (work / "vmlinuz").write_bytes(b"kernel")
        path = work / "pxed.yaml"
        path.write_text("server:\n  address: 192.168.77.1\n  interface: eth0\n"
                        f"boot:\n  default: {{kernel: {work}/vmlinuz}}\n"
                        "dhcp: {mode: full, range: 192.168.77.200-192.168.77.210, ping: false, "
                        f"lease_file: {work}/leases.json}}\n")
        with Lab(work / "lab") as lab:
            lab.start_router()
            start_pxed(lab, path, work / "pxed.log")
            code, report = self.doctor(lab, path)
        (work / "doctor-report.txt").write_text(report)
        self.assertEqual(code, 1, report)
        self.assertIn("BIOS  192.168.77.1    this pxed DHCP (offers 192.168.77.2", report)
        for arch, breaks in (("BIOS", "BIOS PXE"), ("UEFI", "UEFI PXE"),
                             ("HTTP", "UEFI HTTP Boot")):
            lines = report.splitlines()
            line = next((line for line in lines if f"{arch} offers: another DHCP server offers "
                         "addresses: 192.168.77.254: DHCP (offers 192.168.77." in line), None)
            self.assertIsNotNone(line, report)
            assert line is not None
            self.assertTrue(line.startswith("  FAIL"), line)
            self.assertIn("pxed is this LAN's DHCP server (dhcp.mode: full)", line)
            self.assertEqual(lines[lines.index(line) + 1].strip(), f"breaks: {breaks}")
        self.assertNotIn("(the LAN's DHCP server)", report)
        self.assertIn("3 problem(s); would break: BIOS PXE, UEFI PXE, UEFI HTTP Boot", report)
