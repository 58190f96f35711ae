# -*- test-case-name: tests.test_policy -*-
"""
The actions a rule can take: boot Linux, run an iPXE script, chain another
boot program, boot from the local disk, or ignore the machine.

Each is plain, comparable data that expresses itself through
L{IBootAction}: the protocols ask an action for its iPXE script or for a
file to hand PXE firmware, and never need to know which action it is.
"""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from zope.interface import implementer

from pxed import ipxe
from pxed.grub import config as grub
from pxed.policy.interfaces import IBootAction, ScriptEnvironment

if TYPE_CHECKING:
    from pxed.grub.config import GrubEnv

__all__ = ["BootSpec", "IPXEScript", "Chain", "LocalBoot", "Ignore", "is_url", "firmware_name",
           "firmware_directory"]


def _one_line(text: str) -> str:
    return " ".join(text.split())


def is_url(location: str) -> bool:
    """
    A file location is either a local path or an http(s) URL.
    """
    return location.startswith(("http://", "https://"))


def firmware_directory(path: str) -> str:
    """
    The TFTP name of the directory of a chained local file, as PXE firmware
    sees it: C{chain-} and a hash of the directory's path, so that two
    directories never collide, nor collide with the boot programs, and the
    name stays the same across restarts.  The whole directory is served
    under it, so what the program loads from beside itself is found.
    """
    directory = posixpath.dirname(path) or "/"
    digest = hashlib.sha256(directory.encode("utf-8")).hexdigest()[:12]
    return f"chain-{digest}"


def firmware_name(path: str) -> str:
    """
    The TFTP name under which PXE firmware fetches a chained local file:
    its base name in its directory's L{firmware_directory}.
    """
    return f"{firmware_directory(path)}/{posixpath.basename(path)}"


@dataclass(frozen=True, kw_only=True)
class _Action:
    """
    What every action carries besides its own parameters: where it came
    from, for logs, 'once' and trust.
    """

    silent: ClassVar[bool] = False
    rule: str = field(default="", compare=False)
    once: str | None = field(default=None, compare=False)
    remote_only: bool = False
    #: Local files a C{remote_only} action may still name: those the API
    #: gave as C{file://} URLs below C{policy.api.files}.
    local_files: frozenset[str] = field(default=frozenset(), compare=False)

    def firmware_file(self) -> str | None:
        return None

    def grub_config(self, env: GrubEnv) -> str:
        return grub.no_boot_config(f"rule {self.rule or '?'} has no GRUB form",
                                   env.script.request.mac)


@implementer(IBootAction)
@dataclass(frozen=True)
class BootSpec(_Action):
    """
    A Linux boot: a kernel, zero or more initrds and a command line.

    Each file is a local path (served by pxed's HTTP server) or an http(s)
    URL.  The command line is a template.

    @ivar initrd_args: add C{initrd=NAME} for each initrd to the command
        line, which Linux's EFI stub needs to find them.
    @ivar message: shown on the console before loading (the API's
        C{message}).
    """

    kernel: str
    initrds: tuple[str, ...] = field(default_factory=tuple)
    cmdline: str = ""
    initrd_args: bool = True
    message: str = ""

    def files(self) -> tuple[str, ...]:
        return (self.kernel, *self.initrds)

    def ipxe_script(self, env: ScriptEnvironment) -> str:
        return ipxe.linux_script(
            self, env.url, env.beacon_url, cmdline=env.render(self.cmdline),
            message=env.render(self.message),
        )

    def grub_config(self, env: GrubEnv) -> str:
        return grub.linux_config(self, env, env.script.request.mac, self.rule)


@implementer(IBootAction)
@dataclass(frozen=True)
class IPXEScript(_Action):
    """
    An iPXE script of the user's (inline, or read from a file when the
    configuration was loaded), rendered as a template.
    """

    script: str

    def ipxe_script(self, env: ScriptEnvironment) -> str:
        text = env.render(self.script)
        if not text.startswith("#!ipxe"):
            text = "#!ipxe\n" + text
        return text if text.endswith("\n") else text + "\n"

    def grub_config(self, env: GrubEnv) -> str:
        return grub.ipxe_config(env.script.request.mac, self.rule)


@implementer(IBootAction)
@dataclass(frozen=True)
class Chain(_Action):
    """
    Another boot program (GRUB, shim, wimboot, netboot.xyz ...): a local
    file or an http(s) URL, with optional arguments (a template).

    PXE firmware fetches a local file directly by TFTP; iPXE (and firmware
    sent to a URL, through iPXE) fetches it over HTTP.  No C{initrd=}
    arguments are added: they would break wimboot and others.
    """

    target: str
    args: str = ""

    def firmware_file(self) -> str | None:
        return None if is_url(self.target) else self.target

    def ipxe_script(self, env: ScriptEnvironment) -> str:
        return ipxe.chain_script(env.url(self.target), env.render(self.args), env.beacon_url)

    def grub_config(self, env: GrubEnv) -> str:
        args = _one_line(env.script.render(self.args))
        return grub.chain_config(env.file_path(self.target), args, env.beacon,
                                 env.script.request.mac, self.rule)


@implementer(IBootAction)
@dataclass(frozen=True)
class LocalBoot(_Action):
    """
    Boot from the local disk: iPXE exits back to the firmware, which moves
    on to its next boot device.
    """

    def ipxe_script(self, env: ScriptEnvironment) -> str:
        return ipxe.local_script()

    def grub_config(self, env: GrubEnv) -> str:
        return grub.local_config(env.script.request.mac, self.rule)


@implementer(IBootAction)
@dataclass(frozen=True)
class Ignore(_Action):
    """
    No answer at all, as if pxed were not there.
    """

    silent: ClassVar[bool] = True

    def ipxe_script(self, env: ScriptEnvironment) -> str:
        return ipxe.no_boot_script("this machine is ignored")
