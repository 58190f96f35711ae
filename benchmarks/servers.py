# -*- test-case-name: tests.test_dhcp_benchmark,tests.test_dhcpd_benchmark -*-
"""
What the DHCP benchmarks (L{benchmarks.dhcp}, ProxyDHCP; L{benchmarks.dhcpd},
pxed as the DHCP server) share: the servers, the network namespace they
run in, the simulated relay's socket and process, and how repeated runs
are combined.

pxed runs as the protocol its service builds for UDP 67 (responder,
policy, boot log, metrics; in full mode the lease keeper too), on its
packet-info port bound to 127.0.0.2 so the simulated relay can own
127.0.0.1:67; dnsmasq runs with the same answer to give.  Both log to a
file the way they would in production.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pxed.lab.procs import dnsmasq_argv as lab_dnsmasq_argv
from pxed.lab.procs import stop_pid

__all__ = ["rst_table", "SERVER_ADDRESS", "RELAY_ADDRESS", "DHCP_PORT", "Namespace", "serve_pxed",
           "pxed_config", "dnsmasq_argv", "env", "relay_socket", "run_relay", "server_running",
           "combine", "cannot_run", "ratios", "benchmark_parser", "take_turns"]

SERVER_ADDRESS = "127.0.0.2"
RELAY_ADDRESS = "127.0.0.1"
DHCP_PORT = 67
REPO = Path(__file__).resolve().parents[1]


#: The services that listen on a port: kept closed by L{serve_pxed}.
LISTENERS = frozenset({"dhcp", "proxydhcp", "bootserver", "tftp", "http"})


def serve_pxed(config_path: str, log_path: str) -> None:
    """
    Run pxed's UDP 67 protocol (ProxyDHCP, or the DHCP server for
    C{dhcp.mode: full}) on SERVER_ADDRESS:67 until killed, logging every
    event from info up to C{log_path}, as C{twistd pxed} does by default.

    The protocol is the one L{pxed.service.makeBootService} builds (with
    its responder, policy, boot log, metrics and observer), listening on a
    port of its own instead of the wildcard address; the service's other
    listeners stay closed, its other services (the policy runtime, the
    lease file's writer) run.
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
    for child in top:
        if child.name not in LISTENERS:
            child.startService()
    # The service is named for what it is: "dhcp" in full mode.
    name = "dhcp" if "dhcp" in {child.name for child in top} else "proxydhcp"
    protocol = top.getServiceNamed(name).protocol  # type: ignore[attr-defined]
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
            stop_pid(proc.pid, proc, grace=5)
        subprocess.run(["ip", "netns", "del", self.name], check=False, timeout=30)

    def argv(self, cpu: int, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, "taskset", "-c", str(cpu), *argv]

    def spawn(self, cpu: int, argv: list[str], log: Path,
              checkout: Path = REPO) -> subprocess.Popen[bytes]:
        out = open(log, "wb")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(self.argv(cpu, argv), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env(checkout), cwd=checkout)
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


def env(checkout: Path = REPO) -> dict[str, str]:
    """
    The environment for the benchmark's processes: this checkout (or
    another one, the baseline) first on the path, so they run the pxed
    being measured.
    """
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ,
            "PYTHONPATH": f"{checkout}{os.pathsep}{path}" if path else str(checkout)}


