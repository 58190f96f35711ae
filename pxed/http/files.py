# -*- test-case-name: tests.test_http_files -*-
"""
Which files pxed's HTTP server will serve, and serving them.

Two ways in, and no other:

  - C{/_/file/<id>/<name>}: a file the policy named.  The ID is the
    file's location (a local path or a remote URL) signed by
    L{pxed.signing.Signer}, so only what pxed itself put in a script is
    reachable; nothing maps a client-chosen path onto the disk.
  - C{/_/export/<export>/<path>}: a file below a directory the
    configuration exports read-only (cloud-init, kickstart, preseed).
    The path is decoded segment by segment and resolved with the same
    rules as TFTP (L{pxed.tftp.source.FilesystemSource}): no C{..}, no
    NUL, no encoded separators, no symlink leading out of the export.

Local files are served by C{twisted.web.static.File} (Content-Length,
Range, HEAD), with an ETag and If-None-Match on top, one range at most
(L{pxed.http.ranges}), their bodies sent by C{sendfile(2)} where the
connection allows (L{pxed.http.sendfile}), and opened so that a FIFO or
device swapped in can neither block the reactor nor be served.
"""

from __future__ import annotations

import os
import posixpath
import stat
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote_to_bytes, urlsplit

from twisted.web import http
from twisted.web.iweb import IRequest
from twisted.web.static import File, NoRangeStaticProducer, SingleRangeStaticProducer

from pxed.http.ranges import single_range
from pxed.http.sendfile import SendfileProducer
from pxed.policy import is_url
from pxed.signing import Signer
from pxed.tftp.source import AccessViolation, FileNotFound, FilesystemSource

__all__ = ["FileCatalog", "LocalFile", "export_path", "export_url", "ExportRefused"]

#: The purpose signed into file IDs.
FILE_PURPOSE = "file"
#: The purpose of file IDs that carry their issue time (C{max_age}).
TIMED_FILE_PURPOSE = "file-t"
#: How far in the future an issue time may be (clocks of pxed sharing a key).
_CLOCK_SKEW = 60.0


def _name(location: str) -> str:
    path = urlsplit(location).path if is_url(location) else location
    return posixpath.basename(path) or "file"


class FileCatalog:
    """
    Turns a file's location into the URL a client fetches it from, and a
    file ID back into the location.

    @ivar proxy_remote: C{True} to serve remote URLs through pxed (signed
        IDs too), C{False} to hand them to the client as they are.
    @ivar max_age: seconds a file ID stays valid after it was issued, or
        C{None} for ever (IDs then carry no time, and URLs survive
        restarts and reloads as long as the key does).
    """

    def __init__(self, signer: Signer, proxy_remote: bool = False,
                 max_age: float | None = None, clock: Callable[[], float] = time.time) -> None:
        self.signer = signer
        self.proxy_remote = proxy_remote
        self.max_age = max_age
        self.clock = clock

    def token(self, location: str) -> str:
        """
        The signed ID of C{location} (with its issue time under C{max_age}).
        """
        if self.max_age is None:
            return self.signer.sign(FILE_PURPOSE, location)
        return self.signer.sign(TIMED_FILE_PURPOSE, f"{int(self.clock())}:{location}")

    def url(self, base: str, location: str) -> str:
        if is_url(location) and not self.proxy_remote:
            return location
        return f"{base}/_/file/{self.token(location)}/{quote(_name(location))}"

    def resolve(self, token: str, name: str) -> str | None:
        """
        The location signed into C{token}, if the token is genuine, not
        older than C{max_age}, and C{name} is the one its URL was made with.
        """
        if self.max_age is None:
            location = self.signer.verify(FILE_PURPOSE, token)
        else:
            location = self._timed(token, self.max_age)
        if location is None or _name(location) != name:
            return None
        return location

    def _timed(self, token: str, max_age: float) -> str | None:
        value = self.signer.verify(TIMED_FILE_PURPOSE, token)
        issued, colon, location = (value or "").partition(":")
        if not colon or not issued.isdigit():
            return None
        age = self.clock() - int(issued)
        return location if -_CLOCK_SKEW <= age <= max_age else None


