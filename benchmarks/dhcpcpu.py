# -*- test-case-name: tests.test_dhcpcpu_benchmark -*-
"""
CPU per relayed PXE DISCOVER inside pxed, without sockets: what the
ProxyDHCP fast path shortens, measured apart from the kernel, the reactor
and the load generator (which L{benchmarks.dhcp} includes).

    .venv/bin/python -m benchmarks.dhcpcpu --repeat 5
    .venv/bin/python -m benchmarks.dhcpcpu --repeat 5 --baseline /tmp/before

The protocol is the one C{makeBootService} builds from the storm
benchmark's configuration (L{benchmarks.servers.pxed_config}: rules in
memory, timelines and metrics on, the log written to a file as C{twistd}
writes it), fed the storm's relayed DISCOVERs (L{benchmarks.dhcp.discovers})
through C{datagramReceivedWithInfo} and a transport that only counts.
Each measurement is a fresh process: one pass to warm up (the first sight
of each MAC), then the best of three passes in process CPU time.  With
C{--baseline} another checkout (C{git worktree add /tmp/before HEAD~1})
is measured in turns with this one, run after run, so a change and its
before share the machine's load; the medians are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent


def measure(count: int) -> dict[str, Any]:
    """
    In this process (whose C{pxed} is the one measured): microseconds of
    CPU per DISCOVER, best of three passes of C{count}, and the replies sent.
    """
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner

    from benchmarks.dhcp import discovers
    from benchmarks.servers import pxed_config
    from pxed import logs
    from pxed.config import load_config
    from pxed.net import PacketInfo
    from pxed.service import makeBootService

    work = Path(tempfile.mkdtemp(prefix="pxed-dhcpcpu-"))
    logs.write_to(str(work / "pxed.log"))
    globalLogBeginner.beginLoggingTo([logs.text_observer()], redirectStandardIO=False)
    if hasattr(logs, "sole_observer"):  # as under twistd (a checkout before it lacks it)
        logs.sole_observer()
    top = makeBootService(load_config(pxed_config(work)), reactor=reactor)
    for child in top:
        # Everything but the sockets: the policy, the boot log, the metrics.
        if child.name not in {"proxydhcp", "dhcp", "bootserver", "tftp", "http"}:
            child.startService()
    protocol = top.getServiceNamed("proxydhcp").protocol  # type: ignore[attr-defined]
    sent: list[int] = [0]

    class Counting:
        def write(self, data: bytes, addr: tuple[str, int]) -> None:
            sent[0] += 1

        def getHost(self) -> None:
            return None

    protocol.transport = Counting()
    packets = discovers(count)
    info = PacketInfo(1, "127.0.0.2", "127.0.0.2")
    source = ("127.0.0.1", 67)

    def one_pass() -> float:
        started = time.process_time()
        for packet in packets:
            protocol.datagramReceivedWithInfo(packet, source, info)
        # What the protocol left for the end of the reactor's turn (the
        # fast path's boot log and metrics) is part of the cost.
        reactor.runUntilCurrent()  # type: ignore[attr-defined]
        return time.process_time() - started

    one_pass()
    best = min(one_pass() for _ in range(3))
    return {"us_per_discover": best / count * 1e6, "replies": sent[0], "passes": 4,
            "count": count}


def _measure_in(checkout: Path, count: int) -> dict[str, Any]:
    """
    L{measure} in a fresh process importing C{checkout}'s pxed (and its
    benchmarks' configuration and DISCOVERs).
    """
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); "
            "sys.path.insert(1, sys.argv[2]); "
            "from benchmarks_dhcpcpu import measure; "
            "print(json.dumps(measure(int(sys.argv[3]))))")
    with tempfile.TemporaryDirectory() as shim:
        # This module under a name of its own, so the checkout's own
        # benchmarks package (which may not have it) is the one imported.
        (Path(shim) / "benchmarks_dhcpcpu.py").write_text(Path(__file__).read_text())
        out = subprocess.run([sys.executable, "-c", code, str(checkout), shim, str(count)],
                             cwd=checkout, check=True, capture_output=True, text=True,
                             timeout=600, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dhcpcpu",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=10000,
                        help="DISCOVERs per pass, from distinct MACs (default 10000)")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each checkout")
    parser.add_argument("--baseline", type=Path, default=None, metavar="CHECKOUT",
                        help="also measure another checkout of pxed, in turns with this one")
    parser.add_argument("--json", type=Path, default=None, help="write every run here")
    args = parser.parse_args(argv)
    checkouts = [("pxed", HERE)]
    if args.baseline is not None:
        checkouts.append(("pxed-baseline", args.baseline.resolve()))
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in checkouts}
    for _ in range(args.repeat):
        for name, checkout in checkouts:
            result = _measure_in(checkout, args.count)
            if result["replies"] != result["passes"] * args.count:
                print(f"{name}: {result['replies']} replies to {result['passes'] * args.count} "
                      "DISCOVERs", file=sys.stderr)
                return 1
            runs[name].append(result)
    print(f"CPU per relayed DISCOVER, in process, best of 3 passes of {args.count}; "
          f"median of {args.repeat} runs")
    medians = {name: statistics.median(r["us_per_discover"] for r in rs)
               for name, rs in runs.items()}
    for name, rs in runs.items():
        each = " ".join(f"{r['us_per_discover']:.1f}" for r in rs)
        print(f"  {name:14} {medians[name]:6.1f} us   (runs: {each})")
    if args.baseline is not None:
        print(f"  pxed / pxed-baseline: {medians['pxed'] / medians['pxed-baseline']:.2f}x")
    if args.json is not None:
        args.json.write_text(json.dumps(runs, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
