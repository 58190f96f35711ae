# -*- test-case-name: tests.test_dhcpd_benchmark -*-
"""
DORA benchmark of pxed as the DHCP server (C{dhcp.mode: full}), next to
dnsmasq as the DHCP server, in the same run.

This plays a relay agent on loopback with many clients behind it (giaddr
127.0.0.1, distinct MACs): each client sends a DISCOVER, answers the
OFFER with a REQUEST for the offered address (server identifier set, as a
client in the SELECTING state does), and is done when the ACK comes back;
a NAK sends the client back to DISCOVER, as real clients do (at most
L{MAX_RESTARTS} times), and a reply that never comes counts as lost.
What is measured is complete 4-way exchanges per second, the time from
the first DISCOVER to the ACK, and how many NAKs it took.

Each server is pinned to one core, the relay to the other, in a network
namespace with nothing but loopback that the benchmark creates and
deletes:

    python -m benchmarks.dhcpd                   # as root; prints a table
    python -m benchmarks.dhcpd --clients 2000 --repeat 5 --json out.json

Three measurements per server, each repeated (C{--repeat}; the table
shows medians): I{serial}, one client at a time (what one exchange
costs, with no client in the way of another); I{paced}, new clients at
C{--rate} per second; I{flood}, as fast as the server answers,
C{--window} clients in the middle of their exchange at a time.  Both
servers keep leases in a file and fsync it for every ACK (pxed appends to
its journal, one fsync per batch; dnsmasq rewrites its whole lease file
and fsyncs it per change), log to a file as in production, and neither
probes addresses (pxed C{ping: false}, dnsmasq C{--no-ping}), so the
figures are the DHCP work.
"""

from __future__ import annotations

import json
import select
import socket
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.dhcp import percentile
from benchmarks.servers import (
    DHCP_PORT,
    RELAY_ADDRESS,
    SERVER_ADDRESS,
    Namespace,
    benchmark_parser,
    cannot_run,
    ratios,
    relay_socket,
    run_relay,
    serve_pxed,
    server_running,
    take_turns,
)
from benchmarks.servers import combine as combine_runs
from pxed.lab.procs import dnsmasq_argv as lab_dnsmasq_argv

__all__ = ["discover", "request", "drive", "main"]

#: Clients of the serial run (one exchange at a time: the cost of one).
SERIAL_CLIENTS = 500
#: A client NAKed starts over with a DISCOVER, at most this many times.
MAX_RESTARTS = 5
#: The pool both servers hand out from: 65,534 addresses of 127.0.0.0/8.
FIRST, LAST = "127.1.0.1", "127.1.255.254"


def _mac(i: int) -> bytes:
    return b"\x02\x01" + i.to_bytes(4, "big")


def discover(i: int, giaddr: str = RELAY_ADDRESS) -> bytes:
    """
    Client C{i}'s relayed DISCOVER (xid C{2i}).
    """
    from pxed.dhcp.packet import DHCPPacket, Option, encode

    return encode(DHCPPacket(xid=2 * i, hops=1, giaddr=giaddr, chaddr=_mac(i) + bytes(10),
                             options={Option.MESSAGE_TYPE: b"\x01",
                                      Option.PARAMETER_REQUEST_LIST: bytes((1, 3, 6, 51))}))


def request(i: int, address: str, server: bytes, giaddr: str = RELAY_ADDRESS) -> bytes:
    """
    Client C{i}'s relayed REQUEST (xid C{2i+1}) for the offered C{address}.
    """
    from pxed.dhcp.packet import DHCPPacket, Option, encode

    return encode(DHCPPacket(xid=2 * i + 1, hops=1, giaddr=giaddr, chaddr=_mac(i) + bytes(10),
                             options={Option.MESSAGE_TYPE: b"\x03",
                                      Option.REQUESTED_ADDRESS: socket.inet_aton(address),
                                      Option.SERVER_ID: server,
                                      Option.PARAMETER_REQUEST_LIST: bytes((1, 3, 6, 51))}))


