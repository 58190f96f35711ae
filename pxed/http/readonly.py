# -*- test-case-name: tests.test_status_leases,tests.test_status -*-
"""
The base of pxed's read-only HTTP views (the status page, its JSON API,
the metrics, C{/_/leases}): they answer GET and HEAD, and refuse every
other method the same way, in one place.
"""

from __future__ import annotations

from typing import Any

from twisted.web.iweb import IRequest
from twisted.web.resource import Resource

__all__ = ["ReadOnlyLeaf"]


class ReadOnlyLeaf(Resource):
    """
    A leaf resource that serves GET and HEAD with L{render_read} and
    answers anything else with 405 and an C{Allow} header (RFC 9110
    section 15.5.6), so a script that POSTs to a view learns why it failed.
    """

    isLeaf = True

    def render(self, request: IRequest) -> Any:  # type: ignore[override]
        if request.method not in (b"GET", b"HEAD"):
            request.setResponseCode(405)
            request.setHeader(b"Allow", b"GET, HEAD")
            return b""
        return self.render_read(request)

    def render_read(self, request: IRequest) -> Any:
        """
        The body (bytes) or C{NOT_DONE_YET} for a GET or HEAD.
        """
        raise NotImplementedError
