# -*- test-case-name: tests.test_doctor -*-
"""
The doctor's findings, and the checks that need no DHCP probe: the ports
(free, held by pxed, or held by something else), the files the
configuration names, and the shared database, if one is configured.

Each finding says which kinds of boot it would break, so the report can
end with what an operator actually wants to know: will my BIOS machines
boot, will my UEFI machines?
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pxed.config import Config
from pxed.policy import Chain, Rule
from pxed.policy.actions import BootSpec, is_url
from pxed.ports import PortHolder, port_holders

__all__ = ["Finding", "BIOS", "UEFI", "HTTP_BOOT", "IPXE", "EVERY_BOOT", "ARM64",
           "ONCE", "port_findings", "file_findings", "arm64_findings", "state_findings",
           "is_pxed"]

BIOS = "BIOS PXE"
UEFI = "UEFI PXE"
HTTP_BOOT = "UEFI HTTP Boot"
IPXE = "iPXE (script, kernel, initrd)"
ARM64 = "ARM64 UEFI (PXE and HTTP Boot)"
#: Every boot pxed gives goes through iPXE, whatever the firmware.
EVERY_BOOT = (BIOS, UEFI, HTTP_BOOT, IPXE)

#: What each port carries, and so what breaks without it.
_PORTS = (
    ("dhcp", "udp", (BIOS, UEFI, HTTP_BOOT, IPXE), "ProxyDHCP offers"),
    ("pxe", "udp", (UEFI,), "the PXE boot server (UEFI firmware asks it for its file)"),
    ("tftp", "udp", (BIOS, UEFI), "TFTP (PXE firmware loads iPXE with it)"),
    ("http", "tcp", (HTTP_BOOT, IPXE), "HTTP (scripts, kernels, HTTP Boot programs)"),
)


@dataclass(frozen=True)
class Finding:
    """
    @ivar level: C{"ok"}, C{"info"}, C{"warn"} or C{"fail"} (C{fail}
        findings would break the boots in C{breaks}).
    """

    level: str
    topic: str
    message: str
    breaks: tuple[str, ...] = ()


def is_pxed(holder: PortHolder) -> bool:
    """
    Whether C{holder} is a pxed (C{twistd pxed}, C{pxed-tftp}, or a
    program embedding it with pxed on its command line).
    """
    try:
        cmdline = Path(f"/proc/{holder.pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"pxed" in cmdline


def port_findings(config: Config,
                  holders: object = port_holders) -> Iterator[Finding]:
    for name, kind, breaks, what in _PORTS:
        port = getattr(config.server.ports, name)
        key = f"server.ports.{name}"
        label = f"{kind.upper()} {port} ({key})"
        if port == 0:
            yield Finding("info", label, "port 0: picked at start-up, not checked")
            continue
        found = holders(kind, port)  # type: ignore[operator]
        others = [h for h in found if not is_pxed(h)]
        ours = [h for h in found if is_pxed(h)]
        if others:
            yield Finding("fail", label, f"held by {', '.join(map(str, others))}: pxed cannot "
                          f"have it, so {what} would be someone else's", breaks)
        elif ours:
            yield Finding("ok", label, f"held by pxed: {', '.join(map(str, ours))}")
        else:
            # Free is what pxed needs to start; whether it should be
            # answering already, the offer, TFTP and HTTP checks say.
            yield Finding("warn", label, f"free: nothing listens (pxed is not running), so no "
                          f"{what} until it starts")


def _readable_by_others(path: Path) -> bool:
    """
    Whether a user other than the owner could read C{path}: the systemd
    unit runs pxed as a dynamic user, not as the files' owner.
    """
    try:
        if not path.stat().st_mode & stat.S_IROTH:
            return False
        return all(parent.stat().st_mode & stat.S_IXOTH for parent in path.resolve().parents)
    except OSError:
        return False


def _named_files(config: Config) -> Iterator[tuple[str, str, tuple[str, ...]]]:
    """
    (what, path, boots it breaks) for every local file the configuration
    names.
    """
    for slug, path in config.bootloaders.items():
        breaks = {"x86-bios": (BIOS,), "x64-uefi": (UEFI, HTTP_BOOT)}.get(slug, ())
        yield f"bootloaders.{slug}", str(path), breaks or (f"{slug} PXE",)
    specs: list[tuple[str, object]] = []
    if config.default is not None:
        specs.append(("boot.default", config.default))
    specs += [(f"boot.machines.{mac}", spec) for mac, spec in config.machines.items()]
    specs += [(f"policy.rules: {rule.name}", rule.action) for rule in config.policy.rules
              if isinstance(rule, Rule)]
    for where, action in specs:
        locations: tuple[str, ...] = ()
        if isinstance(action, BootSpec):
            locations = action.files()
        elif isinstance(action, Chain):
            locations = (action.target,)
        for location in locations:
            if not is_url(location):
                yield where, location, EVERY_BOOT


def file_findings(config: Config) -> Iterator[Finding]:
    for what, location, breaks in _named_files(config):
        path = Path(location)
        if not os.access(path, os.R_OK) or not path.is_file():
            yield Finding("fail", what, f"{location} is missing or unreadable", breaks)
        elif not _readable_by_others(path):
            yield Finding("warn", what, f"{location} is readable by its owner only: the systemd "
                          "unit's dynamic user could not read it")
        else:
            yield Finding("ok", what, f"{location} is readable")
    directories = [("tftp.root", config.tftp.root)] + [
        (f"policy.exports.{name}", path) for name, path in config.policy.exports.items()]
    for what, directory in directories:
        if directory is None:
            continue
        if not os.access(directory, os.R_OK | os.X_OK):
            yield Finding("fail", what, f"{directory} cannot be read", ())
        else:
            yield Finding("ok", what, f"{directory} is readable")


def arm64_findings(config: Config) -> Iterator[Finding]:
    """
    Whether pxed can build the GRUB image ARM64 clients get when
    C{bootloaders.arm64-uefi} names none (a warning, not a failure: many
    sites have no ARM64 machine).
    """
    from pxed.runtime import image_cache

    images = image_cache(config.arm64, eager=False)
    if images is None or "arm64-uefi" in config.bootloaders:
        return
    topic = "ARM64 GRUB image"
    problem = images.problem()
    if problem is not None:
        yield Finding("warn", topic, f"{problem}: ARM64 clients would get no answer", (ARM64,))
        return
    cache = images.cache_dir
    existing = next((p for p in (cache, *cache.parents) if p.exists()), cache)
    if not os.access(existing, os.W_OK | os.X_OK):
        yield Finding("warn", topic, f"{cache} is not writable: pxed cannot keep the images it "
                      "builds (arm64.cache_dir; the systemd unit's CacheDirectory=pxed)", (ARM64,))
        return
    yield Finding("ok", topic, f"can be built from {images.modules_dir()} into "
                  f"{images.directory}")


#: What a shared database that does not answer costs (see README, "Running
#: several pxed"): machines a 'once' rule matches get no answer meanwhile.
ONCE = "'once' installs"


def state_findings(config: Config) -> Iterator[Finding]:
    """
    With C{state.url}: whether the database answers, and whether its pxed
    schema is one this pxed can use.
    """
    url = config.state.url
    if url is None:
        return
    import psycopg

    from pxed.config.state import describe_url
    from pxed.pg.db import connect_options, first_line
    from pxed.pg.schema import SCHEMA_VERSION

    topic = f"database {describe_url(url)}"
    try:
        with psycopg.connect(url, autocommit=True, **connect_options(url)) as conn:
            try:
                row = conn.execute("SELECT max(version) FROM pxed_schema").fetchone()
            except psycopg.errors.UndefinedTable:
                row = None
    except psycopg.Error as e:
        starting = ("" if config.policy.signing_key is not None else
                    "; and a pxed cannot start without it unless policy.signing_key is set")
        yield Finding("fail", topic, f"does not answer: {first_line(e)}"
                      " (a running pxed serves on, but machines a once rule matches get no "
                      f"answer{starting})", (ONCE,))
        return
    version = row[0] if row and row[0] is not None else 0
    if version > SCHEMA_VERSION:
        yield Finding("fail", topic, f"its pxed schema is version {version}, newer than this "
                      f"pxed knows ({SCHEMA_VERSION}): upgrade pxed", EVERY_BOOT)
    elif version < SCHEMA_VERSION:
        yield Finding("ok", topic, f"answers; pxed brings its schema from version {version} to "
                      f"{SCHEMA_VERSION} when it starts")
    else:
        yield Finding("ok", topic, f"answers, schema version {version}")