def drive(target: tuple[str, int], clients: int, rate: float, window: int,
          timeout: float, bind: tuple[str, int] = (RELAY_ADDRESS, DHCP_PORT),
          first: int = 0) -> dict[str, Any]:
    """
    Run C{clients} DORA exchanges against C{target}, of clients C{first}
    onwards: paced (C{rate} new clients a second) or, with C{rate} 0, at
    most C{window} at a time.

    @return: counts (acked, lost, naks, duplicates: one address ACKed to
        two clients) and rates and latencies of the ACKed exchanges (from
        a client's first DISCOVER, NAKed rounds included).
    """
    from pxed.dhcp.packet import MalformedPacket, Option, decode

    sock = relay_socket(bind, 4 << 20)
    started: dict[int, float] = {}
    latencies: list[float] = []
    addresses: dict[str, int] = {}
    naks = duplicates = 0
    restarts: dict[int, int] = {}
    sent = 0
    begin = time.perf_counter()
    last_reply = begin
    deadline = begin + clients / max(rate, 1.0) + timeout + 60 if rate else begin + 600
    while time.perf_counter() < deadline:
        now = time.perf_counter()
        if sent < clients and ((rate and now >= begin + sent / rate)
                               or (not rate and len(started) < window)):
            started[first + sent] = now
            sock.sendto(discover(first + sent), target)
            sent += 1
            continue
        if sent >= clients and not started:
            break
        if sent >= clients and now - last_reply > timeout:
            break
        wait = 0.01 if not rate else max(0.0, min(0.01, begin + sent / rate - now))
        if not select.select([sock], [], [], wait)[0]:
            continue
        for _ in range(256):
            try:
                data = sock.recv(2048)
            except BlockingIOError:
                break
            last_reply = time.perf_counter()
            try:
                reply = decode(data)
            except MalformedPacket:
                continue
            i = reply.xid // 2
            if i not in started:
                continue
            kind = reply.message_type
            if kind == 2 and reply.xid % 2 == 0:
                server = reply.options.get(Option.SERVER_ID, b"")
                sock.sendto(request(i, reply.yiaddr, server), target)
            elif kind == 5 and reply.xid % 2 == 1:
                latencies.append(last_reply - started.pop(i))
                if reply.yiaddr in addresses:
                    duplicates += 1
                addresses[reply.yiaddr] = i
            elif kind == 6:
                # As a real client does: start over with a new DISCOVER.
                naks += 1
                restarts[i] = restarts.get(i, 0) + 1
                if restarts[i] > MAX_RESTARTS:
                    started.pop(i)
                else:
                    sock.sendto(discover(i), target)
    sock.close()
    acked = len(latencies)
    seconds = (max(last_reply, begin) - begin) or float("nan")
    return {"clients": clients, "acked": acked, "lost": clients - acked, "naks": naks,
            "duplicates": duplicates, "seconds": seconds, "dora_per_s": acked / seconds,
            "p50_ms": percentile(latencies, 0.5) * 1000,
            "p99_ms": percentile(latencies, 0.99) * 1000,
            "max_ms": max(latencies, default=float("nan")) * 1000}


def pxed_config(workdir: Path) -> Path:
    config = workdir / "pxed.yaml"
    config.write_text(
        "server:\n"
        f"  address: {SERVER_ADDRESS}\n"
        "bootloaders: {x86-bios: null, x64-uefi: null}\n"
        "dhcp:\n"
        "  mode: full\n"
        f'  ranges: {{"127.0.0.0/8": "{FIRST}-{LAST}"}}\n'
        "  ping: false\n"
        f"  lease_file: {workdir / 'leases.json'}\n")
    return config


def dnsmasq_argv(workdir: Path) -> list[str]:
    return lab_dnsmasq_argv(
        "--interface=lo", "--bind-interfaces",
        f"--dhcp-range={FIRST},{LAST},255.0.0.0,1h",
        "--dhcp-authoritative", "--no-ping", "--dhcp-lease-max=1000000",
        f"--dhcp-leasefile={workdir / 'dnsmasq.leases'}",
        f"--log-facility={workdir / 'dnsmasq.log'}",
        f"--pid-file={workdir / 'dnsmasq.pid'}",
    )


