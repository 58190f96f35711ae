# -*- test-case-name: tests.test_lab -*-
"""
Prove the lab works without pxed: boot a client from a reference PXE server.

The reference server is dnsmasq in ProxyDHCP mode (PXE services + TFTP for the
iPXE binaries) plus Python's http.server for the iPXE script, kernel and
initrd, all in the srv namespace.  If this passes and the pxed end-to-end test
fails, the fault is pxed's, not the lab's: the pxed test swaps exactly this
server for C{twistd pxed} and keeps everything else.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from pxed.lab.netns import Lab
from pxed.lab.payload import MARKER, build_initrd, find_kernel
from pxed.lab.procs import dnsmasq_argv, tail

HTTP_PORT = 8080
IPXE_DIR = Path("/usr/lib/ipxe")
IPXE_FILES = ("undionly.kpxe", "ipxe.pxe", "ipxe.efi", "snponly.efi")


@dataclass
class Result:
    """What a selftest run found; C{seconds} is from QEMU start to the marker."""

    ok: bool
    firmware: str
    seconds: float
    token: str
    workdir: Path


def random_mac() -> str:
    """A MAC in QEMU's 52:54:00 range, unique enough that leases never clash."""
    return "52:54:00:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(3))


def ipxe_script(server: str, port: int, token: str) -> str:
    """
    The iPXE script served over HTTP.

    C{initrd=initrd.img} on the command line is what makes a UEFI (EFI stub)
    kernel find the initrd; it is harmless on BIOS.
    """
    base = f"http://{server}:{port}"
    return (
        "#!ipxe\n"
        f"kernel {base}/vmlinuz initrd=initrd.img console=ttyS0,115200 panic=-1 "
        f"pxed.token={token}\n"
        f"initrd --name initrd.img {base}/initrd.img\n"
        "boot\n"
    )


def prepare_roots(workdir: Path, token: str) -> tuple[Path, Path]:
    """Fill workdir/tftp with iPXE binaries and workdir/http with script + payload."""
    tftp = workdir / "tftp"
    http = workdir / "http"
    for d in (tftp, http):
        d.mkdir(parents=True, exist_ok=True)
    for name in IPXE_FILES:
        source = IPXE_DIR / name
        if not source.is_file():
            raise FileNotFoundError(f"{source} missing: install the Debian package ipxe")
        shutil.copyfile(source, tftp / name)
    shutil.copyfile(find_kernel(), http / "vmlinuz")
    build_initrd(http / "initrd.img")
    (http / "boot.ipxe").write_text(ipxe_script(Lab.SERVER_IP, HTTP_PORT, token))
    return tftp, http


def proxy_dnsmasq_argv(workdir: Path, tftp_root: Path) -> list[str]:
    """
    dnsmasq as a reference ProxyDHCP + PXE boot server + TFTP server.

    Firmware PXE (no user class) is sent an iPXE binary by TFTP; iPXE (user
    class "iPXE") is sent the HTTP URL of the script, which also stops the
    chain-loading loop.  x86-64_EFI covers arch 7; BC_EFI covers arch 9.
    """
    script = f"http://{Lab.SERVER_IP}:{HTTP_PORT}/boot.ipxe"
    argv = dnsmasq_argv(
        f"--interface={Lab.SERVER_IFACE}",
        f"--dhcp-range={Lab.SERVER_IP.rsplit('.', 1)[0]}.0,proxy",
        "--dhcp-userclass=set:ipxe,iPXE",
        "--enable-tftp",
        f"--tftp-root={tftp_root}",
        "--log-dhcp",
        f"--log-facility={workdir / 'dnsmasq-proxy.log'}",
        f"--pid-file={workdir / 'dnsmasq-proxy.pid'}",
        f"--dhcp-leasefile={workdir / 'dnsmasq-proxy.leases'}",
    )
    for csa, binary in (("x86PC", "undionly.kpxe"), ("x86-64_EFI", "ipxe.efi"),
                        ("BC_EFI", "ipxe.efi")):  # fmt: skip
        argv.append(f"--pxe-service=tag:!ipxe,{csa},boot,{binary}")
    # For iPXE a plain boot file: dnsmasq then puts the URL straight into the
    # proxy offer (discovery control 8) instead of a one-item PXE menu, which
    # would send iPXE through an extra boot server (4011) round trip.
    argv.append(f"--dhcp-boot=tag:ipxe,{script},,{Lab.SERVER_IP}")
    return argv


