# -*- test-case-name: tests.test_reinstall -*-
"""
pxed's admin actions over HTTP: reload the configuration, and clear a
machine's 'once' flags so it installs again.

Both are off unless C{policy.admin} sets a token (they answer 404 then),
and both want C{Authorization: Bearer TOKEN}, compared in constant time.
The routes live on L{pxed.http.app.BootHTTP}; what they do is here, on
the attributes a reload hands the app (C{admin_token}, C{reload},
C{store}).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import unquote

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest

from pxed.config.boot import normal_mac
from pxed.machine import is_mac
from pxed.store import IStateStore

__all__ = ["authorized", "reload", "reinstall"]

log = Logger()

_TEXT = b"text/plain; charset=utf-8"


class AdminHost(Protocol):
    admin_token: str | None
    reload: Callable[[], tuple[bool, str]] | None
    store: IStateStore


def authorized(request: IRequest, token: str | None) -> bool:
    """
    Whether the request carries C{Authorization: Bearer TOKEN} with the
    admin token, compared in constant time.
    """
    if token is None:
        return False
    # As bytes: the header is whatever the client sent, the token ASCII.
    given = request.getHeader(b"authorization") or b""
    return hmac.compare_digest(given, b"Bearer " + token.encode("utf-8"))


def _refuse(request: IRequest, code: int, body: bytes) -> bytes:
    request.setResponseCode(code)
    return body


def _peer(request: IRequest) -> str | None:
    return getattr(request.getClientAddress(), "host", None)


def reload(host: AdminHost, request: IRequest) -> bytes:
    """
    C{POST /_/admin/reload}: reload the configuration; 409 with the reason
    when the new file is refused (the running one keeps serving).
    """
    request.setHeader(b"Content-Type", _TEXT)
    if host.admin_token is None or host.reload is None:
        return _refuse(request, 404, b"not found\n")
    if not authorized(request, host.admin_token):
        return _refuse(request, 403, b"forbidden\n")
    ok, message = host.reload()
    if not ok:
        request.setResponseCode(409)
    return f"{message}\n".encode()


def reinstall(host: AdminHost, request: IRequest, mac: str) -> Any:
    """
    C{POST /_/machines/MAC/reinstall[?rule=NAME]}: clear the machine's
    'once' flags (all, or one rule's) through the state store, so its
    next boot goes through its 'once' rules again.
    """
    request.setHeader(b"Content-Type", _TEXT)
    if host.admin_token is None:
        return _refuse(request, 404, b"not found\n")
    if not authorized(request, host.admin_token):
        log.warn("{peer}: refused a reinstall of {mac} without the admin token",
                 peer=_peer(request), mac=mac)
        return _refuse(request, 403, b"forbidden\n")
    normal = normal_mac(unquote(mac))
    if not is_mac(normal):
        return _refuse(request, 400, b"bad request: not a MAC address like 52:54:00:12:34:56\n")
    values = request.args.get(b"rule") if request.args else None
    rule = values[0].decode("utf-8", "replace") if values else None
    d: Deferred[None] = host.store.clear_once(normal, rule)

    def cleared(_: object) -> bytes:
        which = f"the 'once' flag of rule {rule}" if rule else "all 'once' flags"
        log.info("{mac}: cleared {which} (admin request from {peer}); its next boot goes "
                 "through its 'once' rules again", mac=normal, which=which, peer=_peer(request))
        return f"{normal}: cleared {which}\n".encode()

    def failed(failure: Failure) -> bytes:
        log.failure("{mac}: cannot clear 'once' flags", failure, mac=normal)
        request.setResponseCode(500)
        return f"cannot clear the flags: {failure.getErrorMessage()}\n".encode()

    return d.addCallbacks(cleared, failed)
