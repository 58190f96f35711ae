# -*- test-case-name: tests.test_script_safety -*-
"""
What a client says about itself, checked before it can reach a script.

The UUID (option 97, or the script URL's query), the user class (option
77) and host names end up in templates: in an iPXE script, where a
newline starts a new command, and in a kernel command line, where a space
starts a new argument (C{uuid=x init=/bin/sh}).  So each is accepted only
in its own narrow form, and anything else counts as not sent: a rule
cannot match it and a template sees an empty string.
"""

from __future__ import annotations

import re

__all__ = ["client_uuid", "client_word", "is_hostname"]

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
#: One word of the characters user classes use in practice (iPXE, gPXE,
#: custom builds' names), none of which iPXE or a shell treats specially.
_WORD = re.compile(r"^[A-Za-z0-9._:+@-]{1,64}$")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")


def client_uuid(text: str | None) -> str | None:
    """
    A UUID in its usual lower-case form, or C{None} for anything else.
    """
    if not text:
        return None
    text = text.strip().lower()
    return text if _UUID.match(text) else None


def client_word(text: str | None) -> str | None:
    """
    C{text} if it is one safe word (a user class), else C{None}.
    """
    if not text or not _WORD.match(text):
        return None
    return text


def is_hostname(text: str) -> bool:
    """
    Whether C{text} is a host name (RFC 1123 labels, 253 characters at most).
    """
    return len(text) <= 253 and bool(_HOSTNAME.match(text))
