# -*- test-case-name: tests.test_config -*-
"""
Load and validate pxed's YAML configuration.

Every user mistake becomes one L{ConfigError} naming the file, the key and
what is wrong, so C{twistd} can print a single line instead of a traceback.
Validation happens entirely at load time, including checks that files
exist, so a bad setting fails at startup rather than in the middle of a
machine's boot.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pxed.config.arm64 import ARM64Config, parse_arm64
from pxed.config.boot import parse_boot
from pxed.config.dhcp import DHCPConfig, parse_dhcp
from pxed.config.http import HTTPLimits, parse_http
from pxed.config.policy import PolicyConfig, parse_policy
from pxed.config.reader import ConfigError, Reader, join_key
from pxed.config.server import (
    DEFAULT_BOOTLOADERS,
    IPXE_PACKAGE,
    Ports,
    ServerConfig,
    parse_bootloaders,
    parse_server,
    program_files,
    shim_companions,
)
from pxed.config.state import StateConfig, parse_state
from pxed.config.status import StatusConfig, parse_status
from pxed.config.tftp import TFTPConfig, parse_tftp
from pxed.policy import BootSpec
from pxed.templates import trial_render

__all__ = [
    "ARM64Config",
    "Config",
    "ConfigError",
    "HTTPLimits",
    "DHCPConfig",
    "DEFAULT_BOOTLOADERS",
    "IPXE_PACKAGE",
    "PolicyConfig",
    "Ports",
    "ServerConfig",
    "StateConfig",
    "StatusConfig",
    "TFTPConfig",
    "check_host",
    "load_config",
    "parse_config",
]

#: The top-level sections; each is parsed by its own module.
SECTIONS = {"server", "boot", "bootloaders", "policy", "status", "tftp", "http",
            "arm64", "state", "dhcp"}


@dataclass(frozen=True)
class Config:
    source: str
    server: ServerConfig
    default: BootSpec | None
    machines: Mapping[str, BootSpec]
    bootloaders: Mapping[str, Path]
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    status: StatusConfig = field(default_factory=StatusConfig)
    tftp: TFTPConfig = field(default_factory=TFTPConfig)
    http: HTTPLimits = field(default_factory=HTTPLimits)
    arm64: ARM64Config = field(default_factory=ARM64Config)
    state: StateConfig = field(default_factory=StateConfig)
    dhcp: DHCPConfig = field(default_factory=DHCPConfig)
    #: Files served beside the boot programs, by name (shim's grubx64.efi).
    companions: Mapping[str, Path] = field(default_factory=dict)

    def programs(self) -> dict[str, Path]:
        """
        The boot programs by the names TFTP and HTTP serve them under, and
        the files that go with them.
        """
        return program_files(self.bootloaders, self.companions)


def parse_config(data: Any, source: str = "<config>") -> Config:
    """
    Validate an already-parsed YAML document, then render every template
    in it for sample machines (L{trial_render}).
    """
    reader = Reader(source)
    top = reader.mapping(data, "", SECTIONS)
    default, machines = parse_boot(reader, top.get("boot"))
    policy = parse_policy(reader, top.get("policy"))
    state = parse_state(reader, top.get("state"))
    if state.url is not None and policy.state_file is not None:
        raise reader.fail("policy.state_file", "is not used with state.url (the database keeps "
                                               "the 'once' flags): remove one of them")
    config = Config(
        source=source,
        server=parse_server(reader, top.get("server")),
        default=default,
        machines=machines,
        bootloaders=parse_bootloaders(reader, top.get("bootloaders")),
        policy=policy,
        status=parse_status(reader, top.get("status")),
        tftp=parse_tftp(reader, top.get("tftp")),
        http=parse_http(reader, top.get("http")),
        arm64=parse_arm64(reader, top.get("arm64")),
        state=state,
        dhcp=parse_dhcp(reader, top.get("dhcp")),
        companions=shim_companions(top.get("bootloaders")),
    )
    for key, text in reader.templates:
        problem = trial_render(text, config.policy.exports)
        if problem is not None:
            raise reader.fail(key, problem)
    return config


def _refuse_duplicates(source: str, node: yaml.Node, key: str, seen: set[int]) -> None:
    """
    Refuse a key given twice in one mapping: YAML would keep the last one
    silently, which hides a second C{policy:} block or a machine listed
    twice.  Walks the composed document (each node once: aliases share).
    """
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        lines: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            name, line = key_node.value, key_node.start_mark.line + 1
            where = join_key(key, name)
            if name in lines:
                raise ConfigError(source, where, f"given twice (line {lines[name]} and line "
                                                 f"{line}); YAML would silently keep the last")
            lines[name] = line
            _refuse_duplicates(source, value_node, where, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _refuse_duplicates(source, item, f"{key}[{i}]", seen)


def _read_yaml(source: str, stream: Any) -> Any:
    loader = yaml.SafeLoader(stream)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _refuse_duplicates(source, node, "", set())
        return loader.construct_document(node)
    finally:
        loader.dispose()


def load_config(path: str | os.PathLike[str]) -> Config:
    """
    Read, parse and validate a configuration file.

    @raise ConfigError: for every problem, including unreadable files and
        YAML syntax errors.
    """
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8") as f:
            data = _read_yaml(source, f)
    except OSError as e:
        raise ConfigError(source, "", f"cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ConfigError(source, "", "is not UTF-8 text") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(source, "", f"invalid YAML: {where}{problem}") from None
    return parse_config(data, source)


def check_host(config: Config) -> None:
    """
    What the configuration needs from this host, checked before any port
    is opened: the interface C{server.interface} names must exist.

    @raise ConfigError: naming the key.
    """
    import socket

    name = config.server.interface
    if name is not None:
        try:
            socket.if_nametoindex(name)
        except OSError:
            raise ConfigError(config.source, "server.interface",
                              f"no network interface named {name!r} on this host") from None