def _etag(info: os.stat_result) -> bytes:
    return f'"{info.st_size:x}-{info.st_mtime_ns:x}-{info.st_ino:x}"'.encode("ascii")


def _matches(header: bytes | None, etag: bytes) -> bool:
    if header is None:
        return False
    candidates = [c.strip().removeprefix(b"W/") for c in header.split(b",")]
    return b"*" in candidates or etag in candidates


class LocalFile(File):
    """
    One regular file, streamed, with an ETag.

    @param kind: its Content-Type, whatever its name says (else guessed
        from the name, C{application/octet-stream} when unknown).
    """

    isLeaf = True

    def __init__(self, path: str | Path, kind: str | None = None) -> None:
        super().__init__(str(path), defaultType=kind or "application/octet-stream")
        if kind is not None:
            self.type, self.encoding = kind, None

    def makeProducer(self, request: IRequest, fileForReading: Any) -> Any:
        """
        Twisted's producer for the one range L{single_range} leaves, or
        for the whole file: never its multi-range one.
        """
        header = request.getHeader(b"range")
        if header is not None:
            plan = single_range(header, self.getFileSize())
            if plan is None:
                request.requestHeaders.removeHeader(b"range")
            else:
                request.requestHeaders.setRawHeaders(b"range", [plan])
        producer = super().makeProducer(request, fileForReading)
        # The same body, by sendfile(2) where the connection allows it.
        if isinstance(producer, NoRangeStaticProducer):
            return SendfileProducer(request, fileForReading, 0, self.getFileSize())
        if isinstance(producer, SingleRangeStaticProducer):
            return SendfileProducer(request, fileForReading, producer.offset, producer.size)
        return producer

    def openForReading(self) -> Any:
        flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0)
        fd = os.open(self.path, flags)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise PermissionError(13, "not a regular file")
            return os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise

    def render_GET(self, request: IRequest) -> Any:
        self.restat(False)
        if not self.isfile():
            request.setResponseCode(http.NOT_FOUND)
            request.setHeader(b"content-type", b"text/plain")
            return b"not found\n"
        etag = _etag(os.stat(self.path))
        request.setHeader(b"etag", etag)
        if _matches(request.getHeader(b"if-none-match"), etag):
            request.setResponseCode(http.NOT_MODIFIED)
            return b""
        return super().render_GET(request)

    render_HEAD = render_GET


class ExportRefused(Exception):
    """
    The path must not be served from the export (or does not exist).
    """


def export_path(exports: Mapping[str, Path], raw: bytes) -> Path:
    """
    Map the raw (still percent-encoded) request path below C{/_/export/}
    to a file inside an export.

    Each segment is decoded on its own, so an encoded C{/} or C{\\}
    (C{%2F}, C{%5C}) cannot build a path the router never saw; a decoded
    segment holding a separator, a NUL, C{.} or C{..} is refused outright.

    @raise ExportRefused: for anything that is not a file inside the export.
    """
    segments = raw.split(b"/")
    if len(segments) < 2:
        raise ExportRefused("no export named")
    try:
        name = unquote_to_bytes(segments[0]).decode("utf-8")
        parts = [unquote_to_bytes(s).decode("utf-8") for s in segments[1:]]
    except UnicodeDecodeError:
        raise ExportRefused("path is not UTF-8") from None
    root = exports.get(name)
    if root is None:
        raise ExportRefused(f"no export {name!r}")
    for part in parts:
        if part in ("", ".", "..") or any(c in part for c in "/\\\0"):
            raise ExportRefused(f"refused path segment {part!r}")
    try:
        path = FilesystemSource(root).resolve("/".join(parts))
    except (AccessViolation, FileNotFound) as e:
        raise ExportRefused(str(e)) from None
    if not path.is_file():
        raise ExportRefused("not a regular file")
    return path


def export_url(base: str, name: str, path: str = "") -> str:
    """
    The URL of C{path} inside export C{name} (a directory URL, ending in
    C{/}, when C{path} is empty or ends in C{/}).
    """
    parts = [quote(p) for p in path.split("/") if p]
    tail = "/".join(parts)
    if not tail or path.endswith("/"):
        tail = tail + "/" if tail else ""
    return f"{base}/_/export/{quote(name)}/{tail}"
