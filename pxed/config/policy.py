# -*- test-case-name: tests.test_config_policy -*-
"""
The C{policy:} section: ordered rules (parsed by L{pxed.config.rules}),
an HTTP API backend, exported directories, host names, remote files,
signing, the state file and the admin endpoint.

Everything is checked here, at load time, with the exact key of each
mistake: files that must exist, durations, secrets.  What comes out is
plain data (rules with their matchers and actions, settings) that
L{pxed.service} turns into a running policy.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pxed.clienttext import is_hostname
from pxed.config.boot import normal_mac
from pxed.config.reader import Reader, join_key, type_name
from pxed.config.rules import NAME, parse_rule
from pxed.machine import is_mac
from pxed.policy import Rule, is_url
from pxed.private import exposure
from pxed.store import StateFileError, read_state_file

__all__ = ["APIConfig", "PolicyConfig", "RemoteConfig", "parse_policy", "parse_duration"]

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


@dataclass(frozen=True)
class APIConfig:
    """
    @ivar files: directories whose files the API may name with C{file://}
        URLs (Pixiecore serves any; pxed none unless listed here).
    """

    url: str
    timeout: float = 5.0
    cache: float = 30.0
    files: tuple[Path, ...] = ()


@dataclass(frozen=True)
class RemoteConfig:
    """
    @ivar proxy: C{True} to fetch remote files through pxed (streamed,
        with these timeouts), C{False} to hand their URLs to iPXE.
    """

    proxy: bool = False
    connect_timeout: float = 10.0
    idle_timeout: float = 30.0


@dataclass(frozen=True)
class PolicyConfig:
    rules: tuple[Rule, ...] = ()
    api: APIConfig | None = None
    exports: Mapping[str, Path] = field(default_factory=dict)
    hostnames: Mapping[str, str] = field(default_factory=dict)
    remote: RemoteConfig = field(default_factory=RemoteConfig)
    signing_key: bytes | None = None
    signing_max_age: float | None = None
    state_file: Path | None = None
    admin_token: str | None = None


def parse_duration(reader: Reader, value: Any, key: str) -> float:
    """
    Seconds, as a number or with a unit: C{500ms}, C{5s}, C{2m}, C{1h}.
    """
    if isinstance(value, bool):
        raise reader.fail(key, f"must be a duration like 5s, not {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value).strip())
        if match is None:
            raise reader.fail(key, f"must be a duration like 5s, 500ms or 2m, not {value!r}")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not 0 < seconds <= 86400:
        raise reader.fail(key, "must be more than 0 and at most a day")
    return seconds


def _api(reader: Reader, value: Any) -> APIConfig | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = {"url": value}
    entry = reader.mapping(value, "policy.api", {"url", "timeout", "cache", "files"})
    url = reader.string(entry.get("url"), "policy.api.url")
    if not is_url(url):
        raise reader.fail("policy.api.url", f"{url!r} is not an http(s) URL")
    timeout = parse_duration(reader, entry.get("timeout", 5), "policy.api.timeout")
    cache = entry.get("cache", 30)
    cache_seconds = 0.0 if cache in (0, "0", "0s") else parse_duration(
        reader, cache, "policy.api.cache")
    files = []
    listed = entry.get("files", [])
    for i, item in enumerate(listed if isinstance(listed, list) else [listed]):
        key = f"policy.api.files[{i}]" if isinstance(listed, list) else "policy.api.files"
        location = reader.string(item, key)
        path = Path(location)
        if not path.is_absolute():
            raise reader.fail(key, f"{location!r} must be an absolute path")
        if not path.is_dir():
            raise reader.fail(key, f"directory {location} does not exist")
        files.append(path.resolve())
    return APIConfig(url.rstrip("/"), timeout, cache_seconds, tuple(files))


def _exports(reader: Reader, value: Any) -> dict[str, Path]:
    exports = {}
    for name, directory in reader.mapping(value, "policy.exports", None).items():
        key = f"policy.exports.{name}"
        if not NAME.match(name):
            raise reader.fail(key, "an export name uses letters, digits, '.', '_' and '-'")
        location = reader.string(directory, key)
        path = Path(location)
        if not path.is_absolute():
            raise reader.fail(key, f"{location!r} must be an absolute path")
        if not path.is_dir():
            raise reader.fail(key, f"directory {location} does not exist")
        exports[name] = path.resolve()
    return exports


def _hostnames(reader: Reader, value: Any) -> dict[str, str]:
    hostnames = {}
    for mac, hostname in reader.mapping(value, "policy.hostnames", None).items():
        key = f"policy.hostnames.{mac}"
        normal = normal_mac(mac)
        if not is_mac(normal):
            raise reader.fail(key, "is not a MAC address like 52:54:00:12:34:56")
        name = reader.string(hostname, key)
        if not is_hostname(name):
            # It goes into command lines and scripts as one word.
            raise reader.fail(key, f"{name!r} is not a host name (letters, digits, '-', '.')")
        hostnames[normal] = name
    return hostnames


def _remote(reader: Reader, value: Any) -> RemoteConfig:
    entry = reader.mapping(value, "policy.remote", {"mode", "connect_timeout", "idle_timeout"})
    mode = entry.get("mode", "direct")
    if mode not in ("direct", "proxy"):
        raise reader.fail("policy.remote.mode", f"must be 'direct' or 'proxy', not {mode!r}")
    return RemoteConfig(
        proxy=mode == "proxy",
        connect_timeout=parse_duration(reader, entry.get("connect_timeout", 10),
                                       "policy.remote.connect_timeout"),
        idle_timeout=parse_duration(reader, entry.get("idle_timeout", 30),
                                    "policy.remote.idle_timeout"),
    )


def _secret(reader: Reader, value: Any, key: str, what: str) -> bytes | None:
    """
    A secret given inline (C{key}/C{token}) or in a file (C{..._file}).
    """
    entry = reader.mapping(value, key, {what, f"{what}_file"})
    if what in entry and f"{what}_file" in entry:
        raise reader.fail(key, f"give '{what}' or '{what}_file', not both")
    if what in entry:
        secret = reader.string(entry[what], join_key(key, what)).encode("utf-8")
        where = join_key(key, what)
    elif f"{what}_file" in entry:
        where = join_key(key, f"{what}_file")
        path = reader.file(reader.credential(entry[f"{what}_file"], where), where, urls=False)
        try:
            with open(path, "rb") as f:
                problem = exposure(os.fstat(f.fileno()), path)
                if problem is not None:
                    raise reader.fail(where, problem)
                secret = f.read().strip()
        except OSError as e:
            raise reader.fail(where, f"cannot read {path}: {e.strerror}") from None
    else:
        return None
    if len(secret) < 16:
        raise reader.fail(where, "must be at least 16 characters long")
    return secret


def parse_policy(reader: Reader, value: Any) -> PolicyConfig:
    section = reader.mapping(value, "policy", {
        "rules", "api", "exports", "hostnames", "remote", "signing", "state_file", "admin"})
    rules_value = section.get("rules") or []
    if not isinstance(rules_value, list):
        raise reader.fail("policy.rules", f"must be a list of rules, not {type_name(rules_value)}")
    names: set[str] = set()
    rules = tuple(parse_rule(reader, item, f"policy.rules[{i}]", names)
                  for i, item in enumerate(rules_value))
    state_file = section.get("state_file")
    if state_file is not None:
        location = reader.string(state_file, "policy.state_file")
        state_path = Path(location)
        if not state_path.is_absolute():
            raise reader.fail("policy.state_file", f"{location!r} must be an absolute path")
        if not state_path.parent.is_dir():
            raise reader.fail("policy.state_file", f"directory {state_path.parent} does not exist")
        try:
            # Here, not when the store opens it: a broken file is then one
            # line at start-up (not a traceback), and a reload refuses it.
            read_state_file(state_path)
        except StateFileError as e:
            raise reader.fail("policy.state_file", str(e)) from None
        state_file = state_path
    token = _secret(reader, section.get("admin"), "policy.admin", "token")
    signing = reader.mapping(section.get("signing"), "policy.signing",
                             {"key", "key_file", "max_age"})
    max_age = None
    if signing.get("max_age") is not None:
        max_age = parse_duration(reader, signing["max_age"], "policy.signing.max_age")
    signing = {k: v for k, v in signing.items() if k != "max_age"}
    if token is not None and not all(0x21 <= byte <= 0x7E for byte in token):
        # It travels in an Authorization header: anything else never matches.
        raise reader.fail("policy.admin", "the token must be printable ASCII without spaces")
    return PolicyConfig(
        rules=rules,
        api=_api(reader, section.get("api")),
        exports=_exports(reader, section.get("exports")),
        hostnames=_hostnames(reader, section.get("hostnames")),
        remote=_remote(reader, section.get("remote")),
        signing_key=_secret(reader, signing, "policy.signing", "key"),
        signing_max_age=max_age,
        state_file=state_file,
        admin_token=token.decode("ascii") if token is not None else None,
    )
