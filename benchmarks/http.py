# -*- test-case-name: tests.test_http_benchmark -*-
"""
Kernel and initrd downloads over HTTP: pxed's HTTP server next to nginx,
on loopback, the same file from both.

    .venv/bin/python benchmarks/http.py              # prints the table
    .venv/bin/python benchmarks/http.py --repeat 5 --json out.json

In one run it starts both servers on 127.0.0.1 and high ports, serving one
directory: pxed as C{twistd pxed} builds its HTTP site (the policy's
routes, metering, the boot log; the file through an export,
C{/_/export/bench/NAME}, served by the same code as a kernel named by a
policy), logging to a file at info level; and nginx (Debian's, started
here with its own prefix and configuration, never the system service: one
worker process, C{sendfile on}, an access log to a file).  Then, for 1 and
4 connections at once, each connection (a C{curl}, keep-alive) downloads
the file C{--downloads} times; the figure is the bytes over the time until
the last one ended.  Every download's status and size are checked.  Runs
alternate between the servers and each figure is the median of
C{--repeat} runs.  By default the servers run on CPU 0 and the clients on
CPU 1 (C{--pin same}: all on CPU 0; C{--pin none}: anywhere).
"""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.servers import env, rst_table  # noqa: E402
from pxed.lab.procs import stop_pid  # noqa: E402

__all__ = ["main", "run", "table"]

