# -*- test-case-name: tests.test_config_tftp -*-
"""
The C{tftp:} section: how generous the TFTP server is (block and window
sizes, how many transfers at once) and how patient (timeouts, retries),
plus an optional directory served read-only beside the boot programs.

The defaults suit a LAN of PXE firmware; they are here so that a site with
jumbo frames, a rack that boots all at once or a slow WAN link can say so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pxed.config.policy import parse_duration
from pxed.config.reader import Reader
from pxed.tftp.options import MAX_BLKSIZE, MAX_WINDOWSIZE, MIN_BLKSIZE

__all__ = ["TFTPConfig", "parse_tftp"]

_KEYS = {"root", "max_blksize", "max_windowsize", "timeout", "retries", "patience",
         "max_transfers", "max_per_client"}


@dataclass(frozen=True)
class TFTPConfig:
    """
    @ivar root: a directory whose files are served read-only (after the
        boot programs, which keep their names), or C{None}.
    @ivar max_blksize: the largest block size granted; it is also lowered
        to what fits the MTU of the interface each request arrived on.
        1468 fills an Ethernet frame; more needs jumbo frames end to end.
    @ivar max_windowsize: the largest RFC 7440 window granted.
    @ivar timeout: the retransmission timeout's ceiling, in seconds (the
        timeout used follows the measured round trip below it).
    @ivar retries: retransmissions at the full timeout before the server
        waits silently for the client.
    @ivar patience: seconds without progress before a transfer is given
        up and its port closed.
    @ivar max_transfers: transfers at once; more get a "Server busy" ERROR.
        dnsmasq stops at 50 by default, which a rack booting at once
        exceeds.
    @ivar max_per_client: transfers at once per client address.
    """

    root: Path | None = None
    max_blksize: int = 1468
    max_windowsize: int = 16
    timeout: float = 1.0
    retries: int = 5
    patience: float = 30.0
    max_transfers: int = 500
    max_per_client: int = 8

    def protocol_options(self) -> dict[str, Any]:
        """Keyword arguments for L{pxed.tftp.protocol.TFTPServerProtocol}."""
        return {
            "max_blksize": self.max_blksize,
            "max_windowsize": self.max_windowsize,
            "timeout": self.timeout,
            "retries": self.retries,
            "patience": self.patience,
            "max_transfers": self.max_transfers,
            "max_per_client": self.max_per_client,
        }


def _whole(reader: Reader, value: Any, key: str, least: int, most: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= most:
        raise reader.fail(key, f"must be a whole number {least}..{most}, not {value!r}")
    return value


def _root(reader: Reader, value: Any) -> Path:
    path = Path(reader.string(value, "tftp.root"))
    if not path.is_absolute():
        raise reader.fail("tftp.root", f"{value!r} must be an absolute path")
    if not path.is_dir():
        raise reader.fail("tftp.root", f"directory {value} does not exist")
    if not os.access(path, os.R_OK | os.X_OK):
        raise reader.fail("tftp.root", f"directory {value} is not readable")
    return path


def parse_tftp(reader: Reader, value: Any) -> TFTPConfig:
    section = reader.mapping(value, "tftp", _KEYS)
    defaults = TFTPConfig()
    limits: dict[str, Any] = {}
    bounds = {
        "max_blksize": (MIN_BLKSIZE, MAX_BLKSIZE),
        "max_windowsize": (1, MAX_WINDOWSIZE),
        "retries": (0, 100),
        "max_transfers": (1, 100_000),
        "max_per_client": (1, 100_000),
    }
    for name, (least, most) in bounds.items():
        if section.get(name) is not None:
            limits[name] = _whole(reader, section[name], f"tftp.{name}", least, most)
    # RFC 2349 caps a negotiated timeout at 255 s; the ceiling stays within it.
    for name, ceiling in (("timeout", 255.0), ("patience", 86400.0)):
        if section.get(name) is not None:
            seconds = parse_duration(reader, section[name], f"tftp.{name}")
            if seconds > ceiling:
                raise reader.fail(f"tftp.{name}", f"must be at most {ceiling:g} seconds")
            limits[name] = seconds
    timeout = limits.get("timeout", defaults.timeout)
    if "patience" in limits and limits["patience"] < timeout:
        raise reader.fail("tftp.patience", f"must be at least tftp.timeout ({timeout:g}s)")
    root = _root(reader, section["root"]) if section.get("root") is not None else None
    return TFTPConfig(root=root, **limits)
