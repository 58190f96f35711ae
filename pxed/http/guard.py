# -*- test-case-name: tests.test_http_guard -*-
"""
The HTTP site's defences against clients that hold connections open.

A boot network is shared with whatever else is plugged into it, and each
connection costs pxed a file descriptor (two while a file is streamed).
Twisted's own idle timeout is reset by every byte received and switched
off while a response is in flight, so a client sending a header line now
and then (slowloris), or one that starts a download and never reads it,
would keep its connection for ever.  L{GuardedSite} bounds all of it:

  - a request (line, headers and body) must arrive complete within
    C{request_timeout} of the connection opening or of the previous
    response ending (which is also how long a kept-alive connection may
    sit idle);
  - while a response is sent, each time the socket's buffers fill, the
    client must read enough to drain them within C{send_timeout};
  - at most C{max_connections} connections at once, and
    C{max_per_client} from one address: more are closed at once.

A connection over a bound is aborted (no lingering close): its
descriptor is back at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.server import Site

from pxed.dhcp.logbudget import LogBudget
from pxed.reactors import given_or_global

__all__ = ["HTTPLimits", "GuardedSite"]

log = Logger()


@dataclass(frozen=True)
class HTTPLimits:
    """
    @ivar max_connections: connections at once; more are closed at once.
    @ivar max_per_client: connections at once from one address.
    @ivar request_timeout: seconds for a whole request to arrive, from the
        connection opening or the previous response ending.
    @ivar send_timeout: seconds the client may leave pxed's send buffers
        full (not reading) before it is dropped.
    """

    max_connections: int = 256
    max_per_client: int = 32
    request_timeout: float = 10.0
    send_timeout: float = 30.0


class _GuardedChannel(HTTPChannel):
    """
    An C{HTTPChannel} with the request and send deadlines of its site.
    """

    site: GuardedSite
    _deadline: IDelayedCall | None = None
    _stalled: IDelayedCall | None = None

    def connectionMade(self) -> None:
        super().connectionMade()
        self._arm()

    def _arm(self) -> None:
        self._disarm()
        limits = self.site.limits
        self._deadline = self.site.reactor.callLater(limits.request_timeout, self._expire,
                                                     "request")

    def _disarm(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def allContentReceived(self) -> None:
        self._disarm()
        super().allContentReceived()

    def requestDone(self, request: Any) -> None:
        super().requestDone(request)
        if self.persistent and getattr(self.transport, "connected", False):
            self._arm()  # the next request, or how long it may sit idle

    def pauseProducing(self) -> None:
        super().pauseProducing()
        if self._stalled is None:
            self._stalled = self.site.reactor.callLater(self.site.limits.send_timeout,
                                                        self._expire, "send")

    def resumeProducing(self) -> None:
        # Disarmed first: a push producer may fill the buffers again before
        # resumeProducing returns, and that pause must arm a new deadline.
        if self._stalled is not None:
            if self._stalled.active():
                self._stalled.cancel()
            self._stalled = None
        super().resumeProducing()

    def _expire(self, which: str) -> None:
        if which == "request":
            self._deadline = None
        else:
            self._stalled = None
        self.site.dropped(self, which)
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._disarm()
        if self._stalled is not None and self._stalled.active():
            self._stalled.cancel()
        self._stalled = None
        self.site.released(self)
        super().connectionLost(reason)


class GuardedSite(Site):
    """
    A C{Site} that bounds connections (see the module's docstring).

    @ivar connections: open connections by client address.
    """

    protocol = _GuardedChannel  # type: ignore[assignment]

    def __init__(self, resource: Any, limits: HTTPLimits | None = None, reactor: Any = None,
                 **kwargs: Any) -> None:
        reactor = given_or_global(reactor)
        super().__init__(resource, reactor=reactor, **kwargs)
        self.limits = limits or HTTPLimits()
        # Twisted's idle timeout would only come after ours.
        self.timeOut = None
        self.connections: dict[str, int] = {}
        self.total = 0
        self._budget = LogBudget(reactor)

    def buildProtocol(self, addr: Any) -> Any:
        host = getattr(addr, "host", "")
        limits = self.limits
        if self.total >= limits.max_connections:
            self._note("refused a connection from {peer}: {limit} connections open "
                       "(http.max_connections)", peer=host, limit=self.total)
            return None
        if self.connections.get(host, 0) >= limits.max_per_client:
            self._note("refused a connection from {peer}: {limit} of its connections open "
                       "(http.max_per_client)", peer=host, limit=limits.max_per_client)
            return None
        channel = super().buildProtocol(addr)
        if channel is not None:
            channel._pxed_peer = host
            self.total += 1
            self.connections[host] = self.connections.get(host, 0) + 1
        return channel

    def released(self, channel: Any) -> None:
        host = getattr(channel, "_pxed_peer", None)
        if host is None:
            return
        channel._pxed_peer = None
        self.total -= 1
        left = self.connections.get(host, 1) - 1
        if left > 0:
            self.connections[host] = left
        else:
            self.connections.pop(host, None)

    def dropped(self, channel: Any, which: str) -> None:
        host = getattr(channel, "_pxed_peer", None)
        if which == "request":
            self._note("dropped {peer}: no complete request within {seconds:g} s "
                       "(http.request_timeout)", peer=host,
                       seconds=self.limits.request_timeout)
        else:
            self._note("dropped {peer}: read nothing for {seconds:g} s (http.send_timeout)",
                       peer=host, seconds=self.limits.send_timeout)

    def _note(self, message: str, **fields: Any) -> None:
        self._budget.info(log, message, **fields)
