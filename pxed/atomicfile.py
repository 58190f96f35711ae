# -*- test-case-name: tests.test_store -*-
"""
Replacing a file so that a crash or power cut at any moment leaves the old
content or the new, never a torn mix.

The state file (L{pxed.store}) and the lease file's snapshot
(L{pxed.leasefile}) are both written this way; one helper keeps the order
of steps (write beside, fsync, rename over, fsync the directory) in one
place.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["write_atomically"]


def write_atomically(path: Path, text: str, mode: int = 0o644) -> None:
    """
    Replace C{path} by C{text}: write a temporary file beside it (created
    with C{mode}, so a secret is never readable by others, even briefly),
    fsync it, rename it over C{path}, fsync the directory so the rename
    itself is durable.  On failure the temporary file is removed and
    C{path} is untouched.
    """
    directory = path.parent
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
