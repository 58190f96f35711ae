"""
End to end: what an operator sees of real boots.

In network namespaces of its own (L{pxed.lab.netns.Lab}), a real C{twistd
pxed} boots a UEFI machine (OVMF with EDK2's own PXE: the 4011 exchange
and TFTP, then iPXE over HTTP) and then a BIOS machine (SeaBIOS with
QEMU's iPXE ROM: straight to HTTP).  Afterwards, from inside the lab:

  - each machine's timeline (C{/_/machines/<mac>}) has every stage of its
    boot, in order, with the sizes of what it fetched;
  - C{/metrics} counts what happened;
  - headless Chromium, run inside the server's namespace against pxed's
    own address, shows both machines as "booted" on the status page, and
    saves screenshots (desktop and phone) in the test's folder.

These need root, QEMU, chromium and the Debian packages that
C{scripts/setup} installs, and fail (never skip) without them.  The
serial logs, pxed's log and the screenshots stay in the test's folder;
the capture is kept only on failure.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.trial import unittest

from pxed.lab.browser import chromium, render
from pxed.lab.demo import fetch_from_server, start_pxed
from pxed.lab.netns import Lab, tail
from pxed.lab.payload import MARKER, build_initrd, find_kernel
from pxed.testing.http import StatusRows
from tests.e2e import BIOS_STEPS, UEFI_STEPS, in_order, require_lab

BOOT_TIMEOUT = 240.0
UEFI_MAC = "52:54:00:77:00:60"
BIOS_MAC = "52:54:00:77:00:61"
SNPONLY = Path("/usr/lib/ipxe/snponly.efi")

class ObservedBootTests(unittest.TestCase):
    def fetch(self, lab: Lab, path: str) -> str:
        return fetch_from_server(lab, path)

    def test_timelines_metrics_and_status_page(self) -> None:
        require_lab()
        chromium()
        if not SNPONLY.is_file():
            raise AssertionError(f"{SNPONLY} is missing: run scripts/setup")
        workdir = Path(self.mktemp()).resolve()
        workdir.mkdir(parents=True)
        kernel, initrd = find_kernel(), build_initrd(workdir / "initrd.gz")
        token = secrets.token_hex(8)
        machine = (f"{{kernel: {kernel}, initrd: [{initrd}], "
                   f'cmdline: "console=ttyS0,115200 panic=-1 pxed.token={token}"}}')
        config = workdir / "pxed.yaml"
        config.write_text(
            "server:\n  ports: {dhcp: 67, pxe: 4011, tftp: 69, http: 80}\n"
            f'boot:\n  machines:\n    "{UEFI_MAC}": {machine}\n    "{BIOS_MAC}": {machine}\n'
        )
        pxed_log = workdir / "pxed.log"
        timings: dict[str, float] = {}
        with Lab(workdir) as lab:
            lab.start_router(ipv6_ra=True)
            pxed = start_pxed(lab, config, pxed_log)
            pcap = lab.start_capture()
            for firmware, mac in (("uefi", UEFI_MAC), ("bios", BIOS_MAC)):
                serial = workdir / f"serial-{firmware}.log"
                started = time.monotonic()
                qemu = lab.boot(firmware, serial, mac)
                ok = lab.wait_for(serial, f"{MARKER}{token}".encode(), BOOT_TIMEOUT, proc=qemu)
                timings[f"boot_{firmware}"] = round(time.monotonic() - started, 1)
                if qemu.poll() is None:
                    try:  # the payload powers off; anything else is stopped
                        qemu.wait(timeout=20)
                    except subprocess.TimeoutExpired:
                        qemu.kill()
                        qemu.wait(timeout=10)
                if not ok:
                    self.fail(f"{firmware} boot did not print the marker; kept in {workdir}\n"
                              f"--- serial (tail)\n{tail(serial, 30)}\n"
                              f"--- pxed (tail)\n{tail(pxed_log, 30)}")
            self.assertIsNone(pxed.poll(), f"pxed exited:\n{tail(pxed_log)}")

            started = time.monotonic()
            listing = json.loads(self.fetch(lab, "/_/machines"))
            details = {mac: json.loads(self.fetch(lab, f"/_/machines/{mac}"))
                       for mac in (UEFI_MAC, BIOS_MAC)}
            exposition = self.fetch(lab, "/metrics")
            timings["api"] = round(time.monotonic() - started, 1)

            started = time.monotonic()
            inside = ["ip", "netns", "exec", lab.srv]
            page = f"http://{lab.SERVER_IP}/_/status/"
            dom = render(page, workdir, "status-dom", prefix=inside)
            shot = render(f"{page}#{UEFI_MAC}", workdir, "status-page", prefix=inside,
                          screenshot=True, window=(1280, 900))
            phone = render(f"{page}#{BIOS_MAC}", workdir, "status-page-phone", prefix=inside,
                           screenshot=True, window=(390, 844))
            timings["browser"] = round(time.monotonic() - started, 1)
        (workdir / "timings.json").write_text(json.dumps(timings, indent=1))

        self.check_timelines(listing, details, kernel, initrd)
        self.check_metrics(exposition, kernel, initrd)

        rows = StatusRows()
        rows.feed(dom)
        self.assertEqual(rows.status, {UEFI_MAC: "booted", BIOS_MAC: "booted"}, dom[-3000:])
        for picture in (shot, phone):
            data = Path(picture).read_bytes()
            self.assertEqual(data[:8], b"\x89PNG\r\n\x1a\n", picture)
            self.assertGreater(len(data), 10_000, picture)
        pcap.unlink(missing_ok=True)  # kept only on failure

    def check_timelines(self, listing: dict[str, Any], details: dict[str, Any], kernel: Path,
                        initrd: Path) -> None:
        rows = {m["mac"]: m for m in listing["machines"]}
        self.assertEqual(set(rows), {UEFI_MAC, BIOS_MAC})
        for mac, steps in ((UEFI_MAC, UEFI_STEPS), (BIOS_MAC, BIOS_STEPS)):
            row, detail = rows[mac], details[mac]
            self.assertEqual((row["status"], row["progress"], row["loops"]), ("booted", 1.0, 0),
                             row)
            self.assertEqual(row["files"], {"expected": 2, "served": 2})
            events = detail["timeline"]
            self.assertEqual(in_order(events, steps), steps, json.dumps(events, indent=1))
            times = [e["when"] for e in events]
            self.assertEqual(times, sorted(times))
            fetched = {e["stage"]: e["fields"] for e in events if e["stage"] in ("kernel",
                                                                                  "initrd")}
            self.assertEqual(fetched["kernel"]["bytes"], kernel.stat().st_size)
            self.assertEqual(fetched["initrd"]["bytes"], initrd.stat().st_size)
            self.assertEqual(fetched["kernel"]["file"], kernel.name)
        uefi = details[UEFI_MAC]["timeline"]
        [program] = [e["fields"] for e in uefi
                     if e["stage"] == "tftp-end" and e["fields"]["outcome"] == "complete"]
        self.assertEqual((program["file"], program["bytes"]),
                         (SNPONLY.name, SNPONLY.stat().st_size))
        self.assertGreaterEqual(program["blksize"], 1024)  # EDK2 asks for 1468
        self.assertGreaterEqual(program["windowsize"], 2)  # and for a window of 4
        bios = details[BIOS_MAC]["timeline"]
        self.assertFalse([e for e in bios if e["stage"].startswith("tftp")])

    def check_metrics(self, exposition: str, kernel: Path, initrd: Path) -> None:
        values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for family in text_string_to_metric_families(exposition):
            for sample in family.samples:
                values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value

        def value(name: str, **labels: str) -> float:
            return values.get((name, tuple(sorted(labels.items()))), 0.0)

        def total(name: str, **labels: str) -> float:
            return sum(v for (n, have), v in values.items()
                       if n == name and labels.items() <= dict(have).items())

        self.assertEqual(value("pxed_machines_booted_total"), 2.0)
        self.assertEqual(value("pxed_boot_loops_total"), 0.0)
        self.assertEqual(value("pxed_boot_seconds_count"), 2.0)
        self.assertGreaterEqual(value("pxed_dhcp_requests_total", port="bootserver",
                                      type="request", arch="x64-uefi", outcome="acked"), 1.0)
        self.assertGreaterEqual(total("pxed_dhcp_requests_total", port="proxydhcp",
                                      outcome="offered"), 3.0)
        self.assertGreaterEqual(value("pxed_dhcp_replies_total", port="bootserver", type="ack"),
                                1.0)
        self.assertGreaterEqual(value("pxed_tftp_transfers_total", outcome="complete"), 1.0)
        self.assertGreaterEqual(value("pxed_tftp_bytes_total"), SNPONLY.stat().st_size)
        self.assertEqual(value("pxed_tftp_active_transfers"), 0.0)
        self.assertEqual(value("pxed_http_requests_total", kind="script", code="200"), 2.0)
        self.assertEqual(value("pxed_http_requests_total", kind="beacon", code="200"), 2.0)
        self.assertGreaterEqual(value("pxed_http_bytes_total", kind="file"),
                                2 * (kernel.stat().st_size + initrd.stat().st_size))
        for stage in ("kernel", "initrd", "booting", "script"):
            self.assertEqual(value("pxed_boot_stage_seconds_count", stage=stage), 2.0, stage)
