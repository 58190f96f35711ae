# -*- test-case-name: tests.test_tap -*-
"""
C{twistd pxed}: command-line options and the service they make.
"""

from __future__ import annotations

import sys

from twisted.application.service import IService
from twisted.python import usage

from pxed.config import ConfigError, load_config
from pxed.service import makeBootService

__all__ = ["Options", "makeService"]

DEFAULT_CONFIG = "/etc/pxed/pxed.yaml"


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "pxed: a network boot server. ProxyDHCP (UDP 67), PXE boot server (UDP 4011), "
        "TFTP (UDP 69) and HTTP, answering only network-booting machines and never "
        "handing out addresses."
    )
    optParameters = [
        ["config", "c", DEFAULT_CONFIG, "The YAML configuration file."],
    ]

    def postOptions(self) -> None:
        try:
            self["loaded"] = load_config(self["config"])
        except ConfigError as e:
            # usage.UsageError makes twistd print one line and exit non-zero,
            # with no traceback: a config mistake is the user's to fix.
            raise usage.UsageError(f"bad configuration: {e}") from None


def makeService(options: Options) -> IService:
    return makeBootService(options["loaded"])


def check(argv: list[str] | None = None) -> int:
    """
    C{python -m pxed.tap --config FILE}: validate a configuration and exit,
    for config management tools to run before a reload.
    """
    options = Options()
    try:
        options.parseOptions(argv if argv is not None else sys.argv[1:])
    except usage.UsageError as e:
        print(f"pxed: {e}", file=sys.stderr)
        return 1
    print(f"pxed: {options['config']} is valid")
    return 0


if __name__ == "__main__":
    raise SystemExit(check())
