# -*- test-case-name: tests.test_status_leases -*-
"""
C{GET /_/leases}: the DHCP leases pxed handed out (C{dhcp.mode: full}),
as JSON, for the status page's lease table and for scripts.

Only leases held now are listed (bound or offered); expired records the
store keeps to give returning clients their old address are left out.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.server import NOT_DONE_YET

from pxed.dhcp.leases import DECLINED, Lease
from pxed.http.readonly import ReadOnlyLeaf
from pxed.leasestore import ILeaseStore

__all__ = ["LeasesResource", "LEASES_PATH", "leases_json"]

LEASES_PATH = "/_/leases"

log = Logger()


def leases_json(leases: list[Lease], now: float) -> dict[str, Any]:
    """
    The body of C{/_/leases}: held leases by address, with C{expires} in
    POSIX seconds.
    """
    held = sorted((lease for lease in leases if lease.held(now) and lease.state != DECLINED),
                  key=lambda lease: tuple(int(part) for part in lease.address.split(".")))
    return {"now": now, "leases": [
        {"mac": lease.mac, "address": lease.address, "expires": lease.expires,
         "state": lease.state, "client": lease.client}
        for lease in held]}


class LeasesResource(ReadOnlyLeaf):
    def __init__(self, store: ILeaseStore, clock: IReactorTime) -> None:
        super().__init__()
        self.store = store
        self.clock = clock

    def render_read(self, request: IRequest) -> Any:
        if request.path.rstrip(b"/") != LEASES_PATH.encode():
            request.setResponseCode(404)
            return b"not found\n"
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"Cache-Control", b"no-cache")
        d = self.store.leases()

        def done(leases: list[Lease]) -> None:
            body = json.dumps(leases_json(leases, self.clock.seconds()), separators=(",", ":"))
            request.write(body.encode() + b"\n")
            request.finish()

        def failed(failure: Failure) -> None:
            log.failure("/_/leases: cannot read the lease store", failure)
            request.setResponseCode(503)
            request.write(b'{"error":"lease store unavailable"}\n')
            request.finish()

        d.addCallbacks(done, failed)
        return NOT_DONE_YET
