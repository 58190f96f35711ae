# -*- test-case-name: tests.test_e2e_boot -*-
"""
pxed's main job, end to end, in the lab: a virtual machine network-boots
Linux from a real C{twistd pxed} process while the LAN's ordinary DHCP
server (dnsmasq) hands out its address.

Shared by C{python -m pxed.lab demo} (which shows the console as it goes)
and the end-to-end tests (which check the same boot silently).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from pxed.lab.netns import Lab, tail
from pxed.lab.payload import MARKER, arm64_payload, build_initrd, find_kernel

__all__ = ["PXED_PORTS", "write_pxed_config", "full_dhcp", "start_pxed", "BootRun",
           "boot_from_pxed"]

#: (port, udp) pairs pxed listens on with the lab's configuration.
PXED_PORTS = ((67, True), (4011, True), (69, True), (80, False))


def twistd() -> str:
    """
    The twistd beside the running Python, so the lab runs the pxed that is
    installed in this environment.
    """
    return str(Path(sys.executable).with_name("twistd"))


def write_pxed_config(workdir: Path, mac: str, token: str, server: str = "",
                      firmware: str = "bios", extra: str = "", cmdline: str = "",
                      kernel: Path | None = None) -> Path:
    """
    A pxed configuration that boots C{mac} into the lab payload: Debian's
    kernel and a busybox initrd that prints L{MARKER} with C{token}.  For
    an C{arm64} machine the arm64 ones, and nothing else: pxed must find
    what ARM64 needs by itself.

    @param server: more YAML lines for the C{server:} section, each
        indented by two spaces.
    @param extra: more top-level YAML sections (e.g. L{full_dhcp}).
    @param cmdline: more kernel arguments.
    @param kernel: the x86 kernel to boot instead of Debian's.
    """
    console = "ttyS0,115200"
    if firmware.startswith("arm64"):
        kernel, busybox = arm64_payload()
        initrd = build_initrd(workdir / "initrd.gz", busybox)
        console = "ttyAMA0,115200"
    else:
        kernel = kernel or find_kernel()
        initrd = build_initrd(workdir / "initrd.gz")
    config = workdir / "pxed.yaml"
    config.write_text(
        "server:\n"
        "  ports: {dhcp: 67, pxe: 4011, tftp: 69, http: 80}\n"
        f"{server}"
        "boot:\n"
        "  machines:\n"
        f'    "{mac}":\n'
        f"      kernel: {kernel}\n"
        f"      initrd: [{initrd}]\n"
        f"      cmdline: 'console={console} panic=-1 pxed.token={token}{cmdline}'\n"
        f"{extra}"
    )
    return config


def full_dhcp(workdir: Path, ping: bool = True) -> str:
    """
    The C{dhcp:} section that makes pxed the lab LAN's DHCP server, with
    the router's range and address, its leases in C{workdir}.
    """
    low, high = Lab.DHCP_RANGE
    return ("dhcp:\n"
            "  mode: full\n"
            f"  range: {low}-{high}\n"
            f"  router: {Lab.ROUTER_IP}\n"
            f"  ping: {'true' if ping else 'false'}\n"
            f"  lease_file: {workdir / 'leases.json'}\n")


def start_pxed(lab: Lab, config: Path, log: Path, timeout: float = 30.0) -> subprocess.Popen[bytes]:
    """
    Run C{twistd -n pxed --config CONFIG} on the lab's server host and wait
    until the kernel shows every port bound.
    """
    proc = lab.spawn_in_server(
        [twistd(), "--nodaemon", "--pidfile=", "--logfile=-", "pxed", "--config", str(config)],
        log,
        env={"PYTHONUNBUFFERED": "1"},
    )
    for port, udp in PXED_PORTS:
        if not lab.wait_listening(lab.srv, port, udp=udp, timeout=timeout, proc=proc):
            raise RuntimeError(f"pxed is not listening on port {port}:\n{tail(log, 40)}")
    return proc


@dataclass
class BootRun:
    firmware: str
    mac: str
    token: str
    ok: bool
    seconds: float
    serial: Path
    pxed_log: Path
    pcap: Path
    pxed_survived: bool
    #: The machine's events from pxed's JSON API after the boot (empty
    #: if pxed could not be asked).
    timeline: list[dict[str, Any]] = field(default_factory=list)


def _follow(path: Path, out: IO[str], offset: int) -> int:
    """
    Copy what was appended to C{path} since C{offset} to C{out}.
    """
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            chunk = f.read()
    except FileNotFoundError:
        return offset
    if chunk:
        out.write(chunk.decode("utf-8", "replace"))
        out.flush()
    return offset + len(chunk)


def boot_from_pxed(
    workdir: Path,
    firmware: str,
    mac: str,
    timeout: float = 300.0,
    console: IO[str] | None = None,
    ipv6_ra: bool = True,
    before_boot: object = None,
    second_lan: str | None = None,
    server: str = "",
    dhcp_server: bool = False,
    extra: str = "",
    cmdline: str = "",
    router: tuple[str, ...] = (),
    expect: bytes | None = None,
    kernel: Path | None = None,
) -> BootRun:
    """
    Build the lab, start pxed and boot one machine from it.

    @param console: if given, the serial console is copied there live.
    @param ipv6_ra: the router sends IPv6 RAs, which spares iPXE a 15 s
        wait for one (as on most real LANs).
    @param before_boot: a callable given the L{Lab} once pxed listens and
        before the machine powers on (tests send garbage here).
    @param second_lan: boot the machine on a second LAN, behind a relay
        (C{"relay"}) or with pxed multi-homed on it (C{"direct"}).
    @param server: more lines for pxed's C{server:} section.
    @param dhcp_server: pxed is the LAN's only DHCP server (L{full_dhcp});
        the router then only sends IPv6 router advertisements.
    @param extra: more top-level YAML for pxed's configuration.
    @param cmdline: more kernel arguments (each with a leading space).
    @param router: more arguments for the LAN's DHCP server (dnsmasq).
    @param expect: what ends the boot in the serial log (default: the
        payload's marker with this run's token); C{ok} says it was seen.
    @param kernel: the x86 kernel to boot instead of Debian's.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(8)
    config = write_pxed_config(workdir, mac, token, server, firmware,
                               (full_dhcp(workdir) if dhcp_server else "") + extra, cmdline,
                               kernel)
    serial = workdir / "serial.log"
    pxed_log = workdir / "pxed.log"
    needle = expect if expect is not None else f"{MARKER}{token}".encode()
    started = time.monotonic()
    with Lab(workdir, second_lan=second_lan) as lab:
        if not dhcp_server:
            lab.start_router(ipv6_ra=ipv6_ra, extra=router)
        elif ipv6_ra:
            lab.start_router(ipv6_ra=True, dhcp4=False, extra=router)
        if second_lan == "relay":
            lab.start_relay(ipv6_ra=ipv6_ra)
        pxed = start_pxed(lab, config, pxed_log)
        if callable(before_boot):
            before_boot(lab)
        pcap = lab.start_capture()
        started = time.monotonic()
        qemu = lab.boot(firmware, serial, mac)
        ok = False
        offset = 0
        deadline = started + timeout
        while time.monotonic() < deadline:
            if lab.wait_for(serial, needle, 1.0, proc=qemu):
                ok = True
                break
            if console is not None:
                offset = _follow(serial, console, offset)
            if qemu.poll() is not None:
                break
        if console is not None:
            _follow(serial, console, offset)
        survived = pxed.poll() is None
        seconds = time.monotonic() - started
        timeline: list[dict[str, Any]] = []
        if survived:
            try:
                timeline = json.loads(fetch_from_server(lab, f"/_/machines/{mac}"))["timeline"]
            except (RuntimeError, subprocess.SubprocessError, ValueError, KeyError):
                pass  # the verdict says what is missing
    return BootRun(firmware, mac, token, ok, seconds, serial, pxed_log, pcap, survived, timeline)


