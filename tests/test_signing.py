"""
Tests for L{pxed.signing}: tokens verify only for their key and purpose.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial import unittest

from pxed.signing import Signer

KEY = b"0123456789abcdef0123456789abcdef"


class SignerTests(unittest.TestCase):
    def test_round_trip(self) -> None:
        signer = Signer(KEY)
        token = signer.sign("file", "/srv/pxe/vmlinuz ü")
        self.assertRegex(token, r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
        self.assertEqual(signer.verify("file", token), "/srv/pxe/vmlinuz ü")
        self.assertEqual(Signer(KEY).verify("file", token), "/srv/pxe/vmlinuz ü")

    def test_wrong_purpose_or_key(self) -> None:
        token = Signer(KEY).sign("file", "/x")
        self.assertIsNone(Signer(KEY).verify("once", token))
        self.assertIsNone(Signer(KEY[::-1]).verify("file", token))

    def test_malformed(self) -> None:
        signer = Signer(KEY)
        for token in ("", ".", "abc", "abc.", ".abc", "a.b.c", "!!.??", "YQ.YQ"):
            self.assertIsNone(signer.verify("file", token), token)

    def test_short_key_refused(self) -> None:
        self.assertRaises(ValueError, Signer, b"short")

    @given(st.text(max_size=200), st.integers(0, 400), st.integers(0, 255))
    def test_any_change_is_refused(self, value: str, position: int, byte: int) -> None:
        signer = Signer(KEY)
        token = signer.sign("file", value)
        index = position % len(token)
        changed = token[:index] + chr(33 + byte % 90) + token[index + 1:]
        if changed != token:
            self.assertIsNone(signer.verify("file", changed), (token, changed))
