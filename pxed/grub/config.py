# -*- test-case-name: tests.test_grub_config -*-
"""
GRUB configurations: what a GRUB client (the Secure Boot chain's signed
GRUB, the ARM64 GRUB pxed builds) reads to boot a machine, generated from
the same policy actions as iPXE scripts.

Pure text generation, as L{pxed.ipxe}: the TFTP side
(L{pxed.grub.source}) decides the file names and renders the templates,
this module only writes GRUB script.

How a GRUB client finds its configuration: GRUB reads C{$prefix/grub.cfg}
(C{/grub/grub.cfg}) from the TFTP server, and TFTP tells pxed only the
client's address.  So that file (L{loader_config}) is the same for every
machine and loads the machine's own, by the MAC GRUB itself knows
(C{$net_default_mac}) and the platform it runs on (C{x86_64-efi},
C{arm64-efi} ...): C{/_/grub/PLATFORM/MAC.cfg} (L{machine_config_name}).
That needs no table of addresses, survives NAT and relays, and the
request for it tells pxed which machine is behind the address, so the
kernel and initrd fetched next land on the right timeline.

Files go by TFTP (GRUB under Secure Boot has no usable HTTP), by paths
on GRUB's root device (the TFTP server it read the configuration from).
The "booted" beacon is a per-boot file GRUB reads with C{source} once the
kernel and initrds are loaded, just before C{boot}: the same moment as
iPXE's beacon.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from pxed.machine import is_mac
from pxed.tftp.source import AccessViolation, name_parts

__all__ = [
    "GrubConfigError",
    "GrubEnv",
    "LOADER_NAME",
    "PLATFORMS",
    "beacon_name",
    "chain_config",
    "file_key",
    "is_beacon",
    "optional_probe",
    "ipxe_config",
    "kernel_words",
    "linux_config",
    "loader_config",
    "local_config",
    "machine_config_name",
    "no_boot_config",
    "parse_machine_config_name",
    "quote",
]

#: The name GRUB asks the TFTP server for (its C{$prefix} is C{/grub}).
LOADER_NAME = "grub/grub.cfg"

#: GRUB's C{${grub_cpu}-${grub_platform}} to the option 93 code of the
#: firmware it runs on, so rules that match on C{arch} or C{firmware}
#: decide for GRUB as they did for its DHCP request.
PLATFORMS: dict[str, int] = {
    "i386-pc": 0,
    "i386-efi": 6,
    "x86_64-efi": 7,
    "arm-efi": 10,
    "arm64-efi": 11,
    "riscv32-efi": 25,
    "riscv64-efi": 27,
}

#: Seconds an error stays on the console before GRUB hands back to the
#: firmware, so someone at the console can read it.
ERROR_PAUSE = 10

#: What shim asks for beside itself on every boot, and does well without.
_SHIM_PROBES = re.compile(r"^(?:revocations_[a-z]+|shim_certificate_[0-9]+)\.efi$")
_MACHINE_CONFIG = re.compile(r"^_/grub/([a-z0-9_]+-[a-z0-9]+)/([0-9A-Fa-f:-]{17})\.cfg$")


class GrubConfigError(Exception):
    """
    What the policy asks cannot be written as a GRUB configuration (a
    file GRUB cannot fetch, a command line GRUB would change).
    """


class LinuxBoot(Protocol):
    """
    What a GRUB Linux entry needs (L{pxed.policy.BootSpec} is one).
    Declared here, like L{pxed.ipxe.LinuxBoot}, so that this module, which
    the policy's actions call, imports neither the policy nor the
    templates.
    """

    @property
    def kernel(self) -> str: ...

    @property
    def initrds(self) -> tuple[str, ...]: ...

    @property
    def cmdline(self) -> str: ...

    @property
    def message(self) -> str: ...


class _Client(Protocol):
    @property
    def mac(self) -> str: ...


class Templates(Protocol):
    """
    What a GRUB configuration uses of the script environment
    (L{pxed.templates.ScriptEnv} is the one pxed passes).
    """

    @property
    def request(self) -> _Client: ...

    def render(self, text: str) -> str: ...


@dataclass(frozen=True)
class GrubEnv:
    """
    Everything a GRUB configuration for one machine refers to.

    @ivar script: renders the templates (command line, message) exactly
        as for an iPXE script: C{url()} and C{export()} still give HTTP
        URLs, for the kernel and installer that fetch them.
    @ivar file_path: a local file the configuration loads, to the path
        GRUB fetches it by on the TFTP server (raises L{GrubConfigError}
        for what GRUB cannot fetch, such as an http URL).
    @ivar beacon: the path of this boot's beacon.
    """

    script: Templates
    file_path: Callable[[str], str]
    beacon: str


def quote(word: str) -> str:
    """
    One GRUB script word that stands for C{word} exactly: single quotes
    keep everything (C{$}, C{;}, spaces, double quotes) literal; a single
    quote is closed, escaped and reopened, as in a POSIX shell.
    """
    return "'" + word.replace("'", "'\\''") + "'"


def _one_line(text: str) -> str:
    # A newline in a message or a command line would end the command.
    return " ".join(text.split())


def kernel_words(cmdline: str) -> list[str]:
    """
    The arguments to give GRUB's C{linux} command so that the kernel gets
    C{cmdline}.

    GRUB joins them with spaces, and rewrites each on the way: an argument
    with a space is put in double quotes, and C{"}, C{'} and C{\\} get a
    backslash (which the kernel keeps).  So the command line is split the
    way the kernel splits it (whitespace outside double quotes), the
    kernel's own double quotes are dropped (GRUB adds them back around a
    value with spaces: C{a="b c"} arrives as C{"a=b c"}, which the kernel
    reads the same), and a quote or backslash that would arrive changed
    is refused.

    @raise GrubConfigError: for a C{'}, C{\\} or stray C{"}.
    """
    words: list[str] = []
    for match in re.finditer(r'(?:[^\s"]+|"[^"]*")+|"[^"]*$', cmdline):
        word = match.group(0)
        if word.count('"') % 2:
            raise GrubConfigError(f"unbalanced double quote in the command line: {word}")
        plain = word.replace('"', "")
        bad = next((c for c in ("'", "\\") if c in plain), None)
        if bad is not None:
            raise GrubConfigError(
                f"GRUB would pass {bad!r} to the kernel with a backslash added: {word}")
        if plain:
            words.append(plain)
    return words


def _words(args: str) -> str:
    return "".join(" " + quote(w) for w in args.split())


def _header(mac: str, rule: str) -> str:
    return f"# Generated by pxed for {mac}{f' (rule {rule})' if rule else ''}."


def _give_up(reason: str) -> list[str]:
    """
    Say why, leave it on the screen a moment, and hand back to the
    firmware, which tries its next boot device (as iPXE's C{exit} does).
    """
    return [f"echo {quote('pxed: ' + _one_line(reason))}", f"sleep {ERROR_PAUSE}", "exit"]


def _beacon(path: str) -> str:
    # Reading it is the report; it holds only a comment, so it runs as nothing.
    return f"source {quote(path)}"


def linux_config(spec: LinuxBoot, env: GrubEnv, mac: str, rule: str = "") -> str:
    """
    Boot Linux: load the kernel with its command line, the initrds (GRUB
    hands them to the kernel itself, so no C{initrd=} arguments), fetch
    the beacon, boot.  The beacon and C{boot} run only if every file
    loaded; otherwise the error stays on the screen and the machine moves
    on to its next boot device.

    @raise GrubConfigError: a file GRUB cannot fetch, or a command line
        GRUB cannot pass on unchanged.
    @raise pxed.templates.RenderError: a template error.
    """
    words = kernel_words(_one_line(env.script.render(spec.cmdline)))
    message = _one_line(env.script.render(spec.message))
    kernel = env.file_path(spec.kernel)
    initrds = [env.file_path(location) for location in spec.initrds]
    lines = [_header(mac, rule)]
    if message:
        lines.append(f"echo {quote(message)}")
    lines.append(f"echo {quote('pxed: loading ' + kernel.rsplit('/', 1)[-1])}")
    lines.append(f"if linux {quote(kernel)}{''.join(' ' + quote(w) for w in words)}; then")
    indent = "  "
    if initrds:
        lines.append(f"  if initrd{''.join(' ' + quote(p) for p in initrds)}; then")
        indent = "    "
    lines += [f"{indent}{_beacon(env.beacon)}", f"{indent}boot"]
    if initrds:
        lines.append("  fi")
    lines.append("fi")
    lines += _give_up("the boot failed: see the error above")
    return "\n".join(lines) + "\n"


def chain_config(path: str, args: str, beacon: str, mac: str, rule: str = "") -> str:
    """
    Hand the machine to another EFI program (C{chainloader}, with C{args}
    as its load options).  The beacon goes first: once the program runs,
    pxed sees nothing more of this boot.  Under Secure Boot the program
    must be signed (GRUB asks shim to check it).
    """
    return "\n".join([
        _header(mac, rule),
        _beacon(beacon),
        f"if chainloader {quote(path)}{_words(args)}; then",
        "  boot",
        "fi",
        *_give_up("the chained program did not start: see the error above"),
    ]) + "\n"


def local_config(mac: str, rule: str = "") -> str:
    """
    Boot from the local disk: leaving GRUB (and shim) makes the firmware
    try its next boot device, as iPXE's C{exit} does.
    """
    return "\n".join([_header(mac, rule), "echo 'pxed: booting from the local disk'",
                      "exit"]) + "\n"


def ipxe_config(mac: str, rule: str = "") -> str:
    """
    An C{ipxe:} rule for a GRUB client: GRUB cannot run an iPXE script
    (and under Secure Boot cannot start iPXE either), so the machine is
    told so and handed back to the firmware.
    """
    return "\n".join([_header(mac, rule), *_give_up(
        f"rule {rule or '?'} is an iPXE script, which GRUB cannot run; give GRUB clients a "
        "linux, chain or local rule")]) + "\n"


def no_boot_config(reason: str, mac: str = "") -> str:
    """
    A configuration for a machine pxed has no GRUB boot for: say why and
    hand back to the firmware.
    """
    head = [_header(mac, "")] if mac else ["# Generated by pxed."]
    return "\n".join([*head, *_give_up(reason)]) + "\n"


def loader_config() -> str:
    """
    C{/grub/grub.cfg}: the same for every machine; it loads the
    machine's own configuration by its MAC and platform.
    """
    return "\n".join([
        "# Generated by pxed: each machine loads its own configuration, by MAC.",
        'if [ -z "${net_default_mac}" ]; then',
        "  echo 'pxed: GRUB has no network interface address (net_default_mac is empty)'",
        f"  sleep {ERROR_PAUSE}",
        "  exit",
        "fi",
        'source "/_/grub/${grub_cpu}-${grub_platform}/${net_default_mac}.cfg"',
        *_give_up("could not read this machine's configuration from pxed"),
    ]) + "\n"


def machine_config_name(platform: str, mac: str) -> str:
    """
    The TFTP name of a machine's configuration (without the leading
    slash GRUB sends).
    """
    return f"_/grub/{platform}/{mac}.cfg"


def parse_machine_config_name(name: str) -> tuple[str, str] | None:
    """
    The platform and MAC (lower case, colons) a configuration name is
    for, or C{None} if C{name} is not one.  GRUB writes MACs in lower
    case with colons; upper case and dashes (a person at a TFTP client)
    are accepted too.
    """
    match = _MACHINE_CONFIG.match(name)
    if match is None:
        return None
    mac = match.group(2).lower().replace("-", ":")
    if not is_mac(mac) or match.group(1) not in PLATFORMS:
        return None
    return match.group(1), mac


def beacon_name(mac: str, once: str | None = None) -> str:
    """
    The TFTP path of a boot's beacon; a 'once' rule's signed token makes
    this boot its last from that rule.
    """
    return f"/_/booting/{mac}" + (f"/{once}" if once else "")


def file_key(filename: str) -> str | None:
    """
    How a configuration names the TFTP file C{filename} (C{/_/file/ID/NAME},
    whatever slashes the client sent), or C{None} for any other name.
    """
    try:
        key = "/" + "/".join(name_parts(filename))
    except AccessViolation:
        return None
    return key if key.startswith("/_/file/") else None


def is_beacon(filename: str) -> bool:
    """
    Whether C{filename} is a beacon: its reading is a stage of its own
    (C{booting}), not a TFTP transfer on the timeline.
    """
    try:
        return name_parts(filename)[:2] == ["_", "booting"]
    except AccessViolation:
        return False


def optional_probe(filename: str) -> bool:
    """
    Whether C{filename} is one of the files shim and GRUB ask for on every
    boot and do well without (shim's revocation lists and extra
    certificate, GRUB's C{PLATFORM/*.lst} lists and C{PLATFORM/grub.cfg}):
    "file not found" is their normal answer, not where a boot stopped.
    """
    try:
        parts = name_parts(filename)
    except AccessViolation:
        return False
    if _SHIM_PROBES.match(parts[-1]):
        return True
    return (len(parts) == 3 and parts[0] == "grub" and parts[1] in PLATFORMS
            and (parts[2].endswith(".lst") or parts[2] == "grub.cfg"))
