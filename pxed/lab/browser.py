# -*- test-case-name: tests.test_lab_browser -*-
"""
Headless Chromium (Debian's C{chromium}) for looking at pxed's status page
the way a person would: the page's DOM after its scripts ran, and a
screenshot.

Only ever pointed at a pxed on loopback or inside a lab namespace.  Every
background service Chromium has (updates, sync, safe browsing, QUIC
probes) is switched off, and each run gets a fresh profile, so a run
sends nothing but the page's own requests and depends on nothing left
behind by another.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

__all__ = ["chromium", "chromium_argv", "render"]

#: Flags every run gets: headless, no sandbox (the tests run as root,
#: which Chromium's sandbox refuses), and no background traffic.
QUIET_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
    "--no-default-browser-check",
)


def chromium() -> str:
    """
    The browser's path.

    @raise FileNotFoundError: naming the Debian package when it is missing.
    """
    found = shutil.which("chromium")
    if found is None:
        raise FileNotFoundError("chromium is missing: install the Debian package chromium "
                                "(scripts/setup does)")
    return found


def chromium_argv(
    url: str,
    profile: Path,
    *,
    screenshot: Path | None = None,
    window: tuple[int, int] = (1280, 800),
    budget_ms: int = 5000,
    scale: float = 1.0,
) -> list[str]:
    """
    The command that loads C{url}, lets its scripts run for C{budget_ms}
    of virtual time, then prints the DOM (or, with C{screenshot}, saves
    a PNG of the window there).
    """
    argv = [chromium(), *QUIET_FLAGS, f"--user-data-dir={profile}",
            f"--window-size={window[0]},{window[1]}", f"--virtual-time-budget={budget_ms}",
            f"--force-device-scale-factor={scale}"]
    argv.append(f"--screenshot={screenshot}" if screenshot is not None else "--dump-dom")
    argv.append(url)
    return argv


def render(
    url: str,
    workdir: Path,
    name: str,
    *,
    prefix: Sequence[str] = (),
    screenshot: bool = False,
    window: tuple[int, int] = (1280, 800),
    budget_ms: int = 5000,
    scale: float = 1.0,
    timeout: float = 120.0,
) -> str:
    """
    Run Chromium once against C{url}, with a fresh profile below
    C{workdir}, and return the DOM it printed (or, with C{screenshot},
    the path of C{workdir}/C{name}.png).

    @param prefix: what runs it, e.g. C{["ip", "netns", "exec", NS]}.
    @raise RuntimeError: if Chromium fails; its output is in
        C{workdir}/C{name}.log.
    """
    profile = workdir / f"{name}.profile"
    if profile.exists():
        shutil.rmtree(profile)
    profile.mkdir(parents=True)
    shot = workdir / f"{name}.png" if screenshot else None
    if shot is not None:
        shot.unlink(missing_ok=True)
    log = workdir / f"{name}.log"
    argv = [*prefix, *chromium_argv(url, profile, screenshot=shot, window=window,
                                    budget_ms=budget_ms, scale=scale)]
    with open(log, "wb") as err:
        result = subprocess.run(argv, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                                timeout=timeout, env=_environment(workdir))
    shutil.rmtree(profile, ignore_errors=True)
    if result.returncode != 0 or (shot is not None and not shot.is_file()):
        raise RuntimeError(f"chromium exited with {result.returncode} for {url}; see {log}")
    return str(shot) if shot is not None else result.stdout.decode("utf-8", "replace")


def _environment(workdir: Path) -> dict[str, str]:
    # A HOME of its own: Chromium writes caches and crash reports there.
    import os

    home = workdir / "chromium-home"
    home.mkdir(exist_ok=True)
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
            "LANG": "C.UTF-8"}
