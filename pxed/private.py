# -*- test-case-name: tests.test_private -*-
"""
Files that hold secrets (the signing key, the admin token, the state file
with its key) must be pxed's alone.

Whoever can write the key or the state file can mint URLs pxed serves and
'once' tokens it honours; whoever can read them can do the same.  So such
a file is refused, with one line saying why and how to fix it, when
others can write it, when someone other than pxed's user (or root) owns
it, or when everyone can read it.  pxed creates its own (the state file)
with mode 0600.
"""

from __future__ import annotations

import os
import stat

__all__ = ["exposure"]


def exposure(info: os.stat_result, what: str = "it", *, holds_secret: bool = True) -> str | None:
    """
    Why a file with status C{info} is no place for a secret, or C{None}.

    @param holds_secret: C{False} for a file that holds none yet (a state
        file without a key): others may read it, not write it.
    """
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o022:
        return (f"{what} is writable by other users (mode {mode:04o}): "
                "chmod 600 it, it holds a secret")
    if info.st_uid not in (0, os.geteuid()):
        return (f"{what} belongs to user {info.st_uid}, not to pxed's user or root: "
                "chown it, it holds a secret")
    if mode & 0o004 and holds_secret:
        return (f"{what} is readable by every user (mode {mode:04o}): "
                "chmod 600 it, it holds a secret")
    return None
