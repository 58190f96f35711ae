"""
Tests for L{pxed.store}: once-flags and the signing key, in memory and in
an atomically rewritten state file.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from twisted.trial import unittest
from zope.interface.verify import verifyObject

from pxed.store import FileStateStore, IStateStore, MemoryStateStore, StateFileError

MAC = "52:54:00:12:34:56"


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
