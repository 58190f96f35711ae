# -*- test-case-name: tests.test_config -*-
"""
The machinery every configuration section uses: one error type that names
the file, the key and the problem, and a reader that checks types as it goes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pxed.policy import is_url

__all__ = ["ConfigError", "Reader", "join_key", "type_name"]


class ConfigError(Exception):
    """
    A configuration mistake: where it is and what is wrong.
    """

    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source = source
        self.key = key
        self.problem = problem
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {problem}")


class Reader:
    """
    Walks the parsed YAML with the dotted path of the current key, so each
    error names exactly where it is.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        #: (key, text) of every template read, test-rendered once the
        #: whole file is parsed (they may name exports defined later).
        self.templates: list[tuple[str, str]] = []

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.source, key, problem)

    def mapping(self, value: Any, key: str, allowed: set[str] | None) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(key or "(top level)", f"must be a mapping, not {type_name(value)}")
        for name in value:
            if not isinstance(name, str):
                raise self.fail(key or "(top level)",
                                f"key {name!r} must be a string (quote MAC addresses: "
                                "YAML reads some unquoted ones as numbers)")
            if allowed is not None and name not in allowed:
                expected = ", ".join(sorted(allowed))
                raise self.fail(join_key(key, name), f"unknown key (expected one of: {expected})")
        return value

    def string(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(key, f"must be a non-empty string, not {type_name(value)}")
        return value

    def port(self, value: Any, key: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
            raise self.fail(key, f"must be a port number 0..65535, not {value!r}")
        return value

    def credential(self, value: Any, key: str) -> str:
        """
        A secret file's location, where a leading C{%d/} (systemd's
        specifier) or C{$CREDENTIALS_DIRECTORY/} stands for the directory
        systemd's C{LoadCredential=} puts the unit's credentials in.
        """
        location = self.string(value, key)
        for prefix in ("%d/", "$CREDENTIALS_DIRECTORY/", "${CREDENTIALS_DIRECTORY}/"):
            if location.startswith(prefix):
                directory = os.environ.get("CREDENTIALS_DIRECTORY")
                if not directory:
                    raise self.fail(key, f"{location!r} needs $CREDENTIALS_DIRECTORY, which "
                                         "systemd sets for a unit with LoadCredential=")
                return os.path.join(directory, location[len(prefix):])
        return location

    def file(self, value: Any, key: str, *, urls: bool) -> str:
        location = self.string(value, key)
        if urls and is_url(location):
            return location
        path = Path(location)
        if not path.is_absolute():
            raise self.fail(key, f"{location!r} must be an absolute path" +
                            (" or an http(s) URL" if urls else ""))
        if not path.is_file():
            raise self.fail(key, f"file {location} does not exist")
        if not os.access(path, os.R_OK):
            raise self.fail(key, f"file {location} is not readable")
        return str(path)


def type_name(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


def join_key(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


