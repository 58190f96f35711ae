"""
Tests for L{pxed.store}: once-flags and the signing key, in memory and in
an atomically rewritten state file.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path
from typing import Any

from twisted.trial import unittest
from zope.interface.verify import verifyObject

from pxed.store import (
    FileStateStore,
    IStateStore,
    MemoryStateStore,
    StateFileError,
    read_state_file,
)

MAC = "52:54:00:12:34:56"
OTHER = "52:54:00:00:00:01"


class StoreTestsMixin:
    def make(self) -> Any:
        raise NotImplementedError

    def test_interface(self) -> None:
        verifyObject(IStateStore, self.make())

    def test_flags(self: Any) -> None:
        store = self.make()
        self.assertFalse(self.successResultOf(store.once_done(MAC, "install")))
        self.successResultOf(store.mark_once(MAC, "install"))
        self.successResultOf(store.mark_once(MAC, "install"))
        self.successResultOf(store.mark_once(MAC, "firmware"))
        self.assertTrue(self.successResultOf(store.once_done(MAC, "install")))
        self.assertFalse(self.successResultOf(store.once_done("52:54:00:00:00:01", "install")))
        self.successResultOf(store.clear_once(MAC, "install"))
        self.assertFalse(self.successResultOf(store.once_done(MAC, "install")))
        self.assertTrue(self.successResultOf(store.once_done(MAC, "firmware")))
        self.successResultOf(store.clear_once(MAC))
        self.assertFalse(self.successResultOf(store.once_done(MAC, "firmware")))

    def test_key_stable(self: Any) -> None:
        store = self.make()
        key = store.signing_key()
        self.assertGreaterEqual(len(key), 32)
        self.assertEqual(store.signing_key(), key)


class MemoryStoreTests(StoreTestsMixin, unittest.TestCase):
    def make(self) -> MemoryStateStore:
        return MemoryStateStore()

    def test_keys_differ(self) -> None:
        self.assertNotEqual(MemoryStateStore().signing_key(), MemoryStateStore().signing_key())

    def test_reload_keeps_everything(self) -> None:
        store = self.make()
        key = store.signing_key()
        self.successResultOf(store.mark_once(MAC, "install"))
        store.reload()
        self.assertTrue(self.successResultOf(store.once_done(MAC, "install")))
        self.assertEqual(store.signing_key(), key)


class FileStoreTests(StoreTestsMixin, unittest.TestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).absolute()
        self.dir.mkdir()
        self.path = self.dir / "state.json"

    def make(self) -> FileStateStore:
        return FileStateStore(self.path)

    def test_survives_restart(self) -> None:
        store = self.make()
        key = store.signing_key()
        self.successResultOf(store.mark_once(MAC, "install"))
        again = self.make()
        self.assertTrue(self.successResultOf(again.once_done(MAC, "install")))
        self.assertEqual(again.signing_key(), key)
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)
        data = json.loads(self.path.read_text())
        self.assertEqual(data["once"], {MAC: ["install"]})

    def test_no_leftover_temporaries(self) -> None:
        store = self.make()
        for n in range(5):
            self.successResultOf(store.mark_once(MAC, f"r{n}"))
        self.assertEqual(sorted(p.name for p in self.dir.iterdir()), ["state.json"])

    def test_failed_write_keeps_old_file(self) -> None:
        """
        A write that fails leaves the previous state file whole, and the
        failure reaches the caller.
        """
        store = self.make()
        self.successResultOf(store.mark_once(MAC, "a"))
        before = self.path.read_bytes()

        def broken(*args: Any, **kwargs: Any) -> None:
            raise OSError(28, "No space left on device")

        self.patch(os, "replace", broken)
        self.failureResultOf(store.mark_once(MAC, "b"), OSError)
        self.assertEqual(self.path.read_bytes(), before)
        self.assertEqual(sorted(p.name for p in self.dir.iterdir()), ["state.json"])

    def test_bad_files(self) -> None:
        for text in ("not json", "[]", '{"version": 2}', '{"version": 1, "once": 3}',
                     '{"version": 1, "signing_key": "!!"}'):
            self.path.write_text(text)
            self.assertRaises(StateFileError, self.make)
        self.path.write_bytes(b"\xff\xfe")
        self.assertRaises(StateFileError, self.make)

    def test_reload_takes_the_file_as_it_is(self) -> None:
        """
        A machine's entry deleted from the file is gone after a reload, and
        the next change does not write it back.
        """
        store = self.make()
        key = store.signing_key()
        for mac in (MAC, OTHER):
            self.successResultOf(store.mark_once(mac, "install"))
        data = json.loads(self.path.read_text())
        del data["once"][MAC]
        self.path.write_text(json.dumps(data))
        store.reload()
        self.assertFalse(self.successResultOf(store.once_done(MAC, "install")))
        self.assertTrue(self.successResultOf(store.once_done(OTHER, "install")))
        self.successResultOf(store.mark_once(OTHER, "firmware"))
        self.assertEqual(json.loads(self.path.read_text())["once"],
                         {OTHER: ["firmware", "install"]})
        self.assertEqual(store.signing_key(), key)

    def test_reload_of_a_deleted_file_keeps_the_key(self) -> None:
        """
        Deleting the whole file forgets every flag; the key in use (it
        signed URLs that clients hold) is written back at once, so a
        restart keeps it too.
        """
        store = self.make()
        key = store.signing_key()
        self.successResultOf(store.mark_once(MAC, "install"))
        self.path.unlink()
        store.reload()
        self.assertFalse(self.successResultOf(store.once_done(MAC, "install")))
        self.assertEqual(store.signing_key(), key)
        self.assertEqual(self.make().signing_key(), key)

    def test_reload_of_a_bad_file_keeps_the_state(self) -> None:
        store = self.make()
        self.successResultOf(store.mark_once(MAC, "install"))
        self.path.write_text('{"version": 1, "once": {')
        error = self.assertRaises(StateFileError, store.reload)
        self.assertIn(str(self.path), str(error))
        self.assertTrue(self.successResultOf(store.once_done(MAC, "install")))

    def test_created_private(self) -> None:
        store = self.make()
        self.successResultOf(store.mark_once("52:54:00:12:34:56", "install"))
        self.assertEqual(stat.S_IMODE(self.path.stat().st_mode), 0o600)

    def test_exposed_file_refused(self) -> None:
        """
        A state file others can write, or everyone can read while it holds
        the key, is refused with one line saying how to fix it.
        """
        store = self.make()
        store.signing_key()
        self.successResultOf(store.mark_once("52:54:00:12:34:56", "install"))
        self.assertIn("signing_key", self.path.read_text())
        for mode, words in ((0o644, "readable by every user"), (0o660, "writable by other"),
                            (0o602, "writable by other")):
            self.path.chmod(mode)
            error = self.assertRaises(StateFileError, self.make)
            self.assertIn(words, str(error))
            self.assertIn("chmod 600", str(error))
            self.assertNotIn("\n", str(error))
        self.path.chmod(0o640)  # the group may read it (a pxed group)
        self.make()
        # Without a key yet, others may read it, still not write it.
        self.path.write_text(json.dumps({"version": 1, "once": {}}))
        self.path.chmod(0o644)
        self.make()
        self.path.chmod(0o646)
        self.assertRaises(StateFileError, self.make)

    def test_short_key_refused(self) -> None:
        """
        A key the signer would refuse is the file's error, not a traceback
        later.
        """
        self.path.write_text(json.dumps({"version": 1, "signing_key": "c2hvcnQ="}))
        self.path.chmod(0o600)
        error = self.assertRaises(StateFileError, self.make)
        self.assertIn("shorter than 16 bytes", str(error))

    def test_read_state_file(self) -> None:
        self.assertEqual(read_state_file(self.path), ({}, None))
        store = self.make()
        key = store.signing_key()
        self.successResultOf(store.mark_once(MAC, "install"))
        self.assertEqual(read_state_file(self.path), ({MAC: {"install"}}, key))

    def test_reload_writes_the_running_key_back(self) -> None:
        """
        A file with another key (copied from elsewhere) gets the key in
        use back: URLs already handed out must keep working.
        """
        store = self.make()
        key = store.signing_key()
        other = base64.b64encode(b"o" * 32).decode()
        self.path.write_text(json.dumps({"version": 1, "once": {MAC: ["a"]},
                                         "signing_key": other}))
        store.reload()
        self.assertEqual(store.signing_key(), key)
        self.assertEqual(read_state_file(self.path), ({MAC: {"a"}}, key))
