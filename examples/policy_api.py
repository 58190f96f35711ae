#!/usr/bin/env python3
"""
A tiny policy API for pxed, to copy and grow.

pxed (with C{policy: {api: {url: http://127.0.0.1:8000}}}) asks
C{GET /v1/boot/<mac>?arch=...&firmware=...&uuid=...&stage=...}; this
server answers from a JSON file that maps MAC addresses to answers, with
an optional C{"default"} entry, and answers 404 (pxed then ignores the
machine) for anything else.  An answer is Pixiecore's JSON::

    {"kernel": "/files/vmlinuz", "initrd": ["/files/initrd.gz"],
     "cmdline": "console=ttyS0", "message": "installing"}

A cmdline may name more files with Pixiecore's C{{{ URL "/files/ks.cfg" }}}
(or C{{{ ID "..." }}}), which pxed serves to the booting machine, and
C{{{ ServerHost }}} is pxed's address.  Or the answer is an iPXE script
(C{{"ipxe-script": "#!ipxe\\n..."}}) or one of pxed's actions
(C{{"action": "chain", "url": "..."}}, C{{"action": "local"}},
C{{"action": "ignore"}}).  Relative URLs are relative to this server;
C{--files DIR} serves a directory under C{/files/} for them.

Run::

    python examples/policy_api.py --answers answers.json --files /srv/pxe --port 8000
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from klein import Klein
from twisted.web.iweb import IRequest
from twisted.web.static import File

__all__ = ["PolicyAPI", "main"]


class Files(File):
    """
    Files as they are on disk: an C{initrd.gz} is a file to boot, not a
    gzip-encoded response (served as one from this Klein app, it arrived
    empty).
    """

    contentEncodings: dict[str, str] = {}


class PolicyAPI:
    """
    The application; C{asked} records every question (for tests and for
    watching what pxed sends).
    """

    app = Klein()

    def __init__(self, answers: dict[str, Any], files: Path | None = None) -> None:
        self.answers = {key.lower(): value for key, value in answers.items()}
        self.files = files
        self.asked: list[tuple[str, dict[str, str]]] = []

    @app.route("/v1/boot/<string:mac>", methods=["GET"])
    def boot(self, request: IRequest, mac: str) -> bytes:
        args = {k.decode(): v[0].decode() for k, v in (request.args or {}).items()}
        self.asked.append((mac, args))
        answer = self.answers.get(mac.lower(), self.answers.get("default"))
        if answer is None:
            request.setResponseCode(404)
            return b"unknown machine\n"
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps(answer).encode()

    @app.route("/files/", branch=True)
    def serve(self, request: IRequest) -> Any:
        if self.files is None:
            request.setResponseCode(404)
            return b"no files\n"
        return Files(str(self.files))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A tiny policy API for pxed.")
    parser.add_argument("--answers", required=True, help="JSON file: MAC -> answer")
    parser.add_argument("--files", help="a directory to serve under /files/")
    parser.add_argument("--listen", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    options = parser.parse_args(argv)
    answers = json.loads(Path(options.answers).read_text())
    api = PolicyAPI(answers, Path(options.files) if options.files else None)

    from twisted.internet import reactor
    from twisted.web.server import Site

    port = reactor.listenTCP(options.port, Site(api.app.resource()),  # type: ignore[attr-defined]
                             interface=options.listen)
    print(f"policy API listening on http://{options.listen}:{port.getHost().port}", flush=True)
    reactor.run()  # type: ignore[attr-defined]
    return 0


if __name__ == "__main__":
    sys.exit(main())
