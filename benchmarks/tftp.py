# -*- test-case-name: tests.test_tftp_benchmark -*-
"""
Throughput of pxed's TFTP server next to tftpd-hpa, on loopback.

    .venv/bin/python benchmarks/tftp.py            # prints the table
    .venv/bin/python benchmarks/tftp.py --repeat 5 --json out.json

In one run it starts both servers, each serving the same directory from
127.0.0.1 on a high port: pxed as users run it (C{twistd -n pxed-tftp},
from this checkout, logging to a file) and tftpd-hpa (C{in.tftpd
--foreground}, chrooted to the directory as root).  Then it measures:

  - one 64 MiB download at blksize 512 and 1468, with windowsize 1
    (lock-step, what BIOS ROMs do), 4 (what EDK2 asks), 16 and 64;
    tftpd-hpa has no windowsize, so every windowed figure is compared
    with its lock-step figure at the same blksize;
  - the same download as GRUB fetches a kernel or an initrd (the Secure
    Boot and ARM64 chains): blksize 1024, C{tsize}, no windowsize;
  - 200 downloads of a 1 MiB file started at once, each from its own
    loopback address as 200 machines would: aggregate MB/s (the bytes
    over the time until the last one ended), p50 and p99 of the
    transfer times, and failures.

Each figure is the median of C{--repeat} runs.  Every download is checked
(size and CRC-32) and a wrong one counts as a failure.  By default the
servers share CPU 0 and the client runs on CPU 1, as if on two machines
(C{--pin same} puts everything on CPU 0: a lock-step round trip then costs
no cross-CPU wake-up, and the figures measure CPU per packet; C{--pin none}
lets the scheduler choose, which makes lock-step figures vary from run to
run with where it puts the two ends).  The client is
L{benchmarks.tftpclient}, whose CPU use is printed so that a client-bound
figure shows as one.  With C{--check-client}, atftp (a C client) fetches
the lock-step file too, as a second opinion.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.dhcp import percentile  # noqa: E402
from benchmarks.servers import env, rst_table  # noqa: E402
from benchmarks.tftpclient import fetch, fetch_many  # noqa: E402
from pxed.lab.procs import stop_pid  # noqa: E402

__all__ = ["main", "run"]

ADDRESS = "127.0.0.1"
MIB = 1 << 20
BLKSIZES = (512, 1468)
WINDOWS = (1, 4, 16, 64)
GRUB_BLKSIZE = 1024


def _file(root: Path, name: str, size: int) -> int:
    """Write C{size} random bytes; return their CRC-32."""
    crc = 0
    with open(root / name, "wb") as f:
        for _ in range(size // MIB):
            chunk = os.urandom(MIB)
            crc = zlib.crc32(chunk, crc)
            f.write(chunk)
    (root / name).chmod(0o644)
    return crc


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((ADDRESS, 0))
        port: int = s.getsockname()[1]
    return port


def _ready(port: int, timeout: float = 30.0) -> bool:
    """Whether a server answers an RRQ for a missing file (with ERROR 1)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        deadline = time.monotonic() + timeout
        for _ in range(int(timeout / 0.2) + 1):
            s.sendto(b"\0\1no-such-file\0octet\0", (ADDRESS, port))
            try:
                data = s.recv(600)
                if data[:2] == b"\0\5":
                    return True
            except OSError:
                pass
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
    return False


def _spawn(argv: list[str], log: Path, cpu: int | None,
           checkout: Path | None = None) -> subprocess.Popen[bytes]:
    out = open(log, "wb")  # noqa: SIM115 - handed to the child
    environ = env()
    if checkout is not None:
        # Another checkout's pxed first on the path (see --baseline).
        environ["PYTHONPATH"] = os.pathsep.join([str(checkout), environ["PYTHONPATH"]])
    proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=environ)
    out.close()
    if cpu is not None:
        # tftpd-hpa's per-transfer children inherit it.
        os.sched_setaffinity(proc.pid, {cpu})
    return proc


