# -*- test-case-name: tests.test_tftp_upload -*-
"""
The file side of an upload: the temporary file one write request fills,
the quota all uploads share, and the leftovers of a crashed run.

Kept apart from L{pxed.tftp.upload}, which decides where a write request
may go and speaks the protocol, because this part only knows files: the
data goes to a hidden temporary file beside the target (its name carries
the writer's process ID, so L{sweep} can tell a crash's leftovers from a
living worker's upload) and is moved into place only once complete, never
over an existing file unless that is allowed.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from .source import AccessViolation

__all__ = ["Upload", "Quota", "FileExists", "TooLarge", "sweep", "PART_SUFFIX"]

#: The end of an upload's temporary file's name (see L{Upload}).
PART_SUFFIX = ".part"


class FileExists(Exception):
    """The target exists and uploads may not replace files (TFTP error 6)."""


class TooLarge(Exception):
    """More than the upload limit (TFTP error 3)."""


class Upload:
    """
    One file being received: a temporary file beside C{path}, moved into
    place by L{commit} or removed by L{discard}.
    """

    def __init__(self, path: Path, overwrite: bool, max_size: int,
                 quota: Quota | None = None, replaces: int = 0) -> None:
        self.path = path
        self.overwrite = overwrite
        self.max_size = max_size
        self.size = 0
        self.quota = quota
        #: The size of the file this one replaces (given back once it has).
        self.replaces = replaces
        # The process ID in the name: at start-up, another pxed's (a worker
        # sharing the port) is left alone while it lives.
        self._temp = path.with_name(
            f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{PART_SUFFIX}")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        try:
            self._fd: int | None = os.open(self._temp, flags, 0o644)
        except OSError as e:
            raise AccessViolation(f"{path.name}: {e.strerror}") from None

    def write(self, data: bytes) -> None:
        """Append C{data}; L{TooLarge} past the limit, L{OSError} if the disk says no."""
        if self._fd is None:
            raise ValueError("write to a finished upload")
        if self.size + len(data) > self.max_size:
            raise TooLarge(f"more than {self.max_size} bytes")
        if self.quota is not None:
            self.quota.charge(len(data))
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        self.size += len(data)

    def commit(self) -> None:
        """Flush to disk and move into place (never over a file, unless allowed)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            if self.overwrite:
                os.replace(self._temp, self.path)
                if self.quota is not None:
                    self.quota.refund(self.replaces)
            else:
                # link() fails if the name exists: no window for a race.
                os.link(self._temp, self.path)
                os.unlink(self._temp)
        except FileExistsError:
            self._remove()
            if self.quota is not None:
                self.quota.refund(self.size)
            raise FileExists(self.path.name) from None
        except BaseException:
            self._remove()
            if self.quota is not None:
                self.quota.refund(self.size)
            raise

    def discard(self) -> None:
        """Give up: close and remove the temporary file."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
            self._remove()
            if self.quota is not None:
                self.quota.refund(self.size)

    def _remove(self) -> None:
        try:
            os.unlink(self._temp)
        except FileNotFoundError:
            pass


class Quota:
    """
    The bytes all uploads together may take in the upload root: the files
    there and the uploads under way.
    """

    def __init__(self, limit: int, used: int = 0) -> None:
        self.limit = limit
        self.used = used

    def charge(self, size: int) -> None:
        """Take C{size} bytes; L{TooLarge} if that would pass the limit."""
        if self.used + size > self.limit:
            raise TooLarge(f"the upload quota of {self.limit} bytes is used up")
        self.used += size

    def refund(self, size: int) -> None:
        self.used = max(0, self.used - size)


def _stale_part(name: str) -> bool:
    """
    Whether C{name} is an upload's temporary file that nobody is writing:
    its pxed is gone (a crash), or it is ours from before (PIDs are reused).
    """
    if not (name.startswith(".") and name.endswith(PART_SUFFIX)):
        return False
    pid = name[:-len(PART_SUFFIX)].rsplit(".", 2)[-2] if name.count(".") >= 3 else ""
    if not pid.isdigit() or int(pid) == os.getpid():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # alive, another user's
    return False


def sweep(root: Path) -> tuple[int, int]:
    """
    Remove the temporary files uploads left behind (a crash), and add up
    the rest: (files removed, bytes in the upload root).
    """
    removed = used = 0
    for directory, _, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            try:
                if _stale_part(name):
                    os.unlink(path)
                    removed += 1
                else:
                    used += os.lstat(path).st_size
            except OSError:
                continue
    return removed, used
