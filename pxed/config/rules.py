# -*- test-case-name: tests.test_config_policy -*-
"""
The rules of the C{policy:} section: each rule's match keys and its one
action, checked at load time with the exact key of each mistake.

Why a module of its own: a rule is the policy's own language (matchers,
actions, the 'once' contract with the beacon) and grows with it, while the
rest of the section (API backend, exports, host names, remote files,
signing, admin, state file) is settings.  L{pxed.config.policy} reads the
section and hands each item of C{policy.rules} to L{parse_rule}.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

from pxed.config.boot import normal_mac, parse_linux, template
from pxed.config.reader import Reader, join_key, type_name
from pxed.machine import ARCHITECTURE_SLUGS, Firmware, is_mac
from pxed.policy import Chain, Ignore, IPXEScript, LocalBoot, Rule
from pxed.policy.interfaces import IBootAction
from pxed.policy.match import (
    ArchMatcher,
    FirmwareMatcher,
    IMatcher,
    InterfaceMatcher,
    MacMatcher,
    Match,
    RelayMatcher,
    SubnetMatcher,
    UserClassMatcher,
    UUIDMatcher,
)

__all__ = ["ACTIONS", "MATCH_KEYS", "NAME", "parse_rule"]

_MAC_PATTERN = re.compile(r"^[0-9a-f:*?\[\]!-]+$")
_OUI = re.compile(r"^[0-9a-f]{2}(?::[0-9a-f]{2}){2}$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

ACTIONS = ("linux", "ipxe", "chain", "local", "ignore")
MATCH_KEYS = {"mac", "arch", "firmware", "uuid", "user_class", "interface", "subnet", "relay"}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _strings(reader: Reader, value: Any, key: str) -> list[str]:
    items = _list(value)
    if not items:
        raise reader.fail(key, "must not be empty")
    out = []
    for i, item in enumerate(items):
        where = key if not isinstance(value, list) else f"{key}[{i}]"
        if isinstance(item, bool) or not isinstance(item, str | int):
            raise reader.fail(where, f"must be a string, not {type_name(item)}")
        out.append(str(item))
    return out


def _mac_matcher(reader: Reader, value: Any, key: str) -> IMatcher:
    patterns = []
    for item in _strings(reader, value, key):
        pattern = normal_mac(item)
        glob = any(c in pattern for c in "*?[")
        if not (is_mac(pattern) or _OUI.match(pattern)
                or (glob and _MAC_PATTERN.match(pattern))):
            raise reader.fail(key, f"{item!r} is not a MAC address, an OUI like 52:54:00 "
                                   "or a glob like 52:54:00:*")
        patterns.append(pattern)
    return MacMatcher(tuple(patterns))


def _arch_matcher(reader: Reader, value: Any, key: str) -> IMatcher:
    slugs, codes = set(), set()
    for item in _list(value):
        if isinstance(item, int) and not isinstance(item, bool) and 0 <= item <= 0xFFFF:
            codes.add(item)
        elif isinstance(item, str) and item in ARCHITECTURE_SLUGS:
            slugs.add(item)
        else:
            known = ", ".join(sorted(ARCHITECTURE_SLUGS)[:6])
            raise reader.fail(key, f"{item!r} is not an architecture (a name like {known}, ... "
                                   "or an option 93 code)")
    return ArchMatcher(frozenset(slugs), frozenset(codes))


def _firmware_matcher(reader: Reader, value: Any, key: str) -> IMatcher:
    kinds, ipxe = set(), False
    for item in _strings(reader, value, key):
        if item == "ipxe":
            ipxe = True
            continue
        try:
            kinds.add(Firmware(item))
        except ValueError:
            raise reader.fail(key, f"{item!r} is not one of bios, uefi, ipxe, other") from None
    return FirmwareMatcher(frozenset(kinds), ipxe)


def _uuid_matcher(reader: Reader, value: Any, key: str) -> IMatcher:
    uuids = set()
    for item in _strings(reader, value, key):
        if not _UUID.match(item.lower()):
            raise reader.fail(key, f"{item!r} is not a UUID like "
                                   "12345678-9abc-def0-1122-334455667788")
        uuids.add(item.lower())
    return UUIDMatcher(frozenset(uuids))


def _networks(reader: Reader, value: Any, key: str) -> tuple[ipaddress.IPv4Network, ...]:
    networks = []
    for item in _strings(reader, value, key):
        try:
            networks.append(ipaddress.IPv4Network(item, strict=False))
        except ValueError:
            raise reader.fail(key, f"{item!r} is not an IPv4 address or subnet") from None
    return tuple(networks)


def _match(reader: Reader, value: Any, key: str) -> Match:
    section = reader.mapping(value, key, MATCH_KEYS)
    builders = {
        "mac": _mac_matcher,
        "arch": _arch_matcher,
        "firmware": _firmware_matcher,
        "uuid": _uuid_matcher,
        "user_class": lambda r, v, k: UserClassMatcher(tuple(_strings(r, v, k))),
        "interface": lambda r, v, k: InterfaceMatcher(tuple(_strings(r, v, k))),
        "subnet": lambda r, v, k: SubnetMatcher(_networks(r, v, k)),
        "relay": lambda r, v, k: RelayMatcher(_networks(r, v, k)),
    }
    return Match(tuple(builders[name](reader, v, join_key(key, name))
                       for name, v in section.items()))


def _ipxe(reader: Reader, value: Any, key: str) -> IBootAction:
    if isinstance(value, str):
        value = {"script": value}
    entry = reader.mapping(value, key, {"script", "file"})
    if ("script" in entry) == ("file" in entry):
        raise reader.fail(key, "needs exactly one of 'script' (inline) or 'file'")
    if "file" in entry:
        path = reader.file(entry["file"], join_key(key, "file"), urls=False)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise reader.fail(join_key(key, "file"), f"cannot read {path}: {e}") from None
        where = join_key(key, "file")
    else:
        text, where = entry["script"], join_key(key, "script")
    script = template(reader, text, where)
    if not script.lstrip().startswith("#!ipxe"):
        raise reader.fail(where, "an iPXE script must start with '#!ipxe'")
    return IPXEScript(script.lstrip())


def _chain(reader: Reader, value: Any, key: str) -> IBootAction:
    if isinstance(value, str):
        value = {"target": value}
    entry = reader.mapping(value, key, {"target", "args"})
    if "target" not in entry:
        raise reader.fail(key, "missing key 'target' (a file or an http(s) URL)")
    target = reader.file(entry["target"], join_key(key, "target"), urls=True)
    args = template(reader, entry.get("args", ""), join_key(key, "args"))
    return Chain(target, args)


def _flag(reader: Reader, value: Any, key: str, action: IBootAction) -> IBootAction:
    if value is not True:
        raise reader.fail(key, "must be true (the action takes no parameters)")
    return action


def parse_rule(reader: Reader, value: Any, key: str, names: set[str]) -> Rule:
    entry = reader.mapping(value, key, {"name", "match", "once", *ACTIONS})
    if value is None:
        raise reader.fail(key, "must be a mapping with a match and an action")
    chosen = [name for name in ACTIONS if name in entry]
    if len(chosen) != 1:
        raise reader.fail(key, "needs exactly one action: " + ", ".join(ACTIONS))
    kind = chosen[0]
    where = join_key(key, kind)
    actions = {
        "linux": lambda: parse_linux(reader, entry[kind], where),
        "ipxe": lambda: _ipxe(reader, entry[kind], where),
        "chain": lambda: _chain(reader, entry[kind], where),
        "local": lambda: _flag(reader, entry[kind], where, LocalBoot()),
        "ignore": lambda: _flag(reader, entry[kind], where, Ignore()),
    }
    action = actions[kind]()
    once = entry.get("once", False)
    if not isinstance(once, bool):
        raise reader.fail(join_key(key, "once"), "must be true or false")
    name = entry.get("name")
    if name is None:
        if once:
            raise reader.fail(key, "a rule with 'once: true' needs a 'name' (its flag is kept "
                                   "under that name in the state file)")
        name = key
    else:
        name = reader.string(name, join_key(key, "name"))
        if not NAME.match(name):
            raise reader.fail(join_key(key, "name"), "use letters, digits, '.', '_' and '-'")
        if name in names:
            raise reader.fail(join_key(key, "name"), f"another rule is already named {name!r}")
    names.add(name)
    if once:
        _check_once(reader, kind, action, join_key(key, "once"))
    return Rule(name, _match(reader, entry.get("match"), join_key(key, "match")), action, once)


def _check_once(reader: Reader, kind: str, action: Any, key: str) -> None:
    """
    A 'once' rule ends when its boot fetches the beacon: refuse the rules
    whose boots never do, which would otherwise apply for ever.
    """
    if kind in ("local", "ignore"):
        raise reader.fail(key, f"a {kind} rule never reports a boot, so 'once' would never "
                               "end; put the rule after the 'once' one instead")
    if isinstance(action, IPXEScript) and "beacon" not in action.script:
        raise reader.fail(key, "the script must fetch {{ beacon }} before it boots: that is "
                               "how pxed learns the boot happened")