def start_pxed(work: Path, root: Path, port: int, cpu: int | None, workers: int = 1,
               checkout: Path | None = None) -> subprocess.Popen[bytes]:
    name = "pxed" if workers == 1 else f"pxed-x{workers}"
    if checkout is not None:
        name = "pxed-baseline"
    argv = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
            "--nodaemon", "--pidfile=", f"--logfile={work / (name + '.log')}",
            "pxed-tftp", "--root", str(root), "--interface", ADDRESS, "--port", str(port),
            "--max-windowsize", str(max(WINDOWS))]
    if workers > 1:
        argv += ["--workers", str(workers)]
    return _spawn(argv, work / f"{name}.out", cpu, checkout)


def start_hpa(work: Path, root: Path, port: int, cpu: int | None) -> subprocess.Popen[bytes]:
    argv = ["in.tftpd", "--foreground", "--address", f"{ADDRESS}:{port}", "--blocksize", "65464"]
    if os.geteuid() == 0:
        argv += ["--secure", "--user", "tftp" if _has_user("tftp") else "nobody"]
    return _spawn([*argv, str(root)], work / "hpa.out", cpu)


def _has_user(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def single(port: int, name: str, crc: int, size: int, blksize: int, windowsize: int,
           repeat: int, tsize: bool = False) -> dict[str, Any]:
    """One download, C{repeat} times: the median MB/s, and failures."""
    rates, loads, failures = [], [], []
    for _ in range(repeat):
        cpu = _cpu()
        outcome = fetch((ADDRESS, port), name, blksize, windowsize, tsize=tsize)
        used = _cpu() - cpu
        if outcome.error or outcome.size != size or outcome.crc != crc:
            failures.append(outcome.error or f"got {outcome.size} bytes, crc {outcome.crc:x}")
            continue
        if tsize and outcome.tsize != size:
            failures.append(f"tsize {outcome.tsize}, not {size}")
            continue
        rates.append(size / MIB / outcome.seconds)
        loads.append(used / outcome.seconds)
    return {"blksize": blksize, "windowsize": windowsize, "tsize": tsize,
            "mb_s": round(statistics.median(rates), 1) if rates else 0.0,
            "client_cpu": round(statistics.median(loads), 2) if loads else 0.0,
            "failures": len(failures), "errors": failures[:3]}


def concurrent(port: int, name: str, crc: int, size: int, count: int, blksize: int,
               windowsize: int, repeat: int) -> dict[str, Any]:
    """C{count} downloads at once, C{repeat} times: medians, and all failures."""
    runs: list[dict[str, Any]] = []
    for _ in range(repeat):
        cpu = _cpu()
        started = time.perf_counter()
        outcomes = fetch_many((ADDRESS, port), name, count, blksize, windowsize)
        wall = time.perf_counter() - started
        ok = [o for o in outcomes if not o.error and o.size == size and o.crc == crc]
        times = [o.seconds for o in ok]
        span = max(times, default=0.0)
        runs.append({"mb_s": len(ok) * size / MIB / span if span else 0.0,
                     "p50_s": percentile(times, 0.5), "p99_s": percentile(times, 0.99),
                     "failures": count - len(ok),
                     "errors": sorted({o.error or "corrupt" for o in outcomes} - {None})[:3],
                     "client_cpu": (_cpu() - cpu) / wall})
        time.sleep(0.5)  # let the servers close their transfer ports
    return {"count": count, "blksize": blksize, "windowsize": windowsize,
            **{key: round(statistics.median(r[key] for r in runs), 3)
               for key in ("mb_s", "p50_s", "p99_s", "client_cpu")},
            "failures": sum(r["failures"] for r in runs),
            "errors": sorted({e for r in runs for e in r["errors"]})}


def atftp(port: int, name: str, size: int, blksize: int, windowsize: int, out: Path) -> float:
    """MB/s of one atftp download (a C client), or 0 if it failed."""
    argv = ["atftp", "--option", f"blksize {blksize}"]
    if windowsize > 1:
        argv += ["--option", f"windowsize {windowsize}"]
    started = time.perf_counter()
    done = subprocess.run([*argv, "-g", "-r", name, "-l", str(out), ADDRESS, str(port)],
                          capture_output=True, timeout=300)
    seconds = time.perf_counter() - started
    ok = done.returncode == 0 and out.stat().st_size == size
    out.unlink(missing_ok=True)
    return round(size / MIB / seconds, 1) if ok else 0.0


def servers(args: argparse.Namespace) -> list[tuple[str, Any]]:
    """The servers measured, by name, with how to start each."""
    found: list[tuple[str, Any]] = [("tftpd-hpa", start_hpa), ("pxed", start_pxed)]
    if args.baseline is not None:
        found.append(("pxed-baseline",
                      functools.partial(start_pxed, checkout=args.baseline.resolve())))
    for n in args.workers:
        if n > 1:
            found.append((f"pxed x{n}", functools.partial(start_pxed, workers=n)))
    return found


def _output(work: Path, server: str) -> str:
    name = {"tftpd-hpa": "hpa", "pxed": "pxed"}.get(server, server.replace(" ", "-"))
    return (work / f"{name}.out").read_text()


#: Fields of a measurement that are summed over runs; the others' medians are kept.
_SUMMED = ("failures",)


def _medians(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from several runs of a measurement: medians, failures summed."""
    out = dict(rows[0])
    for key, value in rows[0].items():
        if key in _SUMMED:
            out[key] = sum(r[key] for r in rows)
        elif key == "errors":
            out[key] = sorted({e for r in rows for e in r[key]})[:3]
        elif isinstance(value, float):
            out[key] = round(statistics.median(r[key] for r in rows), 3)
    return out


#: Where the servers and the client run, for each C{--pin}.
PINNING = {"split": (0, 1), "same": (0, 0), "none": (None, None)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    server_cpu, client_cpu = PINNING[args.pin]
    if client_cpu is not None:
        os.sched_setaffinity(0, {client_cpu})
    results: dict[str, Any] = {"single": {}, "grub": {}, "concurrent": {}, "atftp": {}}
    with tempfile.TemporaryDirectory(prefix="pxed-tftp-bench-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)
        root = work / "root"
        root.mkdir(mode=0o755)
        root.chmod(0o755)
        big_size, small_size = args.size_mib * MIB, MIB
        big, small = _file(root, "big.bin", big_size), _file(root, "small.bin", small_size)
        procs: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
        try:
            # All servers run at once and take turns at each measurement,
            # run after run: a change in the machine's load then shows in
            # every server's figures alike, and the ratios stay fair.
            for server, start in servers(args):
                port = _free_port()
                procs[server] = (start(work, root, port, server_cpu), port)
            for server, (_proc, port) in procs.items():
                if not _ready(port):
                    raise RuntimeError(f"{server} did not start: "
                                       f"{_output(work, server)[-2000:]}")
                fetch((ADDRESS, port), "small.bin", 1468, 1)  # warm-up
            runs: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
            for _ in range(args.repeat):
                for server, (_proc, port) in procs.items():
                    if server.startswith("pxed x"):
                        continue  # one transfer is served by one process
                    hpa = server == "tftpd-hpa"
                    for i, (b, w) in enumerate((b, w) for b in BLKSIZES
                                               for w in ((1,) if hpa else WINDOWS)):
                        runs.setdefault(("single", server, i), []).append(
                            single(port, "big.bin", big, big_size, b, w, 1))
                    # GRUB (grub-core/net/tftp.c): blksize 1024 and tsize, lock-step.
                    runs.setdefault(("grub", server, 0), []).append(
                        single(port, "big.bin", big, big_size, GRUB_BLKSIZE, 1, 1, tsize=True))
                for server, (_proc, port) in procs.items():
                    windows = (1, 4, 16) if server in ("pxed", "pxed-baseline") else (1,)
                    for i, w in enumerate(windows):
                        runs.setdefault(("concurrent", server, i), []).append(
                            concurrent(port, "small.bin", small, small_size, args.concurrent,
                                       1468, w, 1))
            for (part, server, _), rows in runs.items():
                results[part].setdefault(server, []).append(_medians(rows))
            for server, (proc, port) in procs.items():
                if args.check_client and shutil.which("atftp"):
                    results["atftp"][server] = atftp(port, "big.bin", big_size, 1468, 1,
                                                     work / "atftp.out")
                if proc.poll() is not None:
                    raise RuntimeError(f"{server} exited during the benchmark")
        finally:
            for proc, _ in procs.values():
                stop_pid(proc.pid, proc, grace=10)
    results["pin"] = args.pin
    return results


def _ratio(value: float, reference: float) -> str:
    return f"{value / reference:.2f}x" if reference else "-"


def table(results: dict[str, Any]) -> str:
    hpa = {(r["blksize"], r.get("tsize", False)): r for r in results["single"]["tftpd-hpa"]}
    rows = [("server", "blksize", "window", "MB/s", "vs tftpd-hpa", "client CPU")]
    grub_rows = results.get("grub", {})
    hpa.update({(r["blksize"], True): r for r in grub_rows.get("tftpd-hpa", [])})
    for server in results["single"]:
        for r in [*results["single"][server], *grub_rows.get(server, [])]:
            grub = r.get("tsize", False)
            rows.append((server, f"{r['blksize']}" + (" GRUB" if grub else ""),
                         str(r["windowsize"]),
                         f"{r['mb_s']:.1f}" + (f" ({r['failures']} failed)" if r["failures"]
                                              else ""),
                         _ratio(r["mb_s"], hpa[(r["blksize"], grub)]["mb_s"]),
                         f"{r['client_cpu']:.0%}"))
    ref = results["concurrent"]["tftpd-hpa"][0]
    count = ref["count"]
    crows = [(f"{count} x 1 MiB", "window", "MB/s", "p50 s", "p99 s", "failures",
              "vs tftpd-hpa (MB/s, p50, p99)")]
    for server in results["concurrent"]:
        for r in results["concurrent"][server]:
            crows.append((server, str(r["windowsize"]), f"{r['mb_s']:.1f}", f"{r['p50_s']:.2f}",
                          f"{r['p99_s']:.2f}", str(r["failures"]),
                          f"{_ratio(r['mb_s'], ref['mb_s'])}, {_ratio(ref['p50_s'], r['p50_s'])}"
                          f", {_ratio(ref['p99_s'], r['p99_s'])}"))
    text = rst_table(rows) + "\n\n" + rst_table(crows)
    if results["atftp"]:
        text += "\n\natftp (C client), blksize 1468, lock-step: " + ", ".join(
            f"{server} {rate:.1f} MB/s" for server, rate in results["atftp"].items())
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/tftp.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=64, help="the large file (default 64)")
    parser.add_argument("--concurrent", type=int, default=200,
                        help="downloads at once of the 1 MiB file (default 200)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each measurement; medians are shown (default 3)")
    parser.add_argument("--pin", choices=sorted(PINNING), default="split",
                        help="split (default): the servers on CPU 0, the client on CPU 1; "
                        "same: all on CPU 0; none: where the kernel puts them")
    parser.add_argument("--workers", type=int, action="append", default=[],
                        help="also measure the concurrent downloads from pxed-tftp --workers N "
                        "(repeatable; with --pin none both servers may use every CPU, as "
                        "tftpd-hpa's per-client processes do)")
    parser.add_argument("--baseline", type=Path, default=None, metavar="CHECKOUT",
                        help="also measure the pxed of another checkout (a git worktree of "
                        "the commit before a change), as pxed-baseline: before and after "
                        "in the same run")
    parser.add_argument("--check-client", action="store_true",
                        help="also time atftp (a C client) on the lock-step download")
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    args = parser.parse_args(argv)
    args.repeat = max(1, args.repeat)
    if shutil.which("in.tftpd") is None:
        print("in.tftpd is missing: apt-get install tftpd-hpa", file=sys.stderr)
        return 2
    if args.pin != "none" and len(os.sched_getaffinity(0)) < 2:
        print("--pin needs two CPUs; use --pin none", file=sys.stderr)
        return 2
    results = run(args)
    where = {"split": "servers on CPU 0, client on CPU 1", "same": "servers and client on CPU 0",
             "none": "no CPU pinning"}[args.pin]
    print(f"median of {args.repeat} runs; {where}")
    print(table(results))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    failed = sum(r["failures"] for part in ("single", "grub", "concurrent")
                 for rs in results[part].values() for r in rs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
