"""
Tests for L{pxed.private}: which files may hold a secret.
"""

from __future__ import annotations

import os
from pathlib import Path

from twisted.trial import unittest

from pxed.private import exposure


class ExposureTests(unittest.TestCase):
    def test_modes(self) -> None:
        path = Path(self.mktemp())
        path.write_text("secret")
        for mode, problem in ((0o600, None), (0o400, None), (0o640, None),
                              (0o644, "readable by every user"), (0o664, "writable"),
                              (0o606, "writable"), (0o622, "writable")):
            path.chmod(mode)
            found = exposure(os.stat(path), "key")
            if problem is None:
                self.assertIsNone(found, oct(mode))
            else:
                assert found is not None
                self.assertIn(problem, found)
                self.assertTrue(found.startswith("key is "), found)
        path.chmod(0o644)
        self.assertIsNone(exposure(os.stat(path), holds_secret=False))

    def test_owner(self) -> None:
        path = Path(self.mktemp())
        path.write_text("secret")
        path.chmod(0o600)
        if os.geteuid() == 0:
            os.chown(path, 4321, -1)
            found = exposure(os.stat(path), "key")
            assert found is not None
            self.assertIn("belongs to user 4321", found)
