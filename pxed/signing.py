# -*- test-case-name: tests.test_signing -*-
"""
Signed, self-contained IDs.

Every file URL pxed hands out names its target (a local path or a remote
URL) inside the URL itself, with an HMAC-SHA256 tag.  pxed serves only
what it signed, so its HTTP server never becomes an open proxy or a file
browser, and no table of issued IDs has to be kept, shared between
several pxed or survive a restart: the key does all of that.

Each token carries a purpose, so a token issued for one use (a file) is
worthless for another (a 'once' beacon, a script's network context).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

__all__ = ["Signer"]

#: Bytes of HMAC kept: 128 bits is far beyond guessing over HTTP.
TAG_BYTES = 16
#: The shortest signing key accepted.
MIN_KEY_BYTES = 16


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """
    Signs and verifies short strings with one secret key.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"a signing key needs at least {MIN_KEY_BYTES} bytes")
        self._key = key

    def _tag(self, purpose: str, payload: bytes) -> bytes:
        message = b"pxed-v1\0" + purpose.encode("utf-8") + b"\0" + payload
        return hmac.new(self._key, message, hashlib.sha256).digest()[:TAG_BYTES]

    def sign(self, purpose: str, value: str) -> str:
        """
        A URL-safe token (letters, digits, C{-}, C{_} and one C{.}) that
        L{verify} turns back into C{value}.
        """
        payload = value.encode("utf-8")
        return f"{_b64(payload)}.{_b64(self._tag(purpose, payload))}"

    def verify(self, purpose: str, token: str) -> str | None:
        """
        The value signed into C{token} for C{purpose}, or C{None} if the
        token was not made by this key for this purpose.
        """
        body, dot, tag = token.partition(".")
        if not dot or not body or not tag:
            return None
        try:
            payload, given = _unb64(body), _unb64(tag)
        except (binascii.Error, ValueError):
            return None
        if _b64(payload) != body or _b64(given) != tag:
            # Only the one spelling we issue: base64's spare bits would
            # otherwise give every token several valid forms.
            return None
        if not hmac.compare_digest(given, self._tag(purpose, payload)):
            return None
        try:
            return payload.decode("utf-8")
        except UnicodeDecodeError:
            return None