def fetch_from_server(lab: Lab, path: str) -> str:
    """GET pxed's C{path} from inside the server's namespace, as text."""
    script = ("import sys, urllib.request\n"
              "with urllib.request.urlopen(sys.argv[1], timeout=10) as r:\n"
              "    sys.stdout.write(r.read().decode())\n")
    return lab.run_in(lab.srv, [sys.executable, "-c", script,
                                f"http://{lab.SERVER_IP}{path}"]).stdout


def demo(firmware: str, workdir: Path, timeout: float, second_lan: str | None = None,
         dhcp_server: bool = False) -> int:
    """
    C{python -m pxed.lab demo}: boot one machine and narrate.
    """
    mac = "52:54:00:77:00:10" if firmware == "bios" else "52:54:00:77:00:20"
    print(f"pxed demo: a {firmware.upper()} machine ({mac}) network-boots Linux from pxed.")
    if dhcp_server:
        print(f"  LAN 192.168.77.0/24: pxed at {Lab.SERVER_IP} is the only DHCP server; files "
              f"in {workdir}")
    else:
        print(f"  LAN 192.168.77.0/24: dnsmasq (plain DHCP) at {Lab.ROUTER_IP}, pxed at "
              f"{Lab.SERVER_IP}; files in {workdir}")
    if second_lan is not None:
        print(f"  the machine is on a second LAN ({second_lan}): see pxed/lab/lan2.py")
    secure: dict[str, Any] = {}
    if firmware == "uefi-sb":
        # Secure Boot: Debian's signed shim, GRUB and kernel; the LAN's DHCP
        # server names pxed as next-server, which Debian's GRUB needs.
        print("  Secure Boot on (Microsoft's keys): shim -> signed GRUB -> signed kernel"
              + ("" if dhcp_server else "; the router names pxed as next-server"))
        secure = {"extra": "bootloaders: {x64-uefi: shim}\n",
                  "router": () if dhcp_server else (f"--dhcp-boot=,,{Lab.SERVER_IP}",)}
    print("---- serial console ----", flush=True)
    run = boot_from_pxed(workdir, firmware, mac, timeout, console=sys.stdout,
                         second_lan=second_lan, dhcp_server=dhcp_server, **secure)
    print("\n---- pxed's log of this boot ----")
    for line in run.pxed_log.read_text(errors="replace").splitlines():
        if "[pxed." in line or "starting on" in line:
            print(line)
    if run.ok:
        print(f"\nOK: the machine booted pxed's kernel and initrd and printed its token "
              f"{run.token} in {run.seconds:.0f} s.")
        return 0
    print(f"\nFAILED: no boot marker within {timeout:.0f} s. Serial log: {run.serial}; "
          f"capture: {run.pcap}; pxed log: {run.pxed_log}")
    return 1
