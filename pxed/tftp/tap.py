# -*- test-case-name: tests.test_tftp_tap -*-
"""
C{twistd pxed-tftp}: pxed's TFTP server on its own, serving a directory
(and, with C{--upload-root}, taking uploads into another).

It is the same engine C{twistd pxed} runs (windowsize, adaptive timeouts,
limits), for sites that want a fast TFTP server and nothing else
(read-only unless C{--upload-root} is given).  The limits are validated by
the C{tftp:} configuration section's own parser, so the two commands accept
exactly the same values.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from twisted.application.service import IService, MultiService
from twisted.logger import Logger
from twisted.python import usage

from pxed import logs
from pxed.config.reader import ConfigError, Reader
from pxed.config.tftp import TFTPConfig, parse_tftp
from pxed.descriptors import fit_descriptors
from pxed.ports import OneLineStartup, UDPService
from pxed.tftp.protocol import TFTPServerProtocol
from pxed.tftp.source import FilesystemSource
from pxed.tftp.workers import WorkerPool, share

log = Logger()

__all__ = ["Options", "makeService", "buildService"]

_DEFAULTS = TFTPConfig()

#: Options that are C{tftp:} configuration keys, with how to read them.
_LIMITS = {
    "max-blksize": int,
    "max-windowsize": int,
    "timeout": float,
    "retries": int,
    "patience": float,
    "max-transfers": int,
    "max-per-client": int,
    "max-upload-size": int,
    "upload-quota": int,
}


class Options(usage.Options):
    synopsis = "--root DIR [options]"
    longdesc = (
        "pxed-tftp: a TFTP server (RFC 1350 with blksize, tsize, timeout and windowsize) "
        "serving the files below --root, read-only unless --upload-root is given."
    )
    optFlags = [
        ["upload-overwrite", None, "Let uploads replace existing files."],
    ]
    optParameters = [
        ["root", "r", None, "The directory to serve (read-only; required)."],
        ["port", "p", 69, "The UDP port to listen on.", int],
        ["interface", "i", "", "The local address to listen on (default: all)."],
        ["max-blksize", None, _DEFAULTS.max_blksize,
         "Largest block size granted (also kept within the receiving interface's MTU)."],
        ["max-windowsize", None, _DEFAULTS.max_windowsize, "Largest RFC 7440 window granted."],
        ["timeout", None, _DEFAULTS.timeout,
         "Retransmission timeout ceiling, in seconds (below it, it follows the round trip)."],
        ["retries", None, _DEFAULTS.retries, "Retransmissions at the full timeout."],
        ["patience", None, _DEFAULTS.patience,
         "Seconds without progress before a transfer is given up."],
        ["max-transfers", None, _DEFAULTS.max_transfers, "Concurrent transfers."],
        ["max-per-client", None, _DEFAULTS.max_per_client,
         "Concurrent transfers per client address."],
        ["upload-root", None, None,
         "A directory write requests may create files in (default: writes are refused)."],
        ["max-upload-size", None, _DEFAULTS.max_upload_size, "Largest upload, in bytes."],
        ["upload-quota", None, _DEFAULTS.upload_quota,
         "Bytes all uploads together may take in the upload root."],
        ["workers", None, 1, "Processes serving TFTP on the port (SO_REUSEPORT): this one and "
         "workers - 1 children; use up to one per core.", int],
        ["log-level", None, "info", "The least severe events written: debug (each transfer's "
         "start too), info (one line per transfer), warn, error or critical."],
    ]

    def postOptions(self) -> None:
        self._log_level()
        if not self["root"]:
            raise usage.UsageError("--root DIR is required")
        if not 0 <= self["port"] <= 65535:
            raise usage.UsageError(f"--port must be 0..65535, not {self['port']}")
        if not 1 <= self["workers"] <= 256:
            raise usage.UsageError(f"--workers must be 1..256, not {self['workers']}")
        if self["workers"] > 1 and self["port"] == 0:
            raise usage.UsageError("--workers needs a fixed --port: the processes share it")
        section: dict[str, Any] = {"root": self["root"], "upload_root": self["upload-root"],
                                   "upload_overwrite": bool(self["upload-overwrite"])}
        for name, kind in _LIMITS.items():
            try:
                section[name.replace("-", "_")] = kind(self[name])
            except ValueError:
                raise usage.UsageError(f"--{name} must be a number, not {self[name]!r}") from None
        try:
            self["config"] = parse_tftp(Reader("pxed-tftp"), section)
        except ConfigError as e:
            option = "--" + e.key.split(".", 1)[-1].replace("_", "-")
            raise usage.UsageError(f"{option}: {e.problem}") from None


    def _log_level(self) -> None:
        logs.configure_twistd(self, "text", self["log-level"])


def makeService(options: Options, reactor: Any = None) -> IService:
    """
    What C{twistd pxed-tftp} runs: L{buildService}, whose port errors are
    one line (L{OneLineStartup}).
    """
    startup = OneLineStartup()
    buildService(options, reactor).setServiceParent(startup)
    return startup


def buildService(options: Options, reactor: Any = None) -> IService:
    config: TFTPConfig = options["config"]
    assert config.root is not None
    workers = options["workers"]
    if workers > 1:
        config = share(config, workers)
    assert config.root is not None
    # Two descriptors per transfer: raise the soft limit, or serve fewer
    # and say so (pxed.descriptors).
    budget = fit_descriptors(0, config.max_transfers)
    if budget.note is not None:
        log.warn("{note}", note=budget.note)
        config = replace(config, max_transfers=budget.max_transfers)
    assert config.root is not None
    protocol = TFTPServerProtocol(FilesystemSource(config.root), reactor,
                                  **config.protocol_options())
    udp = UDPService(options["port"], protocol, options["interface"], reactor=reactor,
                     reuse_port=workers > 1)
    if workers == 1:
        return udp
    # This process serves too; the children join it on the port once it is open.
    top = MultiService()
    udp.setServiceParent(top)
    WorkerPool(workers - 1, config, options["port"], options["interface"],
               options["log-level"], reactor).setServiceParent(top)
    return top
