# -*- test-case-name: tests.test_reload,tests.test_logging -*-
"""
C{twistd pxed}: command-line options and the service they make.

Under twistd, SIGHUP reloads the configuration file (see
L{pxed.runtime.PolicyRuntime.reload}): a bad file is rejected with the
same one-line message as at start-up, and the old configuration keeps
serving.

Every start-up error is one line: a bad configuration (file, key,
problem; also an interface the host does not have) stops option parsing,
and a port that cannot be opened (in use, and by which process; no
permission) is logged as one error line by L{OneLineStartup} before
twistd exits with status 1.  The traceback is logged at debug level.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from typing import Any

from twisted.application.service import IService, Service
from twisted.logger import Logger
from twisted.python import usage

from pxed import logs
from pxed.config import ConfigError, check_host, load_config
from pxed.ports import OneLineStartup
from pxed.reactors import given_or_global
from pxed.service import makeBootService

__all__ = ["Options", "OneLineStartup", "makeService"]

log = Logger()

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
        ["log-format", None, "text", "text, or json: one JSON object per line with each event's "
         "fields (mac, arch, stage, peer ...), for log shippers."],
        ["log-level", None, "info", "The least severe events written: debug (every packet), "
         "info (one line per boot stage), warn, error or critical."],
    ]

    def postOptions(self) -> None:
        self._log_format()
        try:
            self["loaded"] = load_config(self["config"])
            check_host(self["loaded"])
        except ConfigError as e:
            # usage.UsageError makes twistd print one line and exit non-zero,
            # with no traceback: a config mistake is the user's to fix.
            raise usage.UsageError(f"bad configuration: {e}") from None

    def _log_format(self) -> None:
        logs.configure_twistd(self, self["log-format"], self["log-level"])


class ReloadOnSignal(Service):
    """
    Calls C{reload} when the process gets C{signum} (SIGHUP), on the
    reactor thread, while running; puts the previous handler back on stop.
    """

    def __init__(self, reload: Callable[[], Any], reactor: Any = None,
                 signum: int = signal.SIGHUP) -> None:
        self.reload = reload
        self.reactor = reactor
        self.signum = signum
        self._previous: Any = None

    def startService(self) -> None:
        super().startService()
        self.reactor = given_or_global(self.reactor)
        self._previous = signal.signal(self.signum, self._received)

    def _received(self, signum: int, frame: Any) -> None:
        # Signal handlers run between bytecodes: hand the work to the reactor.
        self.reactor.callFromThread(self.reload)

    def stopService(self) -> None:
        super().stopService()
        if self._previous is not None:
            signal.signal(self.signum, self._previous)
            self._previous = None


def makeService(options: Options) -> IService:
    config = options["loaded"]
    try:
        top = makeBootService(config)
    except ConfigError as e:
        # The state database unreachable or too new: one line, no traceback.
        raise SystemExit(f"pxed: cannot start: {e}") from None
    runtime = top.getServiceNamed("policy")  # type: ignore[attr-defined]
    ReloadOnSignal(runtime.reload).setServiceParent(top)
    startup = OneLineStartup(config.source)
    top.setServiceParent(startup)
    return startup


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
