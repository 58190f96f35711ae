# -*- test-case-name: tests.test_grub_image -*-
"""
The ARM64 boot program pxed builds itself: GRUB for C{arm64-efi}, made
with C{grub-mkimage} from Debian's C{grub-efi-arm64-bin} modules.

Why build it: Debian has no arm64 iPXE, and its signed arm64 netboot GRUB
takes its server only from the DHCP ACK the firmware kept, so behind a
ProxyDHCP server it asks the site's router for its configuration and stops
at C{grub>}.  A GRUB image whose embedded configuration names the server
(C{root} and C{prefix} on C{(tftp,ADDR)}) finds pxed whatever the router
said.  That address is the one the client was answered from, so there is
one image per address pxed advertises (an interface, a relay subnet).

An image is built on first use (or ahead of it: L{GrubImageCache.prepare})
and kept on disk under a name that is the digest of everything that went
into it (the address, the module list, the module files, the
C{grub-mkimage} version), so a change of any input builds a new one and a
restart reuses the old one.  C{grub-mkimage} writes to a temporary file
that is renamed into place only once it is complete and looks like an EFI
program: no client ever gets half an image, and transfers in flight keep
the file they opened.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorProcess
from twisted.internet.utils import getProcessOutputAndValue
from twisted.logger import Logger

__all__ = [
    "ARM64_MODULE_DIRS",
    "DEFAULT_CACHE_DIR",
    "MODULES",
    "GrubImageCache",
    "GrubImageError",
    "early_config",
]

log = Logger()

#: Where the arm64-efi modules are looked for, in order: an arm64 host's
#: own C{grub-efi-arm64-bin}, then where C{scripts/setup} unpacks it.
ARM64_MODULE_DIRS = (
    Path("/usr/lib/grub/arm64-efi"),
    Path("/usr/local/lib/pxed/arm64/usr/lib/grub/arm64-efi"),
)

#: The default home of built images (systemd's C{CacheDirectory=pxed}).
DEFAULT_CACHE_DIR = Path("/var/cache/pxed")

#: Modules built into the image: the network stack (efinet drives the NIC
#: through the firmware; tftp and http are the file systems), the commands
#: the generated configurations use (linux/initrd, chainloader for
#: C{chain}, exit for C{local}, echo, sleep, test, cat), and gzio for
#: compressed kernels.  Anything else a configuration names is loaded from
#: C{/grub/arm64-efi/} on pxed, which serves the same module files.
MODULES = (
    "normal", "configfile", "linux", "boot", "echo", "test", "sleep", "gzio", "net", "efinet",
    "tftp", "http", "chain", "minicmd", "cat", "reboot", "halt",
)  # fmt: skip

#: Seconds a reading of the module directory is trusted while the
#: directory itself is unchanged.
LISTING_TTL = 5.0

#: The image's name prefix per platform (the names firmware conventions use).
_STEMS = {"arm64-efi": "grubaa64"}

_NAME = re.compile(r"^(?P<stem>grub[a-z0-9]+)-(?P<address>[0-9.]{7,15})\.efi$")


class GrubImageError(Exception):
    """
    The image cannot be built; the message is one line saying what is
    missing and how to get it.
    """


def early_config(address: str) -> str:
    """
    The configuration built into the image: GRUB's root and prefix on
    pxed's TFTP server at C{address}, whatever the DHCP ACK named.
    C{normal} then reads C{/grub/grub.cfg} from there, without first
    probing ten other names (C{grub.cfg-01-MAC}, C{grub.cfg-C0A84D...}):
    pxed's C{grub.cfg} finds each machine's own configuration itself.
    """
    return (f"set root=(tftp,{address})\nset prefix=(tftp,{address})/grub\n"
            "set feature_net_search_cfg=n\n")


@dataclass(frozen=True)
class _Tool:
    path: str
    version: str
    stat: tuple[int, int, int]


class GrubImageCache:
    """
    GRUB images for one platform, one per advertised address, built on
    demand and cached in C{cache_dir}.  Older images of an address are
    removed once a new one is in place.

    @param modules_dir: the platform's module directory; C{None} looks in
        L{ARM64_MODULE_DIRS}.
    @param mkimage: the C{grub-mkimage} program (a name on C{PATH}, or a
        path).
    @param eager: whether L{prepare} starts a build.
    """

    platform = "arm64-efi"

    def __init__(
        self,
        cache_dir: Path = DEFAULT_CACHE_DIR,
        modules_dir: Path | None = None,
        mkimage: str = "grub-mkimage",
        modules: Sequence[str] = MODULES,
        reactor: Any = None,
        eager: bool = True,
    ) -> None:
        self.cache_dir = Path(cache_dir)
        #: Whether L{prepare} starts a build (C{pxed explain} only names
        #: the image, and builds nothing).
        self.eager = eager
        self.configured_modules_dir = modules_dir
        self.mkimage = mkimage
        self.modules = tuple(modules)
        # Builds run as child processes of a real reactor (a test's clock
        # cannot run them: then the global reactor does).
        self.reactor = reactor if IReactorProcess.providedBy(reactor) else None
        self._tool: _Tool | None = None
        self._listing_memo: tuple[tuple[str, int, int], float, str] | None = None
        self._building: dict[Path, list[Deferred[Path]]] = {}
        #: Addresses this cache was asked to serve (by DHCP answers or the
        #: configuration): only these may be built on a client's request.
        self.advertised: set[str] = set()

    # -- what is there ----------------------------------------------------

    @property
    def directory(self) -> Path:
        return self.cache_dir / f"grub-{self.platform}"

    def modules_dir(self) -> Path:
        """
        The module directory in use.

        @raise GrubImageError: when there is none.
        """
        candidates = ((self.configured_modules_dir,) if self.configured_modules_dir is not None
                      else ARM64_MODULE_DIRS)
        for candidate in candidates:
            if (candidate / "moddep.lst").is_file() and (candidate / "kernel.img").is_file():
                return candidate
        where = " or ".join(str(c) for c in candidates)
        raise GrubImageError(
            f"cannot build the {self.platform} GRUB image: no GRUB {self.platform} modules in "
            f"{where} (Debian's grub-efi-arm64-bin, architecture arm64: run scripts/setup, or "
            "dpkg --add-architecture arm64, apt-get download grub-efi-arm64-bin:arm64 and "
            "dpkg-deb -x it into /usr/local/lib/pxed/arm64)"
        )

    def _grub_mkimage(self) -> _Tool:
        path = shutil.which(self.mkimage)
        if path is None:
            raise GrubImageError(
                f"cannot build the {self.platform} GRUB image: {self.mkimage} not found "
                "(install Debian's grub-common: apt-get install grub-common)"
            )
        st = os.stat(path)
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        if self._tool is None or self._tool.path != path or self._tool.stat != key:
            # Once per binary: an upgrade changes its stat, and so the version.
            try:
                out = subprocess.run([path, "--version"], capture_output=True, text=True,
                                     timeout=10, check=False).stdout.strip()
            except (OSError, subprocess.SubprocessError) as e:
                raise GrubImageError(f"cannot run {path} --version: {e}") from None
            self._tool = _Tool(path, out, key)
        return self._tool

    def problem(self) -> str | None:
        """
        What stops images from being built (one line), or C{None}.
        """
        try:
            self.modules_dir()
            self._grub_mkimage()
        except GrubImageError as e:
            return str(e)
        return None

    # -- names --------------------------------------------------------------

    def name(self, address: str) -> str:
        """
        The file name clients fetch the image for C{address} by, over TFTP
        and HTTP (C{grubaa64-192.168.77.1.efi}).
        """
        return f"{_STEMS[self.platform]}-{address}.efi"

    def address_of(self, name: str) -> str | None:
        """
        The address in an image name, or C{None} if C{name} is not one.
        """
        match = _NAME.match(name)
        if match is None or match["stem"] != _STEMS[self.platform]:
            return None
        try:
            return str(ipaddress.IPv4Address(match["address"]))
        except ValueError:
            return None

    def fingerprint(self, address: str) -> str:
        """
        The digest of every input of the image for C{address}: a change of
        any of them names a new file.
        """
        modules_dir = self.modules_dir()
        tool = self._grub_mkimage()
        digest = hashlib.sha256()
        for part in (self.platform, early_config(address), " ".join(self.modules),
                     tool.version, str(modules_dir), self._listing(modules_dir)):
            digest.update(part.encode() + b"\0")
        return digest.hexdigest()[:20]

    def _listing(self, modules_dir: Path) -> str:
        """
        The digest of the module files (names, sizes, times), read again
        when the directory changes (a package unpacked again renames files
        into it) and at least every L{LISTING_TTL} seconds (a file
        overwritten in place): every ARM64 answer asks, and a boot storm
        should not stat hundreds of files per DHCP packet.
        """
        st = os.stat(modules_dir)
        key = (str(modules_dir), st.st_ino, st.st_mtime_ns)
        now = time.monotonic()
        memo = self._listing_memo
        if memo is not None and memo[0] == key and now - memo[1] < LISTING_TTL:
            return memo[2]
        digest = hashlib.sha256()
        with os.scandir(modules_dir) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if entry.is_file():
                    info = entry.stat()
                    digest.update(f"{entry.name}:{info.st_size}:{info.st_mtime_ns}\0".encode())
        listing = digest.hexdigest()
        self._listing_memo = (key, now, listing)
        return listing

    def path(self, address: str) -> Path:
        """
        Where the image for C{address} is (or will be) with today's inputs.
        """
        return self.directory / f"{address}-{self.fingerprint(address)}.efi"

    def servable(self, address: str) -> bool:
        """
        Whether a client may have the image for C{address}: pxed advertised
        that address since it started, or its image for today's inputs is
        on disk already (built before a restart).  Other addresses build
        nothing, whatever a client asks for.
        """
        if address in self.advertised:
            return True
        try:
            return self.path(address).is_file()
        except GrubImageError:
            return False

    # -- building -----------------------------------------------------------

    def prepare(self, address: str) -> Deferred[Path]:
        """
        Note that pxed advertises C{address} and start building its image
        if there is none yet (so it is ready when the client asks).
        Failures are logged, not raised.
        """
        self.advertised.add(address)
        if not self.eager:
            return defer.succeed(self.directory / self.name(address))
        d = self.image(address)
        d.addErrback(lambda f: log.error("{error}", error=f.getErrorMessage()))
        return d

    def image(self, address: str) -> Deferred[Path]:
        """
        The complete image for C{address}, built first if needed.  Several
        requests during one build share it.

        @return: a Deferred firing with the image's path, or failing with
            L{GrubImageError}.
        """
        try:
            target = self.path(address)
        except GrubImageError as e:
            return defer.fail(e)
        if target.is_file():
            return defer.succeed(target)
        waiting = self._building.get(target)
        d: Deferred[Path] = Deferred()
        if waiting is not None:
            waiting.append(d)
            return d
        self._building[target] = [d]
        defer.ensureDeferred(self._build(address, target)).addBoth(self._built, target)
        return d

    def _built(self, result: Any, target: Path) -> None:
        for d in self._building.pop(target, []):
            d.callback(result) if isinstance(result, Path) else d.errback(result)

    async def _build(self, address: str, target: Path) -> Path:
        modules_dir = self.modules_dir()
        tool = self._grub_mkimage()
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise GrubImageError(f"cannot create the GRUB image cache {target.parent}: "
                                 f"{e.strerror}") from None
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        early = target.with_name(f".{target.name}.{os.getpid()}.cfg")
        try:
            early.write_text(early_config(address))
            args = ["-O", self.platform, "-d", str(modules_dir), "-p", "/grub",
                    "-c", str(early), "-o", str(temporary), *self.modules]
            out, err, code = await getProcessOutputAndValue(
                tool.path, args, env=dict(os.environ), reactor=self.reactor)
            if code != 0:
                why = (err or out).decode(errors="replace").strip().splitlines()
                raise GrubImageError(f"{tool.path} failed for {address} (exit {code}): "
                                     f"{why[-1] if why else 'no message'}")
            with open(temporary, "rb") as f:
                if f.read(2) != b"MZ":
                    raise GrubImageError(f"{tool.path} wrote no EFI program for {address}")
                os.fsync(f.fileno())
            os.replace(temporary, target)
        finally:
            for leftover in (temporary, early):
                leftover.unlink(missing_ok=True)
        self._remove_older(address, target)
        log.info("built the {platform} GRUB image for {address}: {path} ({size} bytes)",
                 platform=self.platform, address=address, path=str(target),
                 size=target.stat().st_size)
        return target

    def _remove_older(self, address: str, keep: Path) -> None:
        for old in self.directory.glob(f"{address}-*.efi"):
            if old != keep:
                old.unlink(missing_ok=True)