ADDRESS = "127.0.0.1"
MIB = 1 << 20
CONNECTIONS = (1, 4)
PINNING = {"split": (0, 1), "same": (0, 0), "none": (None, None)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((ADDRESS, 0))
        port: int = s.getsockname()[1]
    return port


def _ready(port: int, path: str, timeout: float = 30.0) -> bool:
    """Whether C{path} answers 200 on C{port}."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / 0.1) + 1):
        done = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-r", "0-0",
                               f"http://{ADDRESS}:{port}{path}"],
                              capture_output=True, text=True, timeout=30)
        if done.stdout.strip() in ("200", "206"):
            return True
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    return False


def serve_pxed(config_path: str, port: int, log_path: str) -> None:
    """
    Run pxed's HTTP site on 127.0.0.1:C{port} until killed, logging from
    info up to C{log_path} as C{twistd pxed} does; the service's other
    listeners stay closed, its other services (the policy runtime) run.
    """
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner

    from pxed import logs
    from pxed.config import load_config
    from pxed.service import makeBootService

    logs.write_to(log_path)
    globalLogBeginner.beginLoggingTo([logs.text_observer()], redirectStandardIO=False)
    if hasattr(logs, "sole_observer"):  # as twistd with pxed's --logger (not in old checkouts)
        logs.sole_observer()
    top = makeBootService(load_config(config_path), reactor=reactor)
    for child in top:
        if child.name not in ("proxydhcp", "dhcp", "bootserver", "tftp", "http"):
            child.startService()
    site = top.getServiceNamed("http").factory  # type: ignore[attr-defined]
    reactor.listenTCP(port, site, interface="127.0.0.1")  # type: ignore[attr-defined]
    print("listening", flush=True)
    reactor.run()  # type: ignore[attr-defined]


def _pxed_config(work: Path, root: Path) -> Path:
    kernel = work / "vmlinuz"
    kernel.write_bytes(b"kernel")
    config = work / "pxed.yaml"
    config.write_text(
        "server:\n"
        "  address: 127.0.0.1\n"
        "boot:\n"
        f"  default: {{kernel: {kernel}}}\n"
        "policy:\n"
        f"  state_file: {work / 'state.json'}\n"
        f"  exports: {{bench: {root}}}\n"
    )
    return config


def start_pxed(work: Path, root: Path, port: int, cpu: int | None,
               checkout: Path = REPO) -> subprocess.Popen[bytes]:
    """
    pxed's HTTP site, from this checkout or (C{--baseline}) another one:
    L{serve_pxed}'s own text runs there, so an old checkout needs no copy
    of this benchmark.
    """
    config = _pxed_config(work, root)
    code = (inspect.getsource(serve_pxed)
            + "\nimport sys\nserve_pxed(sys.argv[1], int(sys.argv[2]), sys.argv[3])\n")
    argv = [sys.executable, "-c", "from __future__ import annotations\n" + code,
            str(config), str(port), str(work / "pxed.log")]
    name = "pxed" if checkout == REPO else "pxed-baseline"
    return _spawn(argv, work / f"{name}.out", cpu, checkout)


def start_nginx(work: Path, root: Path, port: int, cpu: int | None) -> subprocess.Popen[bytes]:
    prefix = work / "nginx"
    prefix.mkdir()
    user = "user root;\n" if os.geteuid() == 0 else ""
    (prefix / "nginx.conf").write_text(
        f"{user}worker_processes 1;\n"
        "daemon off;\n"
        f"pid {prefix / 'nginx.pid'};\n"
        f"error_log {prefix / 'error.log'};\n"
        "events { worker_connections 64; }\n"
        "http {\n"
        f"  access_log {prefix / 'access.log'};\n"
        "  default_type application/octet-stream;\n"
        "  sendfile on;\n"
        "  tcp_nopush on;\n"
        + "".join(f"  {kind}_temp_path {prefix / kind};\n"
                  for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        + f"  server {{ listen {ADDRESS}:{port}; root {root}; location /_/export/bench/ "
        f"{{ alias {root}/; }} }}\n"
        "}\n")
    argv = ["nginx", "-p", str(prefix), "-c", str(prefix / "nginx.conf"),
            "-e", str(prefix / "error.log")]
    return _spawn(argv, work / "nginx.out", cpu)


def _spawn(argv: list[str], log: Path, cpu: int | None,
           checkout: Path = REPO) -> subprocess.Popen[bytes]:
    out = open(log, "wb")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=env(checkout), cwd=checkout)
    out.close()
    if cpu is not None:
        # nginx's worker inherits it.
        os.sched_setaffinity(proc.pid, {cpu})
    return proc


def download(port: int, path: str, size: int, connections: int, downloads: int,
             cpu: int | None) -> dict[str, Any]:
    """C{connections} curls at once, each fetching C{path} C{downloads} times."""
    url = f"http://{ADDRESS}:{port}{path}"
    argv = ["curl", "-s", "-w", "%{http_code} %{size_download}\\n"]
    for _ in range(downloads):
        argv += ["-o", "/dev/null", url]
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu), *argv]
    started = time.perf_counter()
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
             for _ in range(connections)]
    outputs = [p.communicate(timeout=600)[0].decode() for p in procs]
    seconds = time.perf_counter() - started
    lines = [line.split() for out in outputs for line in out.splitlines() if line.strip()]
    good = sum(1 for code, got in lines if code == "200" and int(got) == size)
    failures = connections * downloads - good
    return {"connections": connections, "mb_s": good * size / MIB / seconds,
            "failures": failures}


def run(args: argparse.Namespace) -> dict[str, Any]:
    server_cpu, client_cpu = PINNING[args.pin]
    results: dict[str, Any] = {"pin": args.pin, "size_mib": args.size_mib, "rows": {}}
    with tempfile.TemporaryDirectory(prefix="pxed-http-bench-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)
        root = work / "root"
        root.mkdir()
        root.chmod(0o755)
        size = args.size_mib * MIB
        with open(root / "initrd.img", "wb") as f:
            for _ in range(args.size_mib):
                f.write(os.urandom(MIB))
        (root / "initrd.img").chmod(0o644)
        path = "/_/export/bench/initrd.img"
        procs: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
        try:
            starts: list[tuple[str, Any]] = [("nginx", start_nginx), ("pxed", start_pxed)]
            if args.baseline is not None:
                starts.append(("pxed-baseline",
                               functools.partial(start_pxed, checkout=args.baseline.resolve())))
            for server, start in starts:
                port = _free_port()
                procs[server] = (start(work, root, port, server_cpu), port)
            for server, (_proc, port) in procs.items():
                if not _ready(port, path):
                    out = (work / f"{server}.out").read_text()[-2000:]
                    raise RuntimeError(f"{server} did not start: {out}")
            runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
            for _ in range(args.repeat):
                for connections in CONNECTIONS:
                    for server, (_proc, port) in procs.items():
                        runs.setdefault((server, connections), []).append(
                            download(port, path, size, connections, args.downloads,
                                     client_cpu))
            for (server, connections), rows in runs.items():
                results["rows"].setdefault(server, []).append({
                    "connections": connections,
                    "mb_s": round(statistics.median(r["mb_s"] for r in rows), 1),
                    "failures": sum(r["failures"] for r in rows)})
            for server, (proc, _port) in procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{server} exited during the benchmark")
        finally:
            for proc, _ in procs.values():
                stop_pid(proc.pid, proc, grace=10)
    return results


def table(results: dict[str, Any]) -> str:
    nginx = {r["connections"]: r["mb_s"] for r in results["rows"]["nginx"]}
    rows = [("server", "connections", "MB/s", "vs nginx", "failures")]
    for server in ("nginx", "pxed", "pxed-baseline"):
        for r in results["rows"].get(server, ()):
            ref = nginx[r["connections"]]
            rows.append((server, str(r["connections"]), f"{r['mb_s']:.1f}",
                         f"{r['mb_s'] / ref:.2f}x" if ref else "-", str(r["failures"])))
    return rst_table(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/http.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=64, help="the file (default 64)")
    parser.add_argument("--downloads", type=int, default=4,
                        help="downloads per connection in each run (default 4)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each measurement; medians are shown (default 3)")
    parser.add_argument("--pin", choices=sorted(PINNING), default="split",
                        help="split (default): the servers on CPU 0, the clients on CPU 1; "
                        "same: all on CPU 0; none: where the kernel puts them")
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    parser.add_argument("--baseline", type=Path, default=None, metavar="CHECKOUT",
                        help="also measure the pxed of another checkout (as pxed-baseline), "
                        "in turns with the others")
    args = parser.parse_args(argv)
    args.repeat = max(1, args.repeat)
    for tool in ("nginx", "curl"):
        if shutil.which(tool) is None:
            print(f"{tool} is missing: apt-get install {tool}", file=sys.stderr)
            return 2
    if args.pin != "none" and len(os.sched_getaffinity(0)) < 2:
        print("--pin needs two CPUs; use --pin none", file=sys.stderr)
        return 2
    results = run(args)
    where = {"split": "servers on CPU 0, clients on CPU 1", "same": "servers and clients on CPU 0",
             "none": "no CPU pinning"}[args.pin]
    print(f"median of {args.repeat} runs; {args.size_mib} MiB file, {args.downloads} downloads "
          f"per connection; {where}")
    print(table(results))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    failed = sum(r["failures"] for rows in results["rows"].values() for r in rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
