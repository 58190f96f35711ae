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

from pxed.config.boot import parse_boot
from pxed.config.http import HTTPLimits, parse_http
from pxed.config.policy import PolicyConfig, parse_policy
from pxed.config.reader import ConfigError, Reader
from pxed.config.server import (
    DEFAULT_BOOTLOADERS,
    IPXE_PACKAGE,
    Ports,
    ServerConfig,
    parse_bootloaders,
    parse_server,
)
from pxed.config.status import StatusConfig, parse_status
from pxed.config.tftp import TFTPConfig, parse_tftp
from pxed.policy import BootSpec

__all__ = [
    "Config",
    "ConfigError",
    "HTTPLimits",
    "DEFAULT_BOOTLOADERS",
    "IPXE_PACKAGE",
    "PolicyConfig",
    "Ports",
    "ServerConfig",
    "StatusConfig",
    "TFTPConfig",
    "load_config",
    "parse_config",
]

#: The top-level sections; each is parsed by its own module.
SECTIONS = {"server", "boot", "bootloaders", "policy", "status", "tftp", "http"}


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


def parse_config(data: Any, source: str = "<config>") -> Config:
    """
    Validate an already-parsed YAML document.
    """
    reader = Reader(source)
    top = reader.mapping(data, "", SECTIONS)
    default, machines = parse_boot(reader, top.get("boot"))
    return Config(
        source=source,
        server=parse_server(reader, top.get("server")),
        default=default,
        machines=machines,
        bootloaders=parse_bootloaders(reader, top.get("bootloaders")),
        policy=parse_policy(reader, top.get("policy")),
        status=parse_status(reader, top.get("status")),
        tftp=parse_tftp(reader, top.get("tftp")),
        http=parse_http(reader, top.get("http")),
    )


def load_config(path: str | os.PathLike[str]) -> Config:
    """
    Read, parse and validate a configuration file.

    @raise ConfigError: for every problem, including unreadable files and
        YAML syntax errors.
    """
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8") as f:
            data = yaml.safe_load(f)
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
