"""
Tests for L{pxed.policy.api}: the HTTP API backend, against the example
server in C{examples/} (and a few misbehaving servers) for real over
127.0.0.1; timeouts and the cache run on an injected clock.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import treq
from treq.client import HTTPClient
from twisted.internet import defer, reactor, task
from twisted.trial import unittest
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from zope.interface.verify import verifyObject

from pxed.http.app import BootHTTP
from pxed.http.files import FileCatalog
from pxed.http.proxy import RemoteFetcher
from pxed.machine import Machine, architecture
from pxed.policy import (
    BootRequest,
    BootSpec,
    Chain,
    Ignore,
    IPXEScript,
    IRule,
    LocalBoot,
    RulePolicy,
)
from pxed.policy.api import APIError, APIRule, parse_answer
from pxed.signing import Signer
from pxed.state import MemoryBootLog
from pxed.templates import ScriptEnv

REPO = Path(__file__).resolve().parents[1]
MAC = "52:54:00:aa:00:01"
#: Answered with Pixiecore's cmdline template calls.
PIXIECORE_MAC = "52:54:00:aa:00:08"
GUID = "12345678-9abc-def0-1122-334455667788"


def load_example() -> Any:
    spec = importlib.util.spec_from_file_location("policy_api", REPO / "examples/policy_api.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ask(mac: str = MAC, stage: str = "proxydhcp", ipxe: bool = False) -> BootRequest:
    return BootRequest(Machine(mac, architecture(7), uuid=GUID, ipxe=ipxe), stage,
                       interface="eth1")


class Misbehaving(Resource):
    """
    /status/N answers N, /badjson answers garbage, /stall never answers.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.stalled: list[Request] = []
        self.count = 0

    def render_GET(self, request: Request) -> Any:
        self.count += 1
        path = request.path.decode()
        if path.startswith("/status/"):
            request.setResponseCode(int(path.split("/")[2]))
            return b'{"kernel": "http://h/k"}'
        if path.startswith("/badjson/"):
            return b'{"kernel": '
        if path.startswith("/notobject/"):
            return b'["kernel"]'
        if path.startswith("/huge/"):
            # No length (chunked), more than an answer may be: refused as
            # it arrives, not buffered whole.
            for _ in range(40):
                request.write(b" " * 65536)
            request.write(b'{"kernel": "http://h/k"}')
            request.finish()
            return NOT_DONE_YET
        self.stalled.append(request)
        return NOT_DONE_YET


