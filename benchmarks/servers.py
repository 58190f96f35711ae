# -*- test-case-name: tests.test_dhcp_benchmark -*-
"""
The servers of the boot-storm benchmark (L{benchmarks.dhcp}) and the
network namespace they run in.

pxed runs as the ProxyDHCP protocol its service builds (responder,
policy, boot log, metrics), on its packet-info port bound to 127.0.0.2 so
the simulated relay can own 127.0.0.1:67; dnsmasq runs in proxy mode with the same answer to give.
Both log to a file the way they would in production.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from pathlib import Path

from pxed.lab.procs import dnsmasq_argv as lab_dnsmasq_argv

__all__ = ["SERVER_ADDRESS", "RELAY_ADDRESS", "DHCP_PORT", "Namespace", "serve_pxed",
           "pxed_config", "dnsmasq_argv", "env"]

SERVER_ADDRESS = "127.0.0.2"
RELAY_ADDRESS = "127.0.0.1"
DHCP_PORT = 67
REPO = Path(__file__).resolve().parents[1]


def serve_pxed(config_path: str, log_path: str) -> None:
    """
    Run pxed's ProxyDHCP on SERVER_ADDRESS:67 until killed, logging every
    event from info up to C{log_path}, as C{twistd pxed} does by default.

    The protocol is the one L{pxed.service.makeBootService} builds (with
    its responder, policy, boot log, metrics and observer), listening on a
    port of its own instead of the wildcard address; the service's other
    listeners stay closed, its other services (the policy runtime) run.
    """
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner

    from pxed import logs
    from pxed.config import load_config
    from pxed.net import PacketInfoPort
    from pxed.service import makeBootService

    logs.write_to(log_path)
    globalLogBeginner.beginLoggingTo([logs.text_observer()], redirectStandardIO=False)
    logs.sole_observer()  # as twistd with pxed's --logger
    top = makeBootService(load_config(config_path), reactor=reactor)
    listeners = {"proxydhcp", "bootserver", "tftp", "http"}
    for child in top:
        if child.name not in listeners:
            child.startService()
    protocol = top.getServiceNamed("proxydhcp").protocol  # type: ignore[attr-defined]
    port = PacketInfoPort(DHCP_PORT, protocol, SERVER_ADDRESS, reactor=reactor)
    port.startListening()
    print("listening", flush=True)
    reactor.run()  # type: ignore[attr-defined]


def pxed_config(workdir: Path) -> Path:
    kernel = workdir / "vmlinuz"
    kernel.write_bytes(b"kernel")
    loaders = {}
    for slug, name in (("x86-bios", "undionly.kpxe"), ("x64-uefi", "snponly.efi")):
        (workdir / name).write_bytes(name.encode())
        loaders[slug] = workdir / name
    config = workdir / "pxed.yaml"
    config.write_text(
        "server:\n"
        "  ports: {http: 80}\n"
        "bootloaders:\n"
        f"  x86-bios: {loaders['x86-bios']}\n"
        f"  x64-uefi: {loaders['x64-uefi']}\n"
        "boot:\n"
        f"  default: {{kernel: {kernel}}}\n"
    )
    return config


def dnsmasq_argv(workdir: Path) -> list[str]:
    """
    dnsmasq as a PXE ProxyDHCP server for relayed 127.0.0.0/8 clients:
    the same answer as pxed's (a BIOS boot file), no DNS, no TFTP, its
    ordinary per-request log to a file.
    """
    return lab_dnsmasq_argv(
        "--interface=lo", "--bind-interfaces",
        "--dhcp-range=127.0.0.0,proxy,255.0.0.0",
        "--pxe-service=x86PC,Network boot,undionly",
        f"--log-facility={workdir / 'dnsmasq.log'}",
        f"--pid-file={workdir / 'dnsmasq.pid'}",
    )


class Namespace:
    """
    A network namespace with only loopback, deleted on exit; processes are
    started in it pinned to one CPU and stopped by PID.
    """

    def __init__(self) -> None:
        self.name = f"pxbench-{secrets.token_hex(3)}"
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Namespace:
        subprocess.run(["ip", "netns", "add", self.name], check=True, timeout=30)
        subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True,
                       timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        subprocess.run(["ip", "netns", "del", self.name], check=False, timeout=30)

    def argv(self, cpu: int, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, "taskset", "-c", str(cpu), *argv]

    def spawn(self, cpu: int, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
        out = open(log, "wb")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(self.argv(cpu, argv), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env())
        out.close()
        self.procs.append(proc)
        return proc

    def listening(self, port: int, timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        for _ in range(int(timeout / 0.1) + 1):
            out = subprocess.run(["ip", "netns", "exec", self.name, "ss", "-Hlnu",
                                  f"sport = :{port}"], capture_output=True, text=True, timeout=30)
            if out.stdout.strip():
                return True
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        return False


def env() -> dict[str, str]:
    """
    The environment for the benchmark's processes: this checkout first on
    the path, so they run the pxed being measured.
    """
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{path}" if path else str(REPO)}
