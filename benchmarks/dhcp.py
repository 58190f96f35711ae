# -*- test-case-name: tests.test_dhcp_benchmark -*-
"""
Boot-storm benchmark of pxed's ProxyDHCP, next to dnsmasq in proxy mode.

A whole rack powering on at once looks, to a ProxyDHCP server behind a
relay, like a burst of DHCPDISCOVERs from many MACs, all relayed from one
giaddr.  This plays that relay agent on loopback: it sends one PXE
DISCOVER per simulated machine (distinct MACs, giaddr 127.0.0.1) and
measures when each proxy offer comes back to it at 127.0.0.1:67, as a
real relay would receive it.

Each server is pinned to one core, the relay to the other, both
in a network namespace with nothing but loopback that the benchmark
creates and deletes, so port 67 is free and no packet can leave:

    python -m benchmarks.dhcp                     # as root; prints a table
    python -m benchmarks.dhcp --machines 1000 --rate 5000 --json out.json

Two measurements per server and machine count, each repeated (C{--repeat},
default 3; the table shows the medians):

  - paced: DISCOVERs offered at C{--rate} per second (the target load):
    offers/s achieved, p50/p99/max latency, lost replies;
  - flood: as fast as the server answers, at most C{--window} requests
    outstanding: the peak offers/s on one core.

The server under test is the ProxyDHCP protocol that pxed's service
builds from a generated configuration (responder, policy, boot log,
metrics), on its packet-info UDP port, logging to a file as C{twistd pxed}
does; it is bound to 127.0.0.2 so the relay can own 127.0.0.1:67.
"""

from __future__ import annotations

import json
import math
import select
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.servers import (
    DHCP_PORT,
    RELAY_ADDRESS,
    SERVER_ADDRESS,
    Namespace,
    benchmark_parser,
    cannot_run,
    dnsmasq_argv,
    pxed_config,
    ratios,
    relay_socket,
    run_relay,
    serve_pxed,
    server_running,
    take_turns,
)
from benchmarks.servers import combine as combine_runs

__all__ = ["discovers", "drive", "main", "percentile"]


def discovers(count: int, giaddr: str = RELAY_ADDRESS) -> list[bytes]:
    """
    C{count} relayed PXE DISCOVERs from distinct MACs (02:00:...; locally
    administered), transaction ids 0..count-1, as a BIOS PXE ROM sends
    them (option 93 = 0, option 60 PXEClient, a GUID).
    """
    from pxed.dhcp.packet import DHCPPacket, Option, encode

    out = []
    for i in range(count):
        mac = b"\x02\x00" + i.to_bytes(4, "big")
        packet = DHCPPacket(
            xid=i, hops=1, giaddr=giaddr, chaddr=mac + b"\x00" * 10,
            options={
                Option.MESSAGE_TYPE: b"\x01",
                57: b"\x05\xc0",
                Option.CLIENT_ARCH: b"\x00\x00",
                Option.CLIENT_NDI: b"\x01\x02\x01",
                Option.CLIENT_UUID: b"\x00" + mac * 2 + mac[:4],
                Option.VENDOR_CLASS: b"PXEClient:Arch:00000:UNDI:002001",
            },
        )
        out.append(encode(packet))
    return out


def percentile(values: list[float], fraction: float) -> float:
    """
    The nearest-rank percentile of C{values} (which need not be sorted).
    """
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1))
    return ordered[rank]


def drive(target: tuple[str, int], packets: list[bytes], rate: float, window: int,
          timeout: float, bind: tuple[str, int] = (RELAY_ADDRESS, DHCP_PORT)) -> dict[str, Any]:
    """
    Send C{packets} to C{target} and collect the replies on C{bind}.

    @param rate: DISCOVERs per second (0: as fast as the window allows).
    @param window: at most this many requests without a reply (0: no
        limit).
    @param timeout: how long to wait for stragglers after the last send.
    @return: counts, offers/s, and latencies in milliseconds.
    """
    n = len(packets)
    sock = relay_socket(bind, 8 << 20, 8 << 20)
    sent_at = [0.0] * n
    got_at = [0.0] * n
    interval = 1.0 / rate if rate else 0.0
    buf = bytearray(2048)
    received = duplicates = strays = 0
    next_i = 0
    clock = time.perf_counter
    start = clock()
    hard_stop = start + (n * interval if rate else 0) + timeout + 60
    last_send = start
    try:
        while received < n:
            now = clock()
            if now > hard_stop or (next_i == n and now - last_send > timeout):
                break
            while next_i < n and (not rate or start + next_i * interval <= now) and (
                    not window or next_i - received < window):
                sock.sendto(packets[next_i], target)
                sent_at[next_i] = last_send = clock()
                next_i += 1
            while True:
                try:
                    size = sock.recv_into(buf)
                except BlockingIOError:
                    break
                stamp = clock()
                xid = int.from_bytes(buf[4:8], "big")
                if size < 240 or buf[0] != 2 or xid >= n or not sent_at[xid]:
                    strays += 1
                elif got_at[xid]:
                    duplicates += 1
                else:
                    got_at[xid] = stamp
                    received += 1
            if received < n:
                due = start + next_i * interval - clock() if rate and next_i < n else 0.0005
                select.select([sock], [], [], max(0.0, min(due, 0.0005)))
    finally:
        sock.close()
    answered = [i for i in range(n) if got_at[i]]
    latencies = [(got_at[i] - sent_at[i]) * 1000 for i in answered]
    first = min((sent_at[i] for i in range(n) if sent_at[i]), default=start)
    last = max((got_at[i] for i in answered), default=first)
    span = last - first
    return {
        "machines": n,
        "sent": next_i,
        "offers": received,
        "lost": n - received,
        "duplicates": duplicates,
        "strays": strays,
        "seconds": round(span, 4),
        "offers_per_s": round(received / span, 1) if span > 0 else 0.0,
        "p50_ms": round(percentile(latencies, 0.50), 3),
        "p99_ms": round(percentile(latencies, 0.99), 3),
        "max_ms": round(max(latencies), 3) if latencies else float("nan"),
    }