class APITestCase(unittest.TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.files = Path(self.mktemp()).absolute()
        self.files.mkdir()
        self.kernel = os.urandom(200_000)
        (self.files / "vmlinuz").write_bytes(self.kernel)
        (self.files / "initrd.gz").write_bytes(b"initrd")
        example = load_example()
        self.api = example.PolicyAPI({
            MAC: {"kernel": "/files/vmlinuz", "initrd": ["/files/initrd.gz"],
                  "cmdline": {"console": "ttyS0", "quiet": True, "off": False},
                  "message": "installing"},
            "52:54:00:aa:00:02": {"ipxe-script": "#!ipxe\necho {{ mac }}\nexit\n"},
            "52:54:00:aa:00:03": {"action": "chain", "url": "/files/vmlinuz", "args": "x=1"},
            "52:54:00:aa:00:04": {"action": "local"},
            "52:54:00:aa:00:05": {"action": "ignore"},
            "52:54:00:aa:00:06": {"action": "reboot"},
            "52:54:00:aa:00:07": {"kernel": "file:///etc/passwd"},
            PIXIECORE_MAC: {"kernel": "/files/vmlinuz", "cmdline": (
                'ks={{ URL "/files/initrd.gz" }} cfg={{ ID "/files/vmlinuz" }} '
                "srv={{ ServerHost }} raw=https://cdn.invalid/x")},
        }, self.files)
        port = reactor.listenTCP(0, Site(self.api.app.resource()), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.url = f"http://127.0.0.1:{port.getHost().port}"
        self.bad = Misbehaving()
        bad_port = reactor.listenTCP(0, Site(self.bad), interface="127.0.0.1")
        self.addCleanup(bad_port.stopListening)
        self.bad_url = f"http://127.0.0.1:{bad_port.getHost().port}"
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(self.pool.closeCachedConnections)
        self.client = HTTPClient(Agent(reactor, pool=self.pool))
        self.clock = task.Clock()

    def rule(self, url: str | None = None, **kwargs: Any) -> APIRule:
        return APIRule(self.client, url or self.url, self.clock, **kwargs)


class AnswerTests(APITestCase):
    @defer.inlineCallbacks
    def test_linux(self) -> Any:
        rule = self.rule()
        verifyObject(IRule, rule)
        action = yield rule.decide(ask())
        self.assertEqual(action, BootSpec(
            f"{self.url}/files/vmlinuz", (f"{self.url}/files/initrd.gz",),
            'console="ttyS0" off quiet', message="installing", remote_only=True))
        self.assertTrue(action.remote_only)

    @defer.inlineCallbacks
    def test_question(self) -> Any:
        """
        pxed asks for the MAC with the architecture, firmware, UUID,
        interface and stage.
        """
        yield self.rule().decide(ask(stage="bootserver"))
        [(mac, args)] = self.api.asked
        self.assertEqual(mac, MAC)
        self.assertEqual(args, {"arch": "x64-uefi", "arch_code": "7", "firmware": "uefi",
                                "uuid": GUID, "interface": "eth1", "stage": "bootserver",
                                "ipxe": "0"})

    @defer.inlineCallbacks
    def test_other_actions(self) -> Any:
        rule = self.rule()
        results = []
        for n in range(2, 6):
            results.append((yield rule.decide(ask(f"52:54:00:aa:00:0{n}"))))
        self.assertEqual(results, [
            IPXEScript("#!ipxe\necho {{ mac }}\nexit\n", remote_only=True),
            Chain(f"{self.url}/files/vmlinuz", "x=1", remote_only=True),
            LocalBoot(remote_only=True), Ignore(remote_only=True)])

    @defer.inlineCallbacks
    def test_unusable_answers_ignore(self) -> Any:
        """
        Unknown machines (404), unknown actions and non-http URLs: ignored
        for now, and the reason logged.
        """
        rule = self.rule()
        for mac in ("52:54:00:aa:00:99", "52:54:00:aa:00:06", "52:54:00:aa:00:07"):
            action = yield rule.decide(ask(mac))
            self.assertEqual(action, Ignore(remote_only=True), mac)
            policy_answer = yield RulePolicy([self.rule()]).boot_spec(ask(mac))
            self.assertIsNone(policy_answer)
        self.assertEqual(len(self.flushLoggedErrors()), 0)

    @defer.inlineCallbacks
    def test_non_200_and_bad_json(self) -> Any:
        for path in ("/status/500", "/status/302", "/status/201", "/badjson", "/notobject",
                     "/huge"):
            action = yield self.rule(self.bad_url + path).decide(ask())
            self.assertEqual(action, Ignore(remote_only=True), path)
        self.assertEqual(self.bad.count, 6)

    @defer.inlineCallbacks
    def test_timeout(self) -> Any:
        rule = self.rule(self.bad_url + "/stall", timeout=5)
        d = rule.decide(ask())
        for _ in range(200):  # bounded wait for the request to arrive
            if self.bad.stalled:
                break
            yield task.deferLater(reactor, 0.01)
        self.assertEqual(len(self.bad.stalled), 1)
        self.clock.advance(4.9)
        self.assertNoResult(d)
        self.clock.advance(0.2)
        action = yield d
        self.assertEqual(action, Ignore(remote_only=True))
        gone = self.bad.stalled[0].notifyFinish()
        yield self.assertFailure(gone, Exception)  # the request was abandoned


class CacheTests(APITestCase):
    @defer.inlineCallbacks
    def test_once_per_stage_within_cache_time(self) -> Any:
        rule = self.rule(cache=30)
        for _ in range(3):
            yield rule.decide(ask())
        self.assertEqual(len(self.api.asked), 1)
        yield rule.decide(ask(stage="bootserver"))
        yield rule.decide(ask(ipxe=True))
        self.assertEqual(len(self.api.asked), 3)
        self.clock.advance(29)
        yield rule.decide(ask())
        self.assertEqual(len(self.api.asked), 3)
        self.clock.advance(2)
        yield rule.decide(ask())
        self.assertEqual(len(self.api.asked), 4)

    @defer.inlineCallbacks
    def test_concurrent_questions_share_one_request(self) -> Any:
        rule = self.rule()
        answers = yield defer.gatherResults([rule.decide(ask()) for _ in range(5)])
        self.assertEqual(len(self.api.asked), 1)
        self.assertEqual(len({id(a) for a in answers}), 1)
        self.assertIsInstance(answers[0], BootSpec)

    @defer.inlineCallbacks
    def test_failures_cached_too(self) -> Any:
        rule = self.rule(self.bad_url + "/status/500")
        for _ in range(3):
            yield rule.decide(ask())
        self.assertEqual(self.bad.count, 1)

    @defer.inlineCallbacks
    def test_no_cache(self) -> Any:
        rule = self.rule(cache=0)
        yield rule.decide(ask())
        yield rule.decide(ask())
        self.assertEqual(len(self.api.asked), 2)


class RawPath(Resource):
    """
    An API that matches the raw request path, as a simple handler or an
    nginx location does: only C{/v1/boot/52:54:00:...} with its colons as
    they are gets an answer (Pixiecore sends them so).
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.uris: list[bytes] = []

    def render_GET(self, request: Request) -> bytes:
        self.uris.append(request.uri)
        path = request.uri.split(b"?")[0]
        if path == f"/v1/boot/{MAC}".encode():
            return json.dumps({"kernel": "/k", "cmdline": {"ks": {"url": "/ks.cfg"}}}).encode()
        request.setResponseCode(404)
        return b"{}"


class PixiecoreCompatibilityTests(APITestCase):
    @defer.inlineCallbacks
    def test_raw_path_server_answers(self) -> Any:
        raw = RawPath()
        port = reactor.listenTCP(0, Site(raw), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        url = f"http://127.0.0.1:{port.getHost().port}"
        action = yield self.rule(url).decide(ask())
        self.assertEqual(raw.uris[0].split(b"?")[0], f"/v1/boot/{MAC}".encode())
        self.assertEqual(action, BootSpec(f"{url}/k", (), f"ks={{{{ url('{url}/ks.cfg') }}}}",
                                          remote_only=True))

    def test_cmdline_object_as_pixiecore_writes_it(self) -> None:
        """
        Keys sorted, strings quoted, booleans (either) as the bare key and
        C{{"url": ...}} objects as URLs resolved like the kernel's.
        """
        answer = parse_answer({"kernel": "k", "cmdline": {
            "quiet": True, "console": "ttyS0,115200", "ks": {"url": "/ks.cfg"}, "b": False,
            "n": 3}}, "http://api:1/base")
        self.assertEqual(answer.cmdline, "b console=\"ttyS0,115200\" "
                                         "ks={{ url('http://api:1/ks.cfg') }} n=3 quiet")
        for bad in ({"a": 'x"y'}, {"a": "x\ny"}, {"a": {"nourl": 1}}, {"a": None},
                    {"a": [1]}, {"a b": True}):
            self.assertRaises(APIError, parse_answer, {"kernel": "k", "cmdline": bad}, "http://a")

    def test_file_urls(self) -> None:
        """
        C{file://} URLs name local files, as in Pixiecore, but only below
        C{policy.api.files}; symlinks out and other hosts are refused.
        """
        root = self.files
        (root / "out").symlink_to("/etc/passwd")
        answer = parse_answer({"kernel": f"file://{root}/vmlinuz",
                               "initrd": [f"file://localhost{root}/initrd.gz"],
                               "cmdline": {"cfg": {"url": f"file://{root}/initrd.gz"}}},
                              "http://api", [root])
        self.assertEqual(answer.kernel, f"{root}/vmlinuz")
        self.assertEqual(answer.initrds, (f"{root}/initrd.gz",))
        self.assertEqual(answer.local_files, {f"{root}/vmlinuz", f"{root}/initrd.gz"})
        self.assertTrue(answer.remote_only)
        for kernel, roots, why in (
                (f"file://{root}/vmlinuz", [], "need policy.api.files"),
                ("file:///etc/passwd", [root], "outside policy.api.files"),
                (f"file://{root}/out", [root], "outside policy.api.files"),
                (f"file://{root}/../vmlinuz", [root], "outside"),
                (f"file://{root}/nothere", [root], "no such file"),
                (f"file://otherhost{root}/vmlinuz", [root], "not a file:///PATH URL")):
            error = self.assertRaises(APIError, parse_answer, {"kernel": kernel}, "http://api",
                                      roots)
            self.assertIn(why, str(error))

    @defer.inlineCallbacks
    def test_file_urls_served(self) -> Any:
        """
        The script names the API's local files through pxed's signed URLs
        and they download; a script from the API still cannot name others.
        """
        (self.files / "ks.cfg").write_bytes(b"ks")  # (treq would gunzip a .gz)
        self.api.answers["52:54:00:aa:00:09"] = {
            "kernel": f"file://{self.files}/vmlinuz",
            "cmdline": f'a={{{{ URL "file://{self.files}/ks.cfg" }}}}'}
        catalog = FileCatalog(Signer(b"s" * 32))
        app = BootHTTP(RulePolicy([self.rule(files=[self.files])]), catalog, MemoryBootLog())
        port = reactor.listenTCP(0, Site(app.resource()), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        base = f"http://127.0.0.1:{port.getHost().port}"
        response = yield treq.get(f"{base}/_/ipxe?mac=52:54:00:aa:00:09&arch=7", pool=self.pool)
        script = (yield treq.content(response)).decode()
        kernel = re.search(r"^kernel (\S+) a=(\S+)", script, re.M)
        assert kernel is not None, script
        for url, content in ((kernel.group(1), self.kernel), (kernel.group(2), b"ks")):
            self.assertTrue(url.startswith(base + "/_/file/"), script)
            response = yield treq.get(url, pool=self.pool)
            body = yield treq.content(response)
            self.assertEqual((body, response.code), (content, 200), url)


class ParseTests(unittest.TestCase):
    def test_relative_and_absolute(self) -> None:
        answer = parse_answer({"kernel": "k", "initrd": "https://cdn/i"}, "http://api:1/base")
        self.assertEqual((answer.kernel, answer.initrds), ("http://api:1/base/k",
                                                           ("https://cdn/i",)))

    def test_pixiecore_cmdline_calls(self) -> None:
        """
        Pixiecore's C{{{ URL "..." }}} and C{{{ ID "..." }}} become pxed's
        C{url()}, with relative URLs resolved like the kernel's; Go's raw
        strings and trim markers too, and quotes cannot break out.
        """
        answer = parse_answer({"kernel": "k", "cmdline": (
            'a={{ URL "/ks.cfg" }} b={{ID `https://h/x`}} c={{- URL "y" -}} '
            "d={{ ID \"http://h/it's\" }} {{ ServerHost }}")}, "http://api:1/base")
        self.assertEqual(answer.cmdline, (
            "a={{ url('http://api:1/ks.cfg') }} b={{ url('https://h/x') }} "
            "c={{- url('http://api:1/base/y') -}} d={{ url('http://h/it\\'s') }} "
            "{{ ServerHost }}"))
        request = BootRequest(Machine(MAC, architecture(7)), "script")
        env = ScriptEnv(request, "10.0.0.1", "http://10.0.0.1", "http://10.0.0.1/b",
                        file_url=lambda loc: f"<{loc}>", export_url=lambda n, p: "",
                        allow_local=False)
        self.assertEqual(env.render(answer.cmdline),
                         "a=<http://api:1/ks.cfg> b=<https://h/x> c=<http://api:1/base/y>"
                         "d=<http://h/it's> 10.0.0.1")

    def test_pixiecore_calls_refused(self) -> None:
        for cmdline in ('{{ URL .Kernel }}', '{{ URL "a b" }}', '{{ ID "ftp://h/x" }}',
                        '{{ URL "http://h/\\"x" }}', '{{ URL }}', '{{ ID "" }}'):
            error = self.assertRaises(APIError, parse_answer,
                                      {"kernel": "k", "cmdline": cmdline}, "http://api")
            self.assertIn("cmdline", str(error), cmdline)

    def test_refused(self) -> None:
        for data in ([], {}, {"kernel": 3}, {"kernel": "http://h/a b"},
                     {"kernel": "http://h/k\nshell"}, {"kernel": "k", "initrd": 4},
                     {"kernel": "k", "cmdline": 5}, {"ipxe-script": ""},
                     {"action": "chain"}, {"action": "chain", "url": "ftp://x"}):
            self.assertRaises(APIError, parse_answer, data, "http://api")


class SignedURLTests(APITestCase):
    """
    What the API names is reachable only through IDs pxed signs, and a
    script from the API cannot name pxed's own files.
    """

    def setUp(self) -> None:
        super().setUp()
        self.catalog = FileCatalog(Signer(b"s" * 32), proxy_remote=True)
        self.fetcher = RemoteFetcher(reactor, 5, 30)
        self.addCleanup(self.fetcher.close)
        app = BootHTTP(RulePolicy([self.rule()]), self.catalog, MemoryBootLog(),
                       fetcher=self.fetcher)
        port = reactor.listenTCP(0, Site(app.resource()), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.base = f"http://127.0.0.1:{port.getHost().port}"

    def get(self, url: str) -> Any:
        return treq.get(url, pool=self.pool, timeout=20)

    @defer.inlineCallbacks
    def test_proxied_through_signed_ids(self) -> Any:
        response = yield self.get(f"{self.base}/_/ipxe?mac={quote(MAC)}&arch=7")
        script = (yield treq.content(response)).decode()
        self.assertNotIn(self.url, script)  # the API's own URLs never reach the client
        kernel = re.search(r"^kernel (\S+)", script, re.M).group(1)  # type: ignore[union-attr]
        self.assertTrue(kernel.startswith(self.base + "/_/file/"), kernel)
        response = yield self.get(kernel)
        body = yield treq.content(response)
        self.assertEqual((response.code, body), (200, self.kernel))
        # Tampered: another URL under the same tag, or a flipped character.
        token = urlsplit(kernel).path.split("/")[3]
        payload, tag = token.split(".")
        evil = FileCatalog(Signer(b"e" * 32), True).url("", f"{self.url}/files/initrd.gz")
        for path in (f"/_/file/{evil.split('/')[3].split('.')[0]}.{tag}/initrd.gz",
                     f"/_/file/{payload}.{tag[:-1]}{'A' if tag[-1] != 'A' else 'B'}/vmlinuz"):
            response = yield self.get(self.base + path)
            yield treq.content(response)
            self.assertEqual(response.code, 404, path)

    @defer.inlineCallbacks
    def test_pixiecore_cmdline(self) -> Any:
        """
        An API written for Pixiecore: C{URL}/C{ID} in its cmdline become
        pxed URLs (signed, proxied here) that serve the API's files, and
        C{ServerHost} is pxed's address.
        """
        response = yield self.get(f"{self.base}/_/ipxe?mac={quote(PIXIECORE_MAC)}&arch=7")
        script = (yield treq.content(response)).decode()
        line = re.search(r"^kernel \S+ (.*)$", script, re.M)
        assert line is not None, script
        words = dict(word.split("=", 1) for word in line.group(1).split())
        self.assertEqual(words["srv"], "127.0.0.1")
        self.assertEqual(words["raw"], "https://cdn.invalid/x")
        for key, content in (("ks", b"initrd"), ("cfg", self.kernel)):
            self.assertTrue(words[key].startswith(self.base + "/_/file/"), words)
            response = yield self.get(words[key])
            body = yield treq.content(response)
            self.assertEqual((response.code, body), (200, content))
        self.assertNotIn(self.url, script)

    @defer.inlineCallbacks
    def test_api_script_rendered_remote_only(self) -> Any:
        response = yield self.get(f"{self.base}/_/ipxe?mac=52:54:00:aa:00:02&arch=7")
        script = (yield treq.content(response)).decode()
        self.assertEqual(script, "#!ipxe\necho 52:54:00:aa:00:02\nexit\n")


class ExampleServerTests(unittest.TestCase):
    """
    The example runs as its own program, as a user would start it.
    """

    timeout = 60

    def test_runs(self) -> None:
        answers = Path(self.mktemp())
        answers.write_text(json.dumps({"default": {"action": "local"}}))
        proc = subprocess.Popen(
            [sys.executable, str(REPO / "examples/policy_api.py"), "--answers", str(answers),
             "--port", "0"], stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
            self.assertIsNotNone(match, line)
            assert match is not None
            out = subprocess.run(
                [sys.executable, "-c",
                 "import sys,urllib.request;"
                 "print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())",
                 f"http://127.0.0.1:{match.group(1)}/v1/boot/52:54:00:00:00:01?arch=x64-uefi"],
                capture_output=True, text=True, timeout=30)
            self.assertEqual(json.loads(out.stdout), {"action": "local"})
        finally:
            proc.terminate()
            proc.wait(timeout=10)
