"""
What the QEMU end-to-end test modules share: the precondition check, the
steps each kind of boot must show on its timeline, and the verdict on one
boot.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from twisted.trial import unittest

from pxed.lab.demo import BootRun
from pxed.lab.netns import tail
from pxed.state import BootEvent
from pxed.timeline import milestone

BOOT_TIMEOUT = 300.0

#: The steps each boot must show on its timeline, in this order (see
#: L{pxed.timeline}): UEFI with EDK2's PXE (4011, then TFTP), BIOS with an
#: iPXE ROM (straight to the script), UEFI HTTP Boot (iPXE over HTTP).
UEFI_STEPS = ["offer", "bootserver", "tftp-start", "program", "ipxe-dhcp", "script", "kernel",
              "initrd", "booted"]
BIOS_STEPS = ["ipxe-dhcp", "script", "kernel", "initrd", "booted"]
HTTP_BOOT_STEPS = ["offer", "program", "ipxe-dhcp", "script", "kernel", "initrd", "booted"]
#: ARM64: EDK2's PXE (or HTTP Boot) fetches the GRUB pxed built, which
#: reads its configuration (the "script"), the kernel and initrd by TFTP.
ARM64_STEPS = ["offer", "bootserver", "tftp-start", "program", "script", "kernel", "initrd",
               "booted"]
ARM64_HTTP_STEPS = ["offer", "program", "script", "kernel", "initrd", "booted"]
STEPS = {"uefi": UEFI_STEPS, "bios": BIOS_STEPS, "uefi-http": HTTP_BOOT_STEPS,
         "arm64": ARM64_STEPS, "arm64-http": ARM64_HTTP_STEPS}
#: With pxed as the DHCP server, EDK2 boots the file named in the DHCP ACK:
#: no port-4011 step.
UEFI_FULL_DHCP_STEPS = ["offer", "tftp-start", "program", "ipxe-dhcp", "script", "kernel",
                        "initrd", "booted"]


def step(event: dict[str, Any]) -> str | None:
    """
    The step an event of the JSON API stands for: its milestone, with
    files told apart (kernel, initrd) and TFTP starts kept.
    """
    stage = event["stage"]
    if stage in ("kernel", "initrd", "tftp-start"):
        return stage
    return milestone(BootEvent("", stage, event["when"], event["fields"]))


def in_order(events: list[dict[str, Any]], steps: list[str]) -> list[str]:
    """
    The steps of C{steps} found in C{events} one after the other (a
    boot has more events than steps: retries, TFTP's size probe).
    """
    found: list[str] = []
    for event in events:
        if len(found) < len(steps) and step(event) == steps[len(found)]:
            found.append(steps[len(found)])
    return found


def require_lab() -> None:
    """
    Fail (never skip) when the lab cannot run: CI installs what it needs.
    """
    if os.geteuid() != 0:
        raise AssertionError("the end-to-end boots need root (network namespaces, tap)")
    for tool in ("qemu-system-x86_64", "dnsmasq", "tshark", "ip"):
        if shutil.which(tool) is None:
            raise AssertionError(f"{tool} is missing: run scripts/setup")


def assert_booted(case: unittest.TestCase, run: BootRun, workdir: Path,
                  steps: list[str] | None = None) -> str:
    """
    The boot printed its marker, pxed survived it and saw the beacon; the
    capture is deleted on success and kept with the logs on failure.
    C{steps} overrides the timeline steps expected of this firmware.

    @return: pxed's log of the boot, for further checks.
    """
    if not run.ok:
        case.fail(
            f"{run.firmware} boot did not print the marker; kept in {workdir}\n"
            f"--- serial (tail)\n{tail(run.serial, 30)}\n"
            f"--- pxed (tail)\n{tail(run.pxed_log, 30)}"
        )
    case.assertTrue(run.pxed_survived, f"pxed exited during the boot:\n{tail(run.pxed_log)}")
    log = run.pxed_log.read_text(errors="replace")
    case.assertIn(f"{run.mac}: booting", log, "the iPXE script's beacon never reached pxed")
    # What an operator would see: every step of this kind of boot, in order.
    steps = steps if steps is not None else STEPS[run.firmware]
    case.assertEqual(in_order(run.timeline, steps), steps, json.dumps(run.timeline, indent=1))
    run.pcap.unlink(missing_ok=True)
    return log
