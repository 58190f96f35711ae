# -*- test-case-name: tests.test_http_sendfile -*-
"""
A file's body sent with C{sendfile(2)} while the socket takes it.

Kernels and initrds are most of what pxed's HTTP site sends, and
C{twisted.web.static.File} reads each 64 KiB piece into Python and writes
it through the transport's buffer, with a cooperator turning its pull
producer into a push one.  On a plain TCP connection the kernel can copy
the file to the socket itself: L{SendfileProducer} does that whenever
the transport has nothing of its own waiting (so bytes never overtake
the headers or each other), and when the socket is full it hands the
transport one piece larger than its buffer, the ordinary way.  The
transport then does what it does for every response: it pauses the
producer, waits for the client to read (the guard's send deadline,
L{pxed.http.guard}, runs meanwhile), and resumes it once it has sent
everything, which is when C{sendfile} can take over again.

Anything else (TLS, a transport that is not a socket, a chunked
response, a test's fake transport) gets the buffered writes alone: the
same bytes, as static.File sends them.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import tcp
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

__all__ = ["SendfileProducer"]

#: The most one C{sendfile} call is asked for: big enough that the calls'
#: cost vanishes, small enough that one connection does not hold the
#: reactor for long (the socket's buffer limits it anyway).
_MOST = 1 << 20


@implementer(IPushProducer)
class SendfileProducer:
    """
    Sends C{size} bytes of C{fileObject} from C{offset} as the body of
    C{request} (whose headers are set), then finishes it; a drop-in for
    static.File's producers (C{start}, and C{stopProducing} closes the
    file).
    """

    def __init__(self, request: Any, fileObject: Any, offset: int, size: int) -> None:
        self.request: Any = request
        self.fileObject = fileObject
        self.offset = offset
        self.left = size
        self._paused = False
        self._sending = False

    def start(self) -> None:
        self.request.registerProducer(self, True)
        self._produce()

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._produce()

    def stopProducing(self) -> None:
        self.fileObject.close()
        self.request = None

    def _transport(self) -> Any:
        """The connection's transport (none for a request without a channel)."""
        return getattr(getattr(self.request, "channel", None), "transport", None)

    def _socket(self) -> int | None:
        """
        The socket to C{sendfile} to, if this is the moment: a plain TCP
        transport with nothing of its own left to send, after the headers,
        in a response that is not chunked.
        """
        request = self.request
        transport = self._transport()
        if (not isinstance(transport, tcp.Connection) or not request.startedWriting
                or getattr(request, "chunked", False) or transport.disconnecting
                or not transport.connected):
            return None
        # What the transport still holds (Twisted's FileDescriptor keeps it
        # in these; a Twisted without them gets the buffered writes only).
        buffered = getattr(transport, "dataBuffer", None)
        sent = getattr(transport, "offset", None)
        queued = getattr(transport, "_tempDataLen", None)
        if buffered is None or sent is None or queued is None:
            return None
        if len(buffered) > sent or queued:
            return None
        return transport.socket.fileno()  # type: ignore[no-any-return]

    def _produce(self) -> None:
        if self._sending:
            return  # a write below paused and resumed us: the loop goes on
        self._sending = True
        try:
            self._loop()
        finally:
            self._sending = False

    def _loop(self) -> None:
        if self.request is None:
            return  # finished already (a consumer that resumes us as we register)
        source = self.fileObject.fileno()
        while self.request is not None and not self._paused and self.left > 0:
            sock = self._socket()
            if sock is not None:
                try:
                    sent = os.sendfile(sock, source, self.offset, min(self.left, _MOST))
                except BlockingIOError:
                    sent = 0
                except OSError:
                    sock, sent = None, 0  # the transport will find out itself
                if sent:
                    self.offset += sent
                    self.left -= sent
                    self.request.sentLength += sent
                    continue
            # The socket is full (or not ours to use): one piece through the
            # transport, more than its buffer holds, so that it pauses us
            # until the client has read it all.
            size = min(self.left, getattr(self._transport(), "bufferSize", 1 << 16) + 1)
            data = os.pread(source, size, self.offset)
            if not data:
                break  # the file shrank: end here, as static.File does
            self.offset += len(data)
            self.left -= len(data)
            self.request.write(data)
        request = self.request
        if request is not None and (self.left <= 0 or not self._paused):
            request.unregisterProducer()
            request.finish()
            self.stopProducing()
