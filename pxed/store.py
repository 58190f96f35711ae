# -*- test-case-name: tests.test_store -*-
"""
State that outlives a boot: 'once' flags, and the key that signs pxed's
URLs.

Behind L{IStateStore} so that sites running several pxed can keep it in a
shared store (Redis, PostgreSQL) without touching the rest of pxed.  Two
implementations ship: in memory (the default, lost on restart) and a small
JSON file, rewritten atomically (write a temporary file, fsync, rename,
fsync the directory) so a crash or power cut leaves either the old or the
new state, never a torn one.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

from pxed.atomicfile import write_atomically
from pxed.private import exposure
from pxed.signing import MIN_KEY_BYTES

__all__ = ["IStateStore", "MemoryStateStore", "FileStateStore", "StateFileError",
           "StateUnavailable", "read_state_file"]

log = Logger()

#: Enough for HMAC-SHA256.
KEY_BYTES = 32


class StateFileError(Exception):
    """
    The state file exists but cannot be used; the message says why.
    """


class StateUnavailable(Exception):
    """
    A shared store cannot be asked right now (its server is unreachable or
    too slow): what depends on it must not be decided without it.
    """


class IStateStore(Interface):
    def once_done(mac: str, rule: str) -> Deferred[bool]:
        """
        Whether C{mac} has booted the 'once' rule C{rule} already.
        """

    def mark_once(mac: str, rule: str) -> Deferred[None]:
        """
        Record that C{mac} booted C{rule}; the next boot falls through.
        """

    def clear_once(mac: str, rule: str | None = None) -> Deferred[None]:
        """
        Forget one flag, or all of C{mac}'s (to install a machine again).
        """

    def claim_once(mac: str, rule: str) -> Deferred[bool]:
        """
        Take the 'once' rule C{rule} for C{mac} before its script is handed
        out: C{False} if another pxed sharing this store handed it out and
        its boot is still under way (the caller then gives no answer), or
        the machine has booted it meanwhile.  A store that only one pxed
        uses always says C{True}.
        """

    def signing_key() -> bytes:
        """
        The secret that signs pxed's URLs, created on first use.  Called
        once at start-up, so a networked store may block briefly here.
        """

    def reload() -> None:
        """
        Re-read state that an operator may have changed behind pxed's back
        (called on a configuration reload), so that deleting a machine's
        flag there and reloading installs it again.  The signing key in
        use stays: it signed URLs that clients hold now.

        @raise StateFileError: the stored state is unusable; the state in
            memory is kept.
        """


@implementer(IStateStore)
class MemoryStateStore:
    """
    Flags and key in memory: correct for one process, forgotten on restart.
    """

    def __init__(self) -> None:
        self._once: dict[str, set[str]] = {}
        self._key: bytes | None = None

    def once_done(self, mac: str, rule: str) -> Deferred[bool]:
        return succeed(rule in self._once.get(mac, ()))

    def mark_once(self, mac: str, rule: str) -> Deferred[None]:
        self._once.setdefault(mac, set()).add(rule)
        return succeed(None)

    def clear_once(self, mac: str, rule: str | None = None) -> Deferred[None]:
        if rule is None:
            self._once.pop(mac, None)
        else:
            self._once.get(mac, set()).discard(rule)
        return succeed(None)

    def claim_once(self, mac: str, rule: str) -> Deferred[bool]:
        return succeed(True)

    def signing_key(self) -> bytes:
        if self._key is None:
            self._key = secrets.token_bytes(KEY_BYTES)
        return self._key

    def reload(self) -> None:
        """
        Nothing to re-read: only this process changes it.
        """


def read_state_file(path: Path) -> tuple[dict[str, set[str]], bytes | None]:
    """
    The 'once' flags and signing key in the state file at C{path}; none
    of either if it does not exist (yet).  The configuration calls this
    too, so that a broken file is a one-line error at start-up and on
    reload rather than a traceback.

    @raise StateFileError: if the file exists but is unreadable or not
        pxed's.
    """
    try:
        with open(path, "rb") as f:
            info = os.fstat(f.fileno())
            raw = f.read()
        text = raw.decode("utf-8")
    except FileNotFoundError:
        return {}, None
    except (OSError, UnicodeDecodeError) as e:
        raise StateFileError(f"{path}: cannot read: {e}") from None
    # Checked on the file read, and before its content is trusted: others
    # who can write it could plant a key; readers could use the one in it.
    problem = exposure(info, str(path), holds_secret=b"signing_key" in raw)
    if problem is not None:
        raise StateFileError(problem)
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("version") != 1:
            raise ValueError("not a pxed state file (version 1)")
        once = {str(mac): set(map(str, rules)) for mac, rules in data.get("once", {}).items()}
        key = data.get("signing_key")
        if key is not None:
            key = base64.b64decode(key, validate=True)
            if len(key) < MIN_KEY_BYTES:
                raise ValueError(f"signing_key is shorter than {MIN_KEY_BYTES} bytes")
    except (ValueError, TypeError, AttributeError) as e:
        raise StateFileError(f"{path}: {e}") from None
    return once, key


@implementer(IStateStore)
class FileStateStore(MemoryStateStore):
    """
    The memory store, loaded from and saved to a JSON file after every
    change.  The file is private (mode 0600): it holds the signing key.

    @raise StateFileError: from the constructor, if the file exists but is
        unreadable or not pxed's.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__()
        self.path = Path(path)
        self._once, self._key = read_state_file(self.path)

    def reload(self) -> None:
        """
        Take the flags from the file as it is now.  The running signing
        key is kept (it signed the URLs clients hold), and written back if
        the file lost it or has another, so the file again says what pxed
        uses.

        @raise StateFileError: the file is unusable (then nothing changes),
            or the key cannot be written back.
        """
        once, key = read_state_file(self.path)
        self._once = once
        if self._key is None or key == self._key:
            return
        if key is not None:
            log.warn("{path}: its signing key differs from the one in use; keeping the one in "
                     "use until a restart and writing it back", path=str(self.path))
        try:
            self._save()
        except OSError as e:
            raise StateFileError(f"{self.path}: cannot write: {e}") from None

    def _save(self) -> None:
        data: dict[str, Any] = {
            "version": 1,
            "once": {mac: sorted(rules) for mac, rules in sorted(self._once.items()) if rules},
        }
        if self._key is not None:
            data["signing_key"] = base64.b64encode(self._key).decode("ascii")
        # 0600: the file holds the URL signing key.
        write_atomically(self.path, json.dumps(data, indent=1) + "\n", mode=0o600)

    def _saved(self, d: Deferred[None]) -> Deferred[None]:
        try:
            self._save()
        except OSError:
            return fail(Failure())
        return d

    def mark_once(self, mac: str, rule: str) -> Deferred[None]:
        if rule in self._once.get(mac, ()):
            return succeed(None)
        return self._saved(super().mark_once(mac, rule))

    def clear_once(self, mac: str, rule: str | None = None) -> Deferred[None]:
        return self._saved(super().clear_once(mac, rule))

    def signing_key(self) -> bytes:
        if self._key is None:
            super().signing_key()
            self._save()
        assert self._key is not None
        return self._key