def relay_socket(bind: tuple[str, int], buffer: int, send_buffer: int | None = None
                 ) -> socket.socket:
    """
    The simulated relay's non-blocking UDP socket, bound to C{bind}, with a
    receive buffer of C{buffer} bytes (and a send buffer, if given) so a
    burst of replies is not dropped by the kernel before it is read.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    # dnsmasq binds the wildcard address to port 67 with SO_REUSEPORT (with
    # --bind-interfaces); sharing the port needs the same on this side.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer)
    if send_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    sock.bind(bind)
    sock.setblocking(False)
    return sock


def run_relay(ns: Namespace, module: str, args: list[str], timeout: float) -> dict[str, Any]:
    """
    Run C{python -m MODULE drive ARGS} (the relay) in C{ns} on CPU 1 and
    return the JSON result it prints.
    """
    argv = [sys.executable, "-m", module, "drive", *args]
    out = subprocess.run(ns.argv(1, argv), capture_output=True, text=True, env=env(),
                         timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"the relay failed: {out.stderr.strip()}")
    result: dict[str, Any] = json.loads(out.stdout)
    return result


@contextmanager
def server_running(server: str, workdir: Path, module: str, config: Callable[[Path], Path],
                   dnsmasq: Callable[[Path], list[str]],
                   baseline: Path | None = None) -> Iterator[Namespace]:
    """
    A fresh namespace with C{server} (C{pxed}: C{python -m MODULE serve}
    with the configuration C{config} writes; C{pxed-baseline}: the same
    from the checkout C{baseline}; else dnsmasq with the arguments
    C{dnsmasq} gives) started on CPU 0 and listening on port 67.
    Leaving it checks the server is still running, then stops it.
    """
    with Namespace() as ns:
        checkout = REPO
        if server in ("pxed", "pxed-baseline"):
            argv = [sys.executable, "-m", module, "serve", "--config", str(config(workdir)),
                    "--log", str(workdir / "pxed.log")]
            if server == "pxed-baseline":
                assert baseline is not None
                checkout = baseline
        else:
            argv = dnsmasq(workdir)
        proc = ns.spawn(0, argv, workdir / f"{server}.out", checkout)
        if not ns.listening(DHCP_PORT):
            raise RuntimeError(f"{server} did not start: {(workdir / f'{server}.out').read_text()}")
        yield ns
        if proc.poll() is not None:
            raise RuntimeError(f"{server} exited during the benchmark")


def combine(runs: list[dict[str, Any]], medians: Iterable[str],
            totals: Iterable[str]) -> dict[str, Any]:
    """
    One result from repeated runs: the median of each of C{medians} (a
    shared machine has noisy moments; the median is the typical run), the
    worst C{max_ms}, the sum of each of C{totals} (every loss of every
    run), the rest from the first run, and the runs themselves.
    """
    out = dict(runs[0])
    for key in medians:
        out[key] = statistics.median(run[key] for run in runs)
    out["max_ms"] = max(run["max_ms"] for run in runs)
    for key in totals:
        out[key] = sum(run[key] for run in runs)
    out["runs"] = runs
    return out


def cannot_run(servers: list[str]) -> str | None:
    """
    Why the benchmark cannot measure C{servers} on this machine, if it
    cannot.
    """
    if os.geteuid() != 0:
        return "the benchmark needs root (a network namespace, port 67)"
    if "dnsmasq" in servers and shutil.which("dnsmasq") is None:
        return "dnsmasq is missing: install dnsmasq-base, or pass --servers pxed"
    return None


def ratios(results: list[dict[str, Any]], group: Callable[[dict[str, Any]], tuple[Any, ...]],
           rate: str, label: str) -> list[str]:
    """
    pxed's C{rate} and p99 latency over dnsmasq's, for each group of
    results (C{group} of a result: what must be equal to compare), in the
    order of pxed's results.
    """
    by_key = {(r["server"], *group(r)): r for r in results}
    lines = []
    for mine in results:
        peer = by_key.get(("dnsmasq", *group(mine)))
        if not mine["server"].startswith("pxed") or peer is None or not peer[rate]:
            continue
        p99 = mine["p99_ms"] / peer["p99_ms"] if peer["p99_ms"] else float("nan")
        name = " ".join(str(part) for part in group(mine))
        lines.append(f"{mine['server']}/dnsmasq {name}: {label} x{mine[rate] / peer[rate]:.2f}, "
                     f"p99 latency x{p99:.2f}")
    return lines


def benchmark_parser(prog: str, description: str | None,
                     serves: str) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """
    A DHCP benchmark's command line: its own options (C{--servers},
    C{--repeat}, C{--json}), and the internal C{serve} (pxed, which serves
    C{serves}) and C{drive} (the relay) commands; the caller adds the
    measurement's options to both parsers returned (the benchmark's and
    C{drive}'s).
    """
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help=f"(internal) run pxed's {serves}")
    serve.add_argument("--config", required=True)
    serve.add_argument("--log", required=True)
    drive = sub.add_parser("drive", help="(internal) play the relay agent, print JSON")
    parser.add_argument("--servers", default="pxed,dnsmasq",
                        help="which servers to measure (default pxed,dnsmasq)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each measurement; the table shows medians (default 3)")
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    return parser, drive


def take_turns(servers: list[str], repeat: int, prefix: str,
               measure: Callable[[str, Path], list[dict[str, Any]]]
               ) -> Iterator[tuple[str, dict[str, Any]]]:
    """
    C{measure} each server in a fresh work directory, C{repeat} rounds
    (at least one) of every server in turn, so that a noisy moment of a
    shared machine falls on both rather than on one; yields (server, run)
    for each run measured.
    """
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        for number in range(max(1, repeat)):
            for server in servers:
                workdir = Path(tmp) / f"{server}-{number}"
                workdir.mkdir()
                for run in measure(server, workdir):
                    yield server, run


def rst_table(rows: Sequence[Sequence[str]]) -> str:
    """An RST simple table: a rule, the header row, a rule, the rows, a rule."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    rule = "  ".join("=" * w for w in widths)
    lines = [rule, "  ".join(c.ljust(w) for c, w in zip(rows[0], widths, strict=True)), rule]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
              for row in rows[1:]]
    return "\n".join([*lines, rule])
