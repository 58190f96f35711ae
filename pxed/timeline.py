# -*- test-case-name: tests.test_timeline -*-
"""
What a machine's boot events mean: which boot attempt is the current one,
how far it got, whether it is stuck or going round in circles.

Pure: the events come from an L{pxed.state.IBootLog}, the time from the
caller.  Everything here is worked out again on every question rather than
kept, so every pxed sharing a store (and the status page, and the tests)
reaches the same conclusions from the same events.

The stages a boot goes through, in order (a machine skips those its
firmware does not need: a client that is iPXE from its first packet
starts at the iPXE DHCP):

  1. C{proxydhcp}: the ProxyDHCP offer to the firmware (C{dhcp}: the
     DHCP ACK, when pxed is the DHCP server);
  2. C{bootserver}: the DHCPACK on port 4011 (UEFI);
  3. C{tftp-start}, C{tftp-end}: the boot program by TFTP (or
     C{program}: by HTTP, for UEFI HTTP Boot);
  4. C{proxydhcp} again, to iPXE (C{kind} C{ipxe-script}): "iPXE DHCP";
  5. C{script}: the iPXE script;
  6. C{kernel}, C{initrd} (C{chain}, C{file}): what the script loads;
  7. C{booting}: the script's beacon, fetched just before C{boot}.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from pxed.state import BootEvent

__all__ = [
    "LABELS",
    "BootView",
    "current_boot",
    "fetch_key",
    "label",
    "milestone",
    "repeats",
    "script_files",
    "view",
]

#: A boot attempt ends with this stage: the beacon the script fetches
#: right before it hands over to the kernel.
BEACON = "booting"

#: A loop was detected (recorded by L{pxed.observe}).
LOOP = "loop"

#: A TFTP read of a file pxed does not serve, and a script that could not
#: be rendered: where a boot stops, so on its timeline.
TFTP_NOT_FOUND = "tftp-not-found"
SCRIPT_ERROR = "script-error"

#: Human names of the stages, for logs and the status page.
LABELS: Mapping[str, str] = {
    "proxydhcp": "ProxyDHCP offer",
    "dhcp": "DHCP ACK",
    "ipxe-dhcp": "iPXE DHCP",
    "bootserver": "boot server ACK (4011)",
    "tftp-start": "TFTP start",
    "tftp-end": "TFTP end",
    "tftp-upload": "TFTP upload",
    TFTP_NOT_FOUND: "TFTP file not found",
    SCRIPT_ERROR: "script error",
    "program": "boot program (HTTP)",
    "script": "iPXE script",
    "kernel": "kernel",
    "initrd": "initrd",
    "chain": "chained program",
    "file": "file",
    "export": "exported file",
    BEACON: "beacon",
    LOOP: "loop detected",
}

#: How far along a boot is once it reached each milestone (the files the
#: script loads fill the gap between the script and the beacon).
_PROGRESS: Mapping[str, float] = {
    "offer": 0.10,
    "bootserver": 0.20,
    "program": 0.35,
    "ipxe-dhcp": 0.45,
    "script": 0.55,
    "booted": 1.0,
}
_FILES_SHARE = 0.40

#: The answers to a firmware's (or iPXE's) DHCP: pxed's proxy offer, or
#: its ACK when it is the DHCP server (C{dhcp.mode: full}).
DHCP_STAGES = frozenset({"proxydhcp", "dhcp"})

#: Stages that are a file the script named.
FILE_STAGES = frozenset({"kernel", "initrd", "chain", "file"})

#: An earlier boot attempt is over when a DHCP request follows the beacon,
#: or follows this long a silence (the machine was switched off, or gave
#: up and was restarted).
NEW_BOOT_AFTER = 600.0

#: A boot that has not finished and has not been heard of for this long
#: is shown as stalled: that is where it stopped.
STALLED_AFTER = 120.0


def milestone(event: BootEvent) -> str | None:
    """
    The step of a boot that C{event} stands for, or C{None} for events
    that are not steps of their own (TFTP starts, aborted transfers, loop
    reports, exports).
    """
    stage = event.stage
    if stage in DHCP_STAGES:
        return "ipxe-dhcp" if event.fields.get("kind") == "ipxe-script" else "offer"
    if stage == "bootserver":
        return "bootserver"
    if stage == "tftp-end":
        return "program" if event.fields.get("outcome") == "complete" else None
    if stage == "program":
        return "program"
    if stage == "script":
        return "script"
    if stage in FILE_STAGES:
        return "file"
    if stage == BEACON:
        return "booted"
    return None


def label(event: BootEvent) -> str:
    """
    The human name of C{event}'s stage.
    """
    if event.stage in DHCP_STAGES and event.fields.get("kind") == "ipxe-script":
        return LABELS["ipxe-dhcp"]
    if event.stage == "script" and event.fields.get("loader") == "grub":
        return "GRUB configuration"
    return LABELS.get(event.stage, event.stage)


def _ends_boot(event: BootEvent) -> bool:
    # The beacon, or a script that sends the machine to its own disk
    # (pxed sees nothing more of such a boot).
    return event.stage == BEACON or (
        event.stage == "script" and event.fields.get("action") == "LocalBoot"
    )


def current_boot(events: Sequence[BootEvent], new_after: float = NEW_BOOT_AFTER) -> list[BootEvent]:
    """
    The events of the machine's latest boot attempt: from the DHCP request
    that began it to now.
    """
    start = 0
    for i in range(1, len(events)):
        event = events[i]
        if event.stage not in ("proxydhcp", "bootserver", "dhcp"):
            continue
        before = events[i - 1]
        if _ends_boot(before) or event.when - before.when > new_after:
            start = i
    return list(events[start:])


def fetch_key(event: BootEvent) -> str | None:
    """
    What a loop is made of: the boot program (or the script) a machine
    fetched, as a key that is the same each time it fetches it again.
    """
    if event.stage == "tftp-end" and event.fields.get("outcome") == "complete":
        return f"tftp:{event.fields.get('file')}"
    if event.stage == "program":
        return f"http:{event.fields.get('file')}"
    if event.stage == "script":
        return "script"
    return None


def repeats(events: Sequence[BootEvent], window: float) -> int:
    """
    How many times the machine fetched what its last event fetched,
    counting that one, without finishing a boot in between, within
    C{window} seconds: 0 if the last event fetched nothing.  A machine that
    keeps fetching the same program without ever reaching its beacon is
    going round in circles (iPXE chained into itself, a program that
    fails and reboots, a script that cannot load its kernel).
    """
    if not events:
        return 0
    last = events[-1]
    key = fetch_key(last)
    if key is None:
        return 0
    count = 0
    for event in reversed(events):
        if last.when - event.when > window or (_ends_boot(event) and event is not last):
            break
        if fetch_key(event) == key:
            count += 1
    return count


def script_files(text: str, base: str) -> dict[str, str]:
    """
    The files on pxed's own HTTP server (below C{base}) that an iPXE script
    loads, by URL path, with what each is: C{kernel}, C{initrd} or
    C{chain}.  The beacon is left out: it is a stage of its own.  Files on
    other servers are left out too: pxed never sees them fetched.
    """
    files: dict[str, str] = {}
    prefix = urlsplit(base)
    for line in text.splitlines():
        # Whitespace splits iPXE's words (its quoting never applies to the
        # URLs pxed writes); linear, unlike shlex, whatever the line holds.
        words = line.split()
        if not words or line.count('"') % 2 or line.count("'") % 2:
            continue  # nothing, or a quote iPXE would refuse
        kind = _COMMANDS.get(words[0])
        if kind is None:
            continue
        url = next((w for w in words[1:] if "://" in w), None)
        if url is None:
            continue
        parts = urlsplit(url)
        if (parts.scheme, parts.netloc) != (prefix.scheme, prefix.netloc):
            continue
        if parts.path == "/_/booting":
            continue
        files.setdefault(parts.path, kind)
    return files


_COMMANDS: Mapping[str, str] = {
    "kernel": "kernel",
    "initrd": "initrd",
    "module": "initrd",
    "chain": "chain",
    "imgexec": "chain",
    "imgfetch": "file",
}


@dataclass(frozen=True)
class BootView:
    """
    A machine's latest boot attempt, as the status page shows it.

    @ivar status: C{booting} (going on), C{booted} (the beacon came: the
        kernel and initrds are loaded and running), C{local} (sent to its
        own disk), C{looping} (see L{repeats}) or C{stalled} (not finished,
        and silent for L{STALLED_AFTER} seconds: it stopped there).
    @ivar progress: 0 to 1, how far the attempt got.
    """

    mac: str
    status: str
    stage: str
    label: str
    progress: float
    started: float
    last_seen: float
    arch: str | None
    address: str | None
    loops: int
    files_expected: int
    files_served: int
    events: tuple[BootEvent, ...]


def view(
    mac: str,
    events: Sequence[BootEvent],
    now: float,
    stalled_after: float = STALLED_AFTER,
    new_after: float = NEW_BOOT_AFTER,
) -> BootView | None:
    """
    Sum up a machine's latest boot attempt from its events, as of C{now}.
    """
    boot = current_boot(events, new_after)
    if not boot:
        return None
    progress = 0.0
    expected: dict[str, str] = {}
    served: set[str] = set()
    arch = address = None
    loops = 0
    booted = local = False
    for event in boot:
        fields = event.fields
        arch = fields.get("arch") or arch
        address = fields.get("peer") or address
        if event.stage == "script":
            expected = dict(fields.get("files") or {})
            served.clear()
            local = fields.get("action") == "LocalBoot"
        elif event.stage in FILE_STAGES and fields.get("path") is not None:
            served.add(fields["path"])
        elif event.stage == LOOP:
            loops += 1
        elif event.stage == BEACON:
            booted = True
        step = milestone(event)
        if step == "file":
            share = len(served & expected.keys()) / len(expected) if expected else 1.0
            progress = max(progress, _PROGRESS["script"] + _FILES_SHARE * share)
        elif step is not None:
            progress = max(progress, _PROGRESS[step])
    last = boot[-1]
    if booted:
        status = "booted"
    elif local:
        status, progress = "local", 1.0
    elif loops:
        status = "looping"
    elif now - last.when > stalled_after:
        status = "stalled"
    else:
        status = "booting"
    shown = next((e for e in reversed(boot) if e.stage != LOOP), last)
    return BootView(
        mac=mac,
        status=status,
        stage=shown.stage,
        label=label(shown),
        progress=round(progress, 3),
        started=boot[0].when,
        last_seen=last.when,
        arch=arch,
        address=address,
        loops=loops,
        files_expected=len(expected),
        files_served=len(served & expected.keys()),
        events=tuple(boot),
    )
