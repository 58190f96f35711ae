"""
What the QEMU end-to-end test modules share: the precondition check and
the verdict on one boot.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from twisted.trial import unittest

from pxed.lab.demo import BootRun
from pxed.lab.netns import tail

BOOT_TIMEOUT = 300.0


def require_lab() -> None:
    """
    Fail (never skip) when the lab cannot run: CI installs what it needs.
    """
    if os.geteuid() != 0:
        raise AssertionError("the end-to-end boots need root (network namespaces, tap)")
    for tool in ("qemu-system-x86_64", "dnsmasq", "tshark", "ip"):
        if shutil.which(tool) is None:
            raise AssertionError(f"{tool} is missing: run scripts/setup")


def assert_booted(case: unittest.TestCase, run: BootRun, workdir: Path) -> str:
    """
    The boot printed its marker, pxed survived it and saw the beacon; the
    capture is deleted on success and kept with the logs on failure.

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
    run.pcap.unlink(missing_ok=True)
    return log