def _run_client(ns: Namespace, clients: int, rate: float, window: int,
                timeout: float, first: int) -> dict[str, Any]:
    result = run_relay(ns, "benchmarks.dhcpd",
                       ["--clients", str(clients), "--rate", str(rate), "--window", str(window),
                        "--timeout", str(timeout), "--first", str(first)],
                       timeout=clients / max(rate, 500) + timeout + 180)
    result.update(rate=rate, window=window)
    return result


def run_server(server: str, workdir: Path, clients: int, rate: float, window: int,
               timeout: float) -> list[dict[str, Any]]:
    """
    Start C{server} afresh (no leases) on CPU 0, then a serial, a paced
    and a flood run with the relay on CPU 1, each with clients of its own
    (new MACs: every client is new to the server).
    """
    results = []
    with server_running(server, workdir, "benchmarks.dhcpd", pxed_config, dnsmasq_argv) as ns:
        _run_client(ns, 100, 1000, 0, timeout, 0)  # warm-up: imports, first calls
        first = 100
        for mode, mode_rate, mode_window, count in (
                ("serial", 0, 1, min(clients, SERIAL_CLIENTS)), ("paced", rate, 0, clients),
                ("flood", 0, window, clients)):
            result = _run_client(ns, count, mode_rate, mode_window, timeout, first)
            first += count
            result.update(server=server, mode=mode)
            results.append(result)
    return results


def combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return combine_runs(runs, ("dora_per_s", "p50_ms", "p99_ms", "seconds"),
                        ("lost", "naks", "duplicates"))


def table(results: list[dict[str, Any]]) -> str:
    head = (f"{'server':8} {'mode':6} {'clients':>8} {'DORA/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
            f"{'max ms':>7} {'NAKs':>5} {'lost':>5} {'dup':>4}")
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(f"{r['server']:8} {r['mode']:6} {r['clients']:>8} {r['dora_per_s']:>8.0f} "
                     f"{r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f} {r['max_ms']:>7.2f} "
                     f"{r['naks']:>5} {r['lost']:>5} {r['duplicates']:>4}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser, drv = benchmark_parser("python -m benchmarks.dhcpd", __doc__, "DHCP server")
    drv.add_argument("--first", type=int, default=0, help="number of the first client")
    for p in (parser, drv):
        p.add_argument("--clients", type=int, default=5000,
                       help="clients per measurement (default 5000)")
        p.add_argument("--rate", type=float, default=1000.0,
                       help="new clients per second in the paced run (default 1000)")
        p.add_argument("--window", type=int, default=32,
                       help="clients in their exchange at once in the flood run (default 32)")
        p.add_argument("--timeout", type=float, default=2.0,
                       help="seconds to wait for late replies (default 2)")
    args = parser.parse_args(argv)

    if args.command == "serve":
        serve_pxed(args.config, args.log)
        return 0
    if args.command == "drive":
        print(json.dumps(drive((SERVER_ADDRESS, DHCP_PORT), args.clients, args.rate,
                               args.window, args.timeout, first=args.first)))
        return 0
    servers = [s for s in args.servers.split(",") if s]
    problem = cannot_run(servers)
    if problem is not None:
        print(problem, file=sys.stderr)
        return 2
    rounds: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for server, run in take_turns(
            servers, args.repeat, "pxed-dhcpd-bench-",
            lambda server, workdir: run_server(server, workdir, args.clients, args.rate,
                                               args.window, args.timeout)):
        rounds.setdefault((server, run["mode"]), []).append(run)
    results = []
    for (server, mode), runs in rounds.items():
        result = combine(runs)
        result.update(server=server, mode=mode)
        results.append(result)
    print(f"median of {max(1, args.repeat)} runs each; max, lost and dup over all runs")
    print(table(results))
    for line in ratios(results, lambda r: (r["mode"],), "dora_per_s", "DORA/s"):
        print(line)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all(r["lost"] == 0 and r["duplicates"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
