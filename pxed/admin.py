# -*- test-case-name: tests.test_reinstall -*-
"""
C{pxed reinstall MAC}: make a machine's next boot go through its 'once'
rules again, from the command line.

The running server holds the flags in memory and rewrites the state file
from them, so editing the file under it would be undone by the next boot
that sets a flag.  So with an admin token configured this asks the running
server (C{POST /_/machines/MAC/reinstall}, the same action the HTTP API
offers); only when no server answers there is the state file changed
directly, which is then safe.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from urllib.parse import quote

from pxed.config import Config
from pxed.net import interface_address
from pxed.store import FileStateStore, StateFileError

__all__ = ["reinstall", "server_url"]


def server_url(config: Config) -> str:
    """
    Where the running pxed's HTTP server answers on this host.
    """
    server = config.server
    host = server.address
    if host is None and server.interface is not None:
        host = interface_address(server.interface)
    host = host or "127.0.0.1"
    port = server.ports.http
    return f"http://{host}" if port == 80 else f"http://{host}:{port}"


def _ask_server(config: Config, mac: str, rule: str | None,
                timeout: float) -> tuple[bool, str] | None:
    """
    The running server's answer, or C{None} if none answers.
    """
    assert config.policy.admin_token is not None
    url = f"{server_url(config)}/_/machines/{mac}/reinstall"
    if rule:
        url += f"?rule={quote(rule)}"
    request = urllib.request.Request(url, method="POST", headers={
        "Authorization": f"Bearer {config.policy.admin_token}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return True, response.read().decode("utf-8", "replace").strip()
    except urllib.error.HTTPError as e:
        body = e.read().decode("utf-8", "replace").strip()
        return False, f"{url}: the server answered {e.code}: {body}"
    except (urllib.error.URLError, OSError):
        return None


def reinstall(config: Config, mac: str, rule: str | None = None,
              timeout: float = 5.0) -> tuple[bool, str]:
    """
    Clear C{mac}'s 'once' flags (or C{rule}'s only).

    @return: whether it worked, and what to tell the user.
    """
    note = ""
    if config.policy.admin_token is not None:
        answer = _ask_server(config, mac, rule, timeout)
        if answer is not None:
            return answer
        note = f"no pxed answers at {server_url(config)}; "
    path = config.policy.state_file
    if path is None:
        return False, (f"{note}nothing to clear: without policy.state_file the flags live only "
                       "in the running server's memory (set policy.admin to reach it)")
    try:
        store = FileStateStore(path)
        result = store.clear_once(mac, rule)
    except StateFileError as e:
        return False, f"{note}{e}"
    errors: list[str] = []
    result.addErrback(lambda f: errors.append(f.getErrorMessage()))
    if errors:
        return False, f"{note}{path}: cannot write: {errors[0]}"
    which = f"the 'once' flag of rule {rule}" if rule else "all 'once' flags"
    later = "" if note else (" (a running pxed re-reads the file on reload: systemctl reload "
                             "pxed; set policy.admin so this asks the server instead)")
    return True, f"{note}{mac}: cleared {which} in {path}{later}"
