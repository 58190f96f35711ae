# -*- test-case-name: tests.test_http_proxy -*-
"""
Remote files proxied through pxed, streamed.

When the configuration says C{remote: {mode: proxy}}, a signed file ID
may name an http(s) URL: pxed fetches it with treq and relays the body as
it arrives, with the upstream's Content-Length (iPXE is very slow without
one), never holding more than a few chunks: when the client reads slowly,
the upstream connection is paused.

Two timeouts bound every fetch: one on connecting, one on silence (no
response headers, or no body bytes, for that long).  Silence counts only
while the upstream may send: a client that stops reading pauses the
upstream, which is then quiet because pxed asked it to be; such a client
gets L{CLIENT_STALL} idle timeouts to read again.  A failure
before the headers is a 502 or 504; one after them aborts the client's
connection, so a truncated file can never pass for a complete one.
"""

from __future__ import annotations

from typing import Any

from treq.client import HTTPClient
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectError, ConnectingCancelledError, DNSLookupError
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

__all__ = ["RemoteFetcher", "ProxyResource"]

log = Logger()

#: Request headers passed upstream, and response headers passed back.
FORWARD = (b"range", b"if-none-match", b"if-modified-since", b"user-agent")
RETURN = (b"content-type", b"content-range", b"etag", b"last-modified", b"accept-ranges")


class RemoteFetcher:
    """
    What a L{ProxyResource} needs: a treq client with a connect timeout, the
    idle timeout, and a clock (injected, so tests drive it).
    """

    def __init__(
        self,
        reactor: Any,
        connect_timeout: float = 10.0,
        idle_timeout: float = 30.0,
        clock: IReactorTime | None = None,
    ) -> None:
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.client = HTTPClient(Agent(reactor, connectTimeout=connect_timeout, pool=self.pool))
        self.idle_timeout = idle_timeout
        self.clock: IReactorTime = clock if clock is not None else reactor

    def resource(self, url: str) -> Resource:
        return ProxyResource(self, url)

    def close(self) -> Deferred[None]:
        return self.pool.closeCachedConnections()


#: How many idle timeouts a client that stopped reading (a paused
#: upstream) has before the fetch is given up.
CLIENT_STALL = 4


@implementer(IPushProducer)
class _Relay(Protocol):
    """
    Receives the upstream body and writes it to the client's request,
    pausing upstream while the client's connection is backed up.
    """

    def __init__(self, request: Request, fetcher: RemoteFetcher, url: str) -> None:
        self.request = request
        self.fetcher = fetcher
        self.url = url
        self.finished = False
        #: We paused the upstream for a slow client: its silence is ours.
        self.paused = False
        self.timer: IDelayedCall | None = None

    def connectionMade(self) -> None:
        self.request.registerProducer(self, True)
        self._arm()

    def _arm(self) -> None:
        if self.finished:
            return
        delay = self.fetcher.idle_timeout * (CLIENT_STALL if self.paused else 1)
        if self.timer is not None and self.timer.active():
            self.timer.reset(delay)
        else:
            self.timer = self.fetcher.clock.callLater(delay, self._idle)

    def _disarm(self) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None

    def _idle(self) -> None:
        self.timer = None
        if self.paused:
            log.warn("proxy: the client of {url} read nothing for {seconds} s; aborting",
                     url=self.url, seconds=self.fetcher.idle_timeout * CLIENT_STALL)
        else:
            log.warn("proxy: {url} sent nothing for {seconds} s; aborting", url=self.url,
                     seconds=self.fetcher.idle_timeout)
        self._abort_upstream()
        self._abort_client()

    @property
    def _upstream(self) -> Any:
        """
        The body's transport: a producer we pause, resume and stop.
        """
        return self.transport

    def _abort_upstream(self) -> None:
        if self._upstream is not None:
            self._upstream.stopProducing()

    def _abort_client(self) -> None:
        if self.finished:
            return
        self.finished = True
        self.request.unregisterProducer()
        transport = getattr(self.request.channel, "transport", None)
        if transport is not None:
            transport.abortConnection()

    def dataReceived(self, data: bytes) -> None:
        if self.finished:
            return
        self._arm()
        self.request.write(data)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self._disarm()
        if self.finished:
            return
        if reason is None or reason.check(ResponseDone):
            self.finished = True
            self.request.unregisterProducer()
            self.request.finish()
            return
        log.warn("proxy: {url} broke off: {why}", url=self.url, why=reason.getErrorMessage())
        self._abort_client()

    # IPushProducer, for the client's side
    def pauseProducing(self) -> None:
        # The client stopped reading: that is not the upstream's silence
        # (bytes already on their way still come), but a client that never
        # reads again must not hold the upstream connection for ever.
        self.paused = True
        self._arm()
        if self._upstream is not None:
            self._upstream.pauseProducing()

    def resumeProducing(self) -> None:
        self.paused = False
        self._arm()  # a full idle_timeout from now for the upstream to go on
        if self._upstream is not None:
            self._upstream.resumeProducing()

    def stopProducing(self) -> None:
        """
        The client went away: stop fetching.
        """
        self._disarm()
        self.finished = True
        self._abort_upstream()