def _run_client(ns: Namespace, machines: int, rate: float, window: int,
                timeout: float) -> dict[str, Any]:
    return run_relay(ns, "benchmarks.dhcp",
                     ["--machines", str(machines), "--rate", str(rate), "--window", str(window),
                      "--timeout", str(timeout)],
                     timeout=machines / max(rate, 1000) + timeout + 120)


def combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """
    One result from repeated runs: the median of each rate and latency,
    the worst maximum, and every loss of every run.
    """
    return combine_runs(runs, ("offers_per_s", "p50_ms", "p99_ms", "seconds"),
                        ("lost", "duplicates", "strays"))


def run_server(server: str, workdir: Path, sizes: list[int], rate: float, window: int,
               timeout: float, repeat: int = 3,
               baseline: Path | None = None) -> list[dict[str, Any]]:
    """
    Start C{server} (pxed, pxed-baseline from the checkout C{baseline}, or
    dnsmasq) alone on CPU 0 and measure it with the relay on CPU 1, for
    each machine count, C{repeat} times each.
    """
    results = []
    with server_running(server, workdir, "benchmarks.dhcp", pxed_config, dnsmasq_argv,
                        baseline) as ns:
        # One small warm-up run, so imports and first-call costs are not measured.
        _run_client(ns, 200, 2000, 0, timeout)
        for machines in sizes:
            for mode, mode_rate, mode_window in (("paced", rate, 0), ("flood", 0, window)):
                runs = [_run_client(ns, machines, mode_rate, mode_window, timeout)
                        for _ in range(repeat)]
                for run in runs:
                    run.update(rate=mode_rate, window=mode_window)
                result = combine(runs)
                result.update(server=server, mode=mode, rate=mode_rate, window=mode_window)
                results.append(result)
    return results


def _table(results: list[dict[str, Any]]) -> str:
    head = (f"{'server':13} {'mode':6} {'machines':>8} {'offers/s':>9} {'p50 ms':>7} "
            f"{'p99 ms':>7} {'max ms':>7} {'lost':>5}")
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(f"{r['server']:13} {r['mode']:6} {r['machines']:>8} {r['offers_per_s']:>9.0f} "
                     f"{r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f} {r['max_ms']:>7.2f} "
                     f"{r['lost']:>5}")
    return "\n".join(lines)


def _ratios(results: list[dict[str, Any]]) -> list[str]:
    def group(r: dict[str, Any]) -> tuple[str, int]:
        return r["mode"], r["machines"]

    return ratios(sorted(results, key=group), group, "offers_per_s", "offers/s")


def main(argv: list[str] | None = None) -> int:
    parser, drv = benchmark_parser("python -m benchmarks.dhcp", __doc__, "ProxyDHCP")
    for p in (parser, drv):
        p.add_argument("--rate", type=float, default=5000.0,
                       help="paced DISCOVERs per second (default 5000)")
        p.add_argument("--window", type=int, default=64,
                       help="outstanding requests in the flood run (default 64)")
        p.add_argument("--timeout", type=float, default=2.0,
                       help="seconds to wait for late replies (default 2)")
    drv.add_argument("--machines", type=int, required=True)
    parser.add_argument("--machines", default="1000,10000",
                        help="comma-separated machine counts (default 1000,10000)")
    parser.add_argument("--baseline", type=Path, default=None, metavar="CHECKOUT",
                        help="also measure the pxed of another checkout (as pxed-baseline), "
                        "in turns with the others")
    args = parser.parse_args(argv)

    if args.command == "serve":
        serve_pxed(args.config, args.log)
        return 0
    if args.command == "drive":
        packets = discovers(args.machines)
        result = drive((SERVER_ADDRESS, DHCP_PORT), packets, args.rate, args.window,
                       args.timeout)
        print(json.dumps(result))
        return 0

    servers = [s for s in args.servers.split(",") if s]
    if args.baseline is not None:
        servers.insert(servers.index("pxed") + 1 if "pxed" in servers else 0, "pxed-baseline")
    problem = cannot_run(servers)
    if problem is not None:
        print(problem, file=sys.stderr)
        return 2
    sizes = [int(n) for n in args.machines.split(",")]
    results: list[dict[str, Any]] = []
    rounds: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for server, run in take_turns(
            servers, args.repeat, "pxed-bench-",
            lambda server, workdir: run_server(server, workdir, sizes, args.rate, args.window,
                                               args.timeout, repeat=1,
                                               baseline=args.baseline)):
        rounds.setdefault((server, run["mode"], run["machines"]), []).extend(run["runs"])
    for (server, mode, _machines), runs in rounds.items():
        result = combine(runs)
        result.update(server=server, mode=mode, rate=runs[0]["rate"], window=runs[0]["window"])
        results.append(result)
    print(f"median of {max(1, args.repeat)} runs each; max and lost over all runs")
    print(_table(results))
    for line in _ratios(results):
        print(line)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all(r["lost"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
