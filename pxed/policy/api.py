# -*- test-case-name: tests.test_api -*-
"""
An HTTP API decides: pxed asks C{GET <url>/v1/boot/<mac>?arch=...} and
boots what the answer says.

The question's path carries the MAC with its colons as they are, as
Pixiecore sends it (C{/v1/boot/52:54:00:12:34:56}), so API servers that
match the raw path answer pxed too.  The answer is Pixiecore's JSON
(C{kernel}, C{initrd}, C{cmdline}, C{message}, C{ipxe-script}) or one of
pxed's own actions (C{{"action": "chain", "url": ...}}, C{"local"},
C{"ignore"}).  Relative URLs are resolved against the API's URL, as
Pixiecore does, and so are those its cmdline's Go-template calls
C{{{ URL "..." }}} and C{{{ ID "..." }}} name: they become pxed's
C{url()}.  A C{cmdline} object is written as Pixiecore writes it (keys
sorted, C{key="value"}, a boolean as the bare key, C{{"url": ...}} as a
URL).  C{file://} URLs name files on pxed's host, as in Pixiecore, but
only below the directories of C{policy.api.files}.  Anything
else (a timeout, a non-200 status, bad JSON, an answer that makes no
sense) means "ignore this machine for now", with the reason logged: a
broken API must never boot a machine into something half-specified.

Answers, good or bad, are cached per machine and boot stage, and
concurrent questions share one request, so the API is asked at most once
per stage and machine within the cache time, however hard a machine
retries.  Everything the API names is marked C{remote_only}: its URLs are
served only through pxed's signed IDs (or handed to iPXE), and its
templates can never name a file on pxed's disk.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import treq
from treq.client import HTTPClient
from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers
from zope.interface import implementer

from pxed.policy.actions import BootSpec, Chain, Ignore, IPXEScript, LocalBoot, is_url
from pxed.policy.interfaces import IBootAction, IRule
from pxed.policy.match import IMatcher, Match
from pxed.policy.request import BootRequest

__all__ = ["APIRule", "APIError", "parse_answer"]

log = Logger()

#: One word, printable ASCII: anything else in a URL could inject script lines.
_URL_SAFE = re.compile(r"^[\x21-\x7e]+$")
#: Pixiecore's cmdline functions, in Go template syntax: C{{{ URL "..." }}}
#: and C{{{ ID "..." }}}, with either kind of Go string and trim markers.
_GO_CALL = re.compile(r'\{\{(-?)\s*(URL|ID)\s+(?:"([^"\\]*)"|`([^`]*)`)\s*(-?)\}\}')
#: A call that is not one of those (another argument, an escape ...).
_GO_LEFTOVER = re.compile(r"\{\{-?\s*(URL|ID)\b")
#: An answer is a few hundred bytes; refuse to buffer a runaway one.
MAX_ANSWER = 1 << 20
#: Bound on remembered answers (expired ones are swept first).
MAX_CACHE = 10_000


class APIError(ValueError):
    """
    The API's answer cannot be used; the message says why.
    """


def _url(api_url: str, value: Any, what: str, files: Sequence[Path] = ()) -> str:
    """
    An absolute http(s) URL, or for a C{file://} URL below one of C{files}
    the local path (Pixiecore serves C{file://} URLs from its disk).
    """
    if not isinstance(value, str) or not value:
        raise APIError(f"{what} must be a non-empty string")
    if not _URL_SAFE.match(value):  # before urljoin, which drops tabs and newlines
        raise APIError(f"{what} {value!r} contains spaces or control characters")
    if value.lower().startswith("file:"):
        return _local_file(value, what, files)
    url = urljoin(api_url + "/", value)
    if not is_url(url) or not _URL_SAFE.match(url):
        raise APIError(f"{what} {value!r} is not an http(s) URL")
    return url


def _local_file(value: str, what: str, files: Sequence[Path]) -> str:
    parts = urlsplit(value)
    if parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
        raise APIError(f"{what} {value!r} is not a file:///PATH URL")
    path = unquote(parts.path)
    if not files:
        raise APIError(f"{what} {value!r}: file:// URLs need policy.api.files (the "
                       "directories the API may name files in)")
    if "\0" in path or not path.startswith("/"):
        raise APIError(f"{what} {value!r} is not a file:///PATH URL")
    real = Path(os.path.realpath(path))
    if not any(real.is_relative_to(root) for root in files):
        raise APIError(f"{what} {value!r} is outside policy.api.files")
    if not real.is_file():
        raise APIError(f"{what} {value!r}: no such file")
    return str(real)


def _go_quote(key: str, text: str) -> str:
    """
    Pixiecore writes a string value as Go's C{%q} does; the kernel reads
    C{key="value"}, but not Go's backslash escapes, so a value that would
    need one is refused.
    """
    if '"' in text or "\\" in text or any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise APIError(f"cmdline {key!r}: a value with quotes, backslashes or control "
                       "characters cannot be written on a kernel command line")
    return f'"{text}"'


def _cmdline(value: Any) -> str:
    """
    A string, or Pixiecore's object form, written as Pixiecore writes it:
    keys sorted, C{{"console": "ttyS0", "quiet": true, "ks": {"url":
    "/ks.cfg"}}} becomes C{console="ttyS0" ks={{ URL "/ks.cfg" }} quiet}
    (a boolean, true or false, is the bare key, as there); numbers, which
    Pixiecore refuses, are written as C{key=N}.
    """
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if not isinstance(value, dict):
        raise APIError("cmdline must be a string or an object")
    words = []
    for key in sorted(value):
        item = value[key]
        if not isinstance(key, str) or not _URL_SAFE.match(key) or any(c in key for c in "{}\"'"):
            raise APIError(f"cmdline key {key!r} is not one word")
        if isinstance(item, bool):
            words.append(key)
        elif isinstance(item, str):
            words.append(f"{key}={_go_quote(key, item)}")
        elif isinstance(item, int | float):
            words.append(f"{key}={item}")
        elif isinstance(item, dict):
            url = item.get("url")
            if not isinstance(url, str) or '"' in url:
                raise APIError(f"cmdline key {key!r} has an object value without a 'url'")
            words.append(f'{key}={{{{ URL "{url}" }}}}')
        else:
            raise APIError(f"cmdline key {key!r}: unsupported value {item!r}")
    return " ".join(words)


def _jinja_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _pixiecore_calls(cmdline: str, api_url: str, files: Sequence[Path] = (),
                     local: set[str] | None = None) -> str:
    """
    Pixiecore's cmdline functions in pxed's terms.  There, C{URL} and
    C{ID} both give the URL at which the booting OS fetches a file through
    Pixiecore; here that is C{url()}, which proxies or hands the URL on as
    C{policy.remote} says.  Relative URLs are the API's, like the kernel's.

    @raise APIError: for a call with anything but one quoted URL.
    """

    def translate(call: re.Match[str]) -> str:
        left, name, quoted, raw, right = call.groups()
        target = _url(api_url, quoted if quoted is not None else raw, f"cmdline {name}", files)
        if not is_url(target) and local is not None:
            local.add(target)
        return f"{{{{{left} url({_jinja_string(target)}) {right}}}}}"

    text = _GO_CALL.sub(translate, cmdline)
    leftover = _GO_LEFTOVER.search(text)
    if leftover is not None:
        raise APIError(f"cmdline: {leftover.group(1)} takes one quoted URL, as in "
                       f'{{{{ {leftover.group(1)} "/files/ks.cfg" }}}}')
    return text


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key, "")
    if not isinstance(value, str):
        raise APIError(f"{key} must be a string")
    return value


def parse_answer(data: Any, api_url: str, files: Sequence[Path] = ()) -> IBootAction:
    """
    Turn the API's decoded JSON into an action.

    @param files: the directories C{file://} URLs may name files in.
    @raise APIError: if it is not a usable answer.
    """
    if not isinstance(data, dict):
        raise APIError("the answer is not a JSON object")
    kind = data.get("action")
    if kind is None:
        if "ipxe-script" in data:
            kind = "ipxe"
        elif "kernel" in data:
            kind = "linux"
        else:
            raise APIError("the answer has neither 'kernel', 'ipxe-script' nor 'action'")
    if kind == "linux":
        initrds = data.get("initrd", [])
        if isinstance(initrds, str):
            initrds = [initrds]
        if not isinstance(initrds, list):
            raise APIError("initrd must be a list of URLs")
        local: set[str] = set()
        kernel = _url(api_url, data.get("kernel"), "kernel", files)
        initrd = tuple(_url(api_url, item, "initrd", files) for item in initrds)
        cmdline = _pixiecore_calls(_cmdline(data.get("cmdline")), api_url, files, local)
        local.update(item for item in (kernel, *initrd) if not is_url(item))
        return BootSpec(kernel, initrd, cmdline, message=_text(data, "message"),
                        remote_only=True, local_files=frozenset(local))
    if kind == "ipxe":
        script = data.get("ipxe-script", data.get("script"))
        if not isinstance(script, str) or not script.strip():
            raise APIError("ipxe-script must be a non-empty string")
        return IPXEScript(script.lstrip(), remote_only=True)
    if kind == "chain":
        return Chain(_url(api_url, data.get("url"), "url"), _text(data, "args"),
                     remote_only=True)
    if kind == "local":
        return LocalBoot(remote_only=True)
    if kind == "ignore":
        return Ignore(remote_only=True)
    raise APIError(f"unknown action {kind!r}")


@dataclass
class _Entry:
    expires: float = 0.0
    result: IBootAction | None = None
    waiting: list[Deferred[IBootAction | None]] | None = field(default_factory=list)


@implementer(IRule)
class APIRule:
    """
    A rule whose action comes from the API.

    @param clock: for the cache and the timeout (tests pass a C{Clock}).
    """

    once = False

    def __init__(
        self,
        client: HTTPClient,
        url: str,
        clock: IReactorTime,
        timeout: float = 5.0,
        cache: float = 30.0,
        name: str = "policy.api",
        match: IMatcher | None = None,
        files: Sequence[Path] = (),
    ) -> None:
        self.client = client
        self.url = url.rstrip("/")
        self.clock = clock
        self.timeout = timeout
        self.cache = cache
        self.name = name
        self.match = match if match is not None else Match()
        self.files = tuple(files)
        self._entries: dict[tuple[str, str, bool], _Entry] = {}

    def decide(self, request: BootRequest) -> Deferred[IBootAction | None]:
        if not self.match.matches(request):
            return succeed(None)
        key = (request.mac, request.stage, request.ipxe)
        now = self.clock.seconds()
        entry = self._entries.get(key)
        if entry is not None and entry.waiting is None and entry.expires > now:
            return succeed(entry.result)
        d: Deferred[IBootAction | None] = Deferred()
        if entry is not None and entry.waiting is not None:
            entry.waiting.append(d)  # a question for this machine is on its way
            return d
        self._sweep(now)
        entry = self._entries[key] = _Entry()
        assert entry.waiting is not None
        entry.waiting.append(d)
        asking = ensureDeferred(self._ask(request))
        asking.addTimeout(self.timeout, self.clock)
        asking.addErrback(self._failed, request)
        asking.addCallback(self._answered, key, entry)
        return d

    def _sweep(self, now: float) -> None:
        if len(self._entries) < MAX_CACHE:
            return
        for key in [k for k, e in self._entries.items() if e.waiting is None and e.expires <= now]:
            del self._entries[key]
        while len(self._entries) >= MAX_CACHE:
            oldest = next(iter(self._entries))
            if self._entries[oldest].waiting is not None:
                break
            del self._entries[oldest]

    def _answered(self, result: IBootAction, key: tuple[str, str, bool], entry: _Entry) -> None:
        waiting, entry.waiting = entry.waiting or [], None
        entry.result = result
        entry.expires = self.clock.seconds() + self.cache
        if self.cache <= 0 and self._entries.get(key) is entry:
            del self._entries[key]
        for d in waiting:
            d.callback(result)

    def _failed(self, failure: Failure, request: BootRequest) -> IBootAction:
        why = failure.getErrorMessage()
        if failure.check(APIError) is None:
            why = f"{type(failure.value).__name__}: {why}"
        if failure.check(DeferredTimeout):
            why = f"no answer within {self.timeout:g} s"
        log.warn("{mac}: the policy API gave no usable answer ({why}); ignoring the machine "
                 "for now", mac=request.mac, why=why, stage=request.stage)
        return Ignore(remote_only=True)

    async def _ask(self, request: BootRequest) -> IBootAction:
        params = {
            "arch": request.arch.slug,
            "arch_code": str(request.arch.code),
            "firmware": request.firmware.value,
            "uuid": request.uuid,
            "user_class": request.user_class,
            "interface": request.interface,
            "relay": request.relay,
            "stage": request.stage,
            "ipxe": "1" if request.ipxe else "0",
        }
        # The MAC's colons as they are, as Pixiecore sends them: an API
        # that matches the raw path would not know %3A.
        url = f"{self.url}/v1/boot/{request.mac}"
        response = await self.client.get(
            url, params={k: v for k, v in params.items() if v},
            headers=Headers({b"Accept": [b"application/json"]}), unbuffered=True,
        )
        if response.code != 200:
            response.deliverBody(_Drop())
            raise APIError(f"HTTP {response.code}")
        if isinstance(response.length, int) and response.length > MAX_ANSWER:
            response.deliverBody(_Drop())
            raise APIError(f"answer of {response.length} bytes is too large")
        # Read with a bound: an answer without a length (chunked) would
        # otherwise be buffered whole before its size could be checked.
        chunks: list[bytes] = []
        size = 0

        def collect(data: bytes) -> None:
            nonlocal size
            size += len(data)
            if size > MAX_ANSWER:
                raise APIError(f"answer of more than {MAX_ANSWER} bytes is too large")
            chunks.append(data)

        await treq.collect(response, collect)
        body = b"".join(chunks)
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as e:
            raise APIError(f"bad JSON: {e}") from None
        action = parse_answer(data, self.url, self.files)
        log.info("{mac}: the policy API says {action}", mac=request.mac,
                 action=type(action).__name__, stage=request.stage)
        return action


class _Drop(Protocol):
    """
    Drops a body we do not want (closing that connection).
    """

    def connectionMade(self) -> None:
        transport: Any = self.transport
        if transport is not None:
            transport.stopProducing()

    def connectionLost(self, reason: Failure | None = None) -> None:
        pass