def start_reference_server(lab: Lab, tftp: Path, http: Path) -> None:
    """Start dnsmasq-proxy and http.server in the srv namespace; wait until both listen."""
    (lab.workdir / "dnsmasq-proxy.log").unlink(missing_ok=True)  # dnsmasq appends
    proxy = lab.spawn_in_server(
        proxy_dnsmasq_argv(lab.workdir, tftp), lab.workdir / "dnsmasq-proxy.out"
    )
    web = lab.spawn_in_server(
        [sys.executable, "-m", "http.server", "--bind", Lab.SERVER_IP,
         "--directory", str(http), str(HTTP_PORT)],
        lab.workdir / "http.log",
        env={"PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    for proc, port, udp, what in (
        (proxy, 67, True, "dnsmasq proxy DHCP"),
        (proxy, 69, True, "dnsmasq TFTP"),
        (web, HTTP_PORT, False, "http.server"),
    ):
        if not lab.wait_listening(lab.srv, port, udp, 15, proc):
            raise RuntimeError(f"{what} is not listening on port {port}")


def pcap_summary(pcap: Path, limit: int = 60) -> str:
    """DHCP/TFTP-control/HTTP-request lines of a capture, read offline with tshark."""
    if shutil.which("tshark") is None or not pcap.exists():
        return "(no tshark or no pcap)"
    display = "dhcp or (tftp and tftp.opcode != 3 and tftp.opcode != 4) or http.request"
    try:
        out = subprocess.run(
            ["tshark", "-n", "-r", str(pcap), "-Y", display],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return "(tshark timed out)"
    lines = out.stdout.splitlines()
    more = f"\n... {len(lines) - limit} more" if len(lines) > limit else ""
    return "\n".join(lines[:limit]) + more


def diagnose(workdir: Path, serial: Path, pcap: Path) -> str:
    """A failure report: the tails of every log, and where the pcap is."""
    parts = []
    for title, path, n in (
        ("serial console", serial, 40),
        ("qemu", serial.with_name(serial.name + ".qemu.log"), 10),
        ("dnsmasq proxy", workdir / "dnsmasq-proxy.log", 40),
        ("dnsmasq router", workdir / "dnsmasq-router.log", 20),
        ("http.server", workdir / "http.log", 10),
    ):
        parts.append(f"--- {title}: {path}\n{tail(path, n)}")
    parts.append(f"--- capture: {pcap}\n{pcap_summary(pcap)}")
    return "\n".join(parts)


def run_selftest(
    firmware: str, workdir: Path, timeout: float = 240.0, ipv6_ra: bool = False
) -> Result:
    """
    Boot one client of the given firmware from the reference server.

    Passes when the serial console shows L{MARKER} followed by this run's
    random token.  Logs and the pcap stay in C{workdir}.
    """
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(8)
    tftp, http = prepare_roots(workdir, token)
    serial = workdir / f"serial-{firmware}.log"
    needle = (MARKER + token).encode()
    with Lab(workdir) as lab:
        print(f"lab {lab.name}: namespaces {lab.lan} {lab.rtr} {lab.srv}")
        lab.start_router(ipv6_ra=ipv6_ra)
        pcap = lab.start_capture()
        start_reference_server(lab, tftp, http)
        mac = random_mac()
        started = time.monotonic()
        qemu = lab.boot(firmware, serial, mac)
        print(f"booting {firmware} client {mac} (qemu pid {qemu.pid}), up to {timeout:.0f} s")
        ok = lab.wait_for(serial, needle, timeout, qemu)
        seconds = time.monotonic() - started
        if ok:
            # /init powers off right after the marker; let QEMU exit by itself.
            for _ in range(50):
                if qemu.poll() is not None:
                    break
                time.sleep(0.2)
    # Diagnose after close(): dumpcap has flushed and finished the pcap by now.
    if ok:
        print(f"PASS {firmware}: marker with token {token} after {seconds:.1f} s")
        print(pcap_summary(pcap, limit=40))
    else:
        print(f"FAIL {firmware} after {seconds:.1f} s\n{diagnose(workdir, serial, pcap)}")
    print(f"logs and pcap in {workdir}")
    return Result(ok, firmware, seconds, token, workdir)
