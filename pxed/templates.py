# -*- test-case-name: tests.test_templates -*-
"""
Templates for kernel command lines and iPXE scripts (Jinja2, sandboxed).

A template sees the machine (C{mac}, C{arch}, C{arch_code}, C{firmware},
C{uuid}, C{hostname}, C{user_class}), the server (C{server}, also named
C{ServerHost} as in Pixiecore, and C{base_url}) and three functions:
C{url(location)} turns a local path or a remote URL into one the client
can fetch from pxed, C{export(name, path="")} gives the URL of an
exported directory or a file in it, and C{beacon} is the iPXE line that
reports "booting" (needed for 'once' rules in scripts).

The sandbox matters because a template may come from an HTTP API rather
than from the administrator: it can only format text and call the
functions above.  Undefined names are errors rather than empty strings,
so a typo fails loudly instead of booting a machine with half a command
line.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError

from pxed.clienttext import client_uuid, client_word, is_hostname
from pxed.ipxe import beacon_line
from pxed.machine import Machine, architecture
from pxed.policy.actions import is_url
from pxed.policy.request import BootRequest
from pxed.sandbox import MAX_OUTPUT, MAX_SECONDS, BoundedEnvironment, Overtime, time_limit

__all__ = ["ScriptEnv", "RenderError", "check_template", "render", "trial_render"]

_ENV = BoundedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
#: A URL put into a script must stay one word on one line.
_URL_SAFE = re.compile(r"^[\x21-\x7e]+$")


class RenderError(Exception):
    """
    A template could not be rendered, or named something it may not.
    """


def check_template(text: str) -> str | None:
    """
    The syntax error in C{text}, or C{None}; the configuration reports it
    at load time.
    """
    try:
        _ENV.parse(text)
    except TemplateSyntaxError as e:
        return f"template error on line {e.lineno}: {e.message}"
    return None


@functools.lru_cache(maxsize=512)
def _compile(text: str) -> Any:
    return _ENV.from_string(text)


def render(text: str, context: dict[str, Any]) -> str:
    """
    Render C{text}; text without template syntax is returned as it is.

    @raise RenderError: on any template error.
    """
    if "{" not in text:
        return text
    try:
        template = _compile(text)
        with time_limit():
            chunks, size = [], 0
            for chunk in template.generate(context):
                size += len(chunk)
                if size > MAX_OUTPUT:
                    raise RenderError(f"template output over {MAX_OUTPUT} characters")
                chunks.append(chunk)
        return "".join(chunks)
    except Overtime:
        raise RenderError(f"template took more than {MAX_SECONDS:g} s") from None
    except TemplateError as e:
        raise RenderError(f"template error: {e}") from None
    except RenderError:
        raise
    except Exception as e:  # a function called by the template failed
        raise RenderError(f"template error: {e}") from None


@dataclass
class ScriptEnv:
    """
    Everything a script or command line for one machine may refer to.

    @ivar file_url: maps an allowed location to the URL the client uses.
    @ivar export_url: maps an export's name and a path inside it to a URL.
    @ivar allow_local: C{False} for actions that came from the HTTP API:
        they may name remote URLs only, never files on pxed's disk ...
    @ivar local_files: ... except these (the API's C{file://} URLs that
        were below C{policy.api.files}).
    """

    request: BootRequest
    server: str
    base_url: str
    beacon_url: str
    file_url: Callable[[str], str]
    export_url: Callable[[str, str], str]
    hostname: str = ""
    allow_local: bool = True
    local_files: frozenset[str] = frozenset()
    extra: dict[str, Any] = field(default_factory=dict)

    def url(self, location: str) -> str:
        """
        The URL the client fetches C{location} from.

        @raise RenderError: for a relative path, a local path when local
            paths are not allowed, or a URL that is not one safe word.
        """
        if not isinstance(location, str) or not location:
            raise RenderError(f"url(): {location!r} is not a path or URL")
        if is_url(location):
            if not _URL_SAFE.match(location):
                raise RenderError(f"url(): {location!r} contains spaces or control characters")
        elif not self.allow_local and location not in self.local_files:
            raise RenderError(f"url(): {location!r}: only http(s) URLs are allowed here")
        elif not location.startswith("/"):
            raise RenderError(f"url(): {location!r} must be an absolute path or an http(s) URL")
        return self.file_url(location)

    def export(self, name: str, path: str = "") -> str:
        return self.export_url(name, path)

    def context(self) -> dict[str, Any]:
        request = self.request
        return {
            "mac": request.mac,
            "arch": request.arch.slug,
            "arch_code": request.arch.code,
            "firmware": request.firmware.value,
            # What the client said, only in its safe form (pxed.clienttext),
            # however the request was made.
            "uuid": client_uuid(request.uuid) or "",
            "user_class": client_word(request.user_class) or "",
            "hostname": self.hostname if is_hostname(self.hostname) else "",
            "server": self.server,
            # Pixiecore's name for it, so its API answers render unchanged.
            "ServerHost": self.server,
            "base_url": self.base_url,
            "beacon": beacon_line(self.beacon_url),
            "url": self.url,
            "export": self.export,
            **self.extra,
        }

    def render(self, text: str) -> str:
        return render(text, self.context())


#: The machines a template is tried on at load time: a BIOS and a UEFI
#: client, so both branches of the usual C{{% if firmware == ... %}} run.
_SAMPLES = (
    Machine(mac="52:54:00:12:34:56", arch=architecture(0),
            uuid="12345678-9abc-def0-1122-334455667788", user_class="iPXE"),
    Machine(mac="52:54:00:65:43:21", arch=architecture(7), ipxe=True, user_class="iPXE"),
)
_SAMPLE_SERVER = "192.0.2.1"


def _sample_file_url(location: str) -> str:
    if not is_url(location):
        from pathlib import Path

        path = Path(location)
        if not path.is_file():
            raise RenderError(f"url(): file {location} does not exist")
    return f"http://{_SAMPLE_SERVER}/_/file/sample/{location.rsplit('/', 1)[-1]}"


def trial_render(text: str, exports: Collection[str] = ()) -> str | None:
    """
    Render C{text} for sample machines, as a boot would, and return the
    first problem (or C{None}): an undefined name, a C{url()} of a file
    that does not exist, an C{export()} that is not configured.  The
    configuration does this at load time, so such a template fails
    C{pxed check} and startup rather than a machine's boot.
    """
    if "{" not in text:
        return None
    base = f"http://{_SAMPLE_SERVER}"

    def export_url(name: str, path: str) -> str:
        if name not in exports:
            raise RenderError(f"export(): no export named {name!r}")
        return f"{base}/_/export/{name}/{path}"

    for machine in _SAMPLES:
        env = ScriptEnv(
            request=BootRequest(machine, "script", client_address="192.0.2.100"),
            server=_SAMPLE_SERVER, base_url=base, beacon_url=f"{base}/_/booting",
            file_url=_sample_file_url, export_url=export_url, hostname="sample-host",
        )
        try:
            env.render(text)
        except RenderError as e:
            return f"{e} (tried with sample values for {machine.arch.slug})"
    return None