class ProxyResource(Resource):
    """
    Serves one remote URL (already verified as signed by pxed).
    """

    isLeaf = True

    def __init__(self, fetcher: RemoteFetcher, url: str) -> None:
        super().__init__()
        self.fetcher = fetcher
        self.url = url

    def render_GET(self, request: Request) -> Any:
        headers = Headers()
        for name in FORWARD:
            value = request.getHeader(name)
            if value is not None:
                headers.setRawHeaders(name, [value])
        if b"," in (request.getHeader(b"range") or b""):
            # One range at most, as for local files (pxed.http.ranges): the
            # whole file rather than a multipart answer passed on.
            headers.removeHeader(b"range")
        method = "HEAD" if request.method == b"HEAD" else "GET"
        # unbuffered: treq would otherwise keep every byte for a second read.
        # No redirects: the URL pxed signed is the only origin it serves
        # from (a redirect answer is a 502, like any status but 200/206/304).
        d: Deferred[Any] = self.fetcher.client.request(
            method, self.url, headers=headers, unbuffered=True, allow_redirects=False
        )
        expired: list[bool] = []

        def expire() -> None:
            expired.append(True)
            d.cancel()

        timer = self.fetcher.clock.callLater(self.fetcher.idle_timeout, expire)

        def stop_timer(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            return result

        d.addBoth(stop_timer)
        gone = request.notifyFinish()
        gone.addErrback(lambda _: d.cancel())
        d.addCallbacks(self._respond, self._failed, callbackArgs=(request,),
                       errbackArgs=(request, expired))
        d.addErrback(lambda f: log.failure("proxy: {url}", f, url=self.url))
        return NOT_DONE_YET

    render_HEAD = render_GET

    def _respond(self, response: IResponse, request: Request) -> None:
        if response.code not in (http.OK, http.PARTIAL_CONTENT, http.NOT_MODIFIED):
            log.warn("proxy: {url} answered {code}", url=self.url, code=response.code)
            response.deliverBody(_Discard())
            self._error(request, http.BAD_GATEWAY, f"upstream answered {response.code}")
            return
        request.setResponseCode(response.code)
        for name in RETURN:
            values = response.headers.getRawHeaders(name)
            if values:
                request.setHeader(name, values[0])
        if request.method == b"HEAD":
            # A HEAD response's length is its header: the client parser
            # leaves it there, and reports a body length of 0.
            length = response.headers.getRawHeaders(b"content-length")
            if length:
                request.setHeader(b"content-length", length[0])
        elif isinstance(response.length, int):
            request.setHeader(b"content-length", b"%d" % response.length)
        if request.method == b"HEAD" or response.code == http.NOT_MODIFIED:
            response.deliverBody(_Discard())
            request.finish()
            return
        response.deliverBody(_Relay(request, self.fetcher, self.url))

    def _failed(self, failure: Failure, request: Request, expired: list[bool]) -> None:
        if expired:
            code, why = http.GATEWAY_TIMEOUT, "upstream timed out"
        elif failure.check(CancelledError) and getattr(request, "_disconnected", False):
            return  # the client left before the upstream answered
        elif failure.check(ConnectError, ConnectingCancelledError, DNSLookupError,
                           CancelledError):
            code, why = http.BAD_GATEWAY, f"cannot reach upstream: {failure.getErrorMessage()}"
        else:
            code, why = http.BAD_GATEWAY, f"upstream failed: {failure.getErrorMessage()}"
        log.warn("proxy: {url}: {why}", url=self.url, why=why)
        self._error(request, code, why)

    @staticmethod
    def _error(request: Request, code: int, why: str) -> None:
        if getattr(request, "_disconnected", False) or request.finished:
            return
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"text/plain")
        body = f"{why}\n".encode()
        request.setHeader(b"content-length", b"%d" % len(body))
        request.write(body)
        request.finish()


class _Discard(Protocol):
    def connectionLost(self, reason: Failure | None = None) -> None:
        pass
