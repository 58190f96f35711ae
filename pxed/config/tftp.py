# -*- test-case-name: tests.test_config_tftp -*-
"""
The C{tftp:} section: how generous the TFTP server is (block and window
sizes, how many transfers at once) and how patient (timeouts, retries),
plus an optional directory served read-only beside the boot programs, and
an optional one that write requests may create files in (off by default).

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
from pxed.tftp.upload import MAX_UPLOAD, UPLOAD_QUOTA, UploadRoot

__all__ = ["TFTPConfig", "parse_tftp"]

_KEYS = {"root", "max_blksize", "max_windowsize", "timeout", "retries", "patience",
         "max_transfers", "max_per_client", "upload_root", "max_upload_size",
         "upload_overwrite", "upload_quota"}


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
    @ivar upload_root: a directory write requests may create files in, or
        C{None} (every write is refused with ERROR 2).
    @ivar max_upload_size: the largest upload, in bytes.
    @ivar upload_quota: the bytes all uploads together may take in the
        upload root (the files there count).
    @ivar upload_overwrite: whether an upload may replace an existing file.
    """

    root: Path | None = None
    max_blksize: int = 1468
    max_windowsize: int = 16
    timeout: float = 1.0
    retries: int = 5
    patience: float = 30.0
    max_transfers: int = 500
    max_per_client: int = 8
    upload_root: Path | None = None
    max_upload_size: int = MAX_UPLOAD
    upload_quota: int = UPLOAD_QUOTA
    upload_overwrite: bool = False

    def protocol_options(self) -> dict[str, Any]:
        """Keyword arguments for L{pxed.tftp.protocol.TFTPServerProtocol}."""
        upload = None
        if self.upload_root is not None:
            upload = UploadRoot(self.upload_root, max_size=self.max_upload_size,
                                overwrite=self.upload_overwrite, quota=self.upload_quota)
        return {
            "upload": upload,
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


def _directory(reader: Reader, value: Any, key: str, access: int, what: str) -> Path:
    path = Path(reader.string(value, key))
    if not path.is_absolute():
        raise reader.fail(key, f"{value!r} must be an absolute path")
    if not path.is_dir():
        raise reader.fail(key, f"directory {value} does not exist")
    if not os.access(path, access):
        raise reader.fail(key, f"directory {value} is not {what}")
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
    if section.get("root") is not None:
        limits["root"] = _directory(reader, section["root"], "tftp.root",
                                    os.R_OK | os.X_OK, "readable")
    if section.get("upload_root") is not None:
        limits["upload_root"] = _directory(reader, section["upload_root"], "tftp.upload_root",
                                           os.W_OK | os.X_OK, "writable")
    if section.get("upload_quota") is not None:
        limits["upload_quota"] = _whole(reader, section["upload_quota"], "tftp.upload_quota",
                                        0, 1 << 50)
    if section.get("max_upload_size") is not None:
        limits["max_upload_size"] = _whole(reader, section["max_upload_size"],
                                           "tftp.max_upload_size", 0, 1 << 40)
    if section.get("upload_overwrite") is not None:
        overwrite = section["upload_overwrite"]
        if not isinstance(overwrite, bool):
            raise reader.fail("tftp.upload_overwrite", f"must be true or false, not {overwrite!r}")
        limits["upload_overwrite"] = overwrite
    return TFTPConfig(**limits)
