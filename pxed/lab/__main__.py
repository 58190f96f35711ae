# -*- test-case-name: tests.test_lab -*-
"""
Command line for the lab.

  python -m pxed.lab selftest --firmware bios|uefi|both --workdir DIR
      boot a QEMU client from a reference dnsmasq ProxyDHCP server (no pxed)
  python -m pxed.lab demo [--firmware bios|uefi|uefi-http|uefi-sb|...] [--lan relay|direct]
                          [--dhcp-server] [--workdir DIR]
      pxed's main job: boot a QEMU machine from a real pxed, console shown
  python -m pxed.lab cleanup --workdir DIR
      after a crash (e.g. SIGKILL), delete the namespaces recorded in
      DIR/lab.json and stop the processes still inside them
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from types import FrameType

from pxed.lab.demo import demo
from pxed.lab.lan2 import SHAPES
from pxed.lab.procs import netns_list, netns_pids, stop_pid
from pxed.lab.qemu import ALL_FIRMWARES, FIRMWARES
from pxed.lab.selftest import run_selftest


def _terminate(signum: int, frame: FrameType | None) -> None:
    """Turn SIGTERM/SIGHUP into SystemExit so the lab's finally-blocks tear down."""
    raise SystemExit(128 + signum)


def cleanup(workdir: Path) -> int:
    """
    Remove what a crashed run left behind, using its lab.json.

    Only namespaces named in that file are touched, and only processes inside
    them (which can only have been started by that run) are stopped; PIDs from
    the file itself are not trusted because they may have been reused.
    """
    state_file = workdir / "lab.json"
    if not state_file.exists():
        print(f"{state_file} not found")
        return 1
    state = json.loads(state_file.read_text())
    existing = netns_list()
    for ns in state.get("namespaces", []):
        if ns not in existing:
            continue
        for pid in netns_pids(ns):
            print(f"stopping pid {pid} in {ns}")
            stop_pid(pid)
        print(f"deleting namespace {ns}")
        subprocess.run(["ip", "netns", "del", ns], check=False, timeout=30)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pxed.lab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    st = sub.add_parser("selftest", help="boot a client from a reference dnsmasq server")
    st.add_argument("--firmware", choices=[*FIRMWARES, "both"], default="both")
    st.add_argument("--workdir", type=Path, required=True)
    st.add_argument("--timeout", type=float, default=240.0, help="seconds per boot")
    st.add_argument("--ipv6-ra", action="store_true",
                    help="router also sends IPv6 RAs (skips iPXE's ~15 s IPv6 wait)")
    dm = sub.add_parser("demo", help="boot a QEMU machine from pxed and show its console")
    dm.add_argument("--firmware", choices=ALL_FIRMWARES, default="bios")
    dm.add_argument("--lan", choices=SHAPES, default=None,
                    help="boot on a second LAN: behind a DHCP relay, or with pxed multi-homed")
    dm.add_argument("--workdir", type=Path, default=None,
                    help="where logs, the capture and the payload go (default: a new temp dir)")
    dm.add_argument("--timeout", type=float, default=300.0, help="seconds for the boot")
    dm.add_argument("--dhcp-server", action="store_true",
                    help="pxed is the LAN's only DHCP server (dhcp.mode: full)")
    cl = sub.add_parser("cleanup", help="remove leftovers of a crashed run")
    cl.add_argument("--workdir", type=Path, required=True)
    args = parser.parse_args(argv)

    if os.geteuid() != 0:
        print("the lab needs root (network namespaces, tap devices)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    if args.command == "cleanup":
        return cleanup(args.workdir)
    if args.command == "demo":
        workdir = args.workdir or Path(tempfile.mkdtemp(prefix="pxed-demo-"))
        return demo(args.firmware, workdir.resolve(), args.timeout, args.lan,
                    dhcp_server=args.dhcp_server)
    firmwares = FIRMWARES if args.firmware == "both" else (args.firmware,)
    results = []
    for firmware in firmwares:
        workdir = args.workdir / firmware if len(firmwares) > 1 else args.workdir
        results.append(run_selftest(firmware, workdir, args.timeout, args.ipv6_ra))
    for r in results:
        print(f"{'PASS' if r.ok else 'FAIL'} {r.firmware} {r.seconds:.1f} s  {r.workdir}")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
