"""
ARM64 UEFI clients, unit level: what the responder tells them (the GRUB
image pxed builds for the address it answers from, or the configured
program), the image over HTTP for HTTP Boot (arch 19), and the C{arm64:}
configuration section.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import treq
from twisted.internet import defer
from twisted.internet.defer import ensureDeferred
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial import unittest

from pxed import cli
from pxed.config import ConfigError, load_config, parse_config
from pxed.dhcp.packet import DHCPPacket, Option, encode
from pxed.dhcp.reply import BootAnswer
from pxed.dhcp.responder import BootResponder
from pxed.doctor.checks import arm64_findings
from pxed.grub.image import GrubImageCache
from pxed.http.app import BootHTTP
from pxed.http.files import FileCatalog
from pxed.machine import Machine, architecture
from pxed.policy import BootSpec, StaticPolicy
from pxed.runtime import image_cache, tftp_source
from pxed.service import makeBootService
from pxed.signing import Signer
from pxed.state import MemoryBootLog
from pxed.testing.http import listen_on_loopback
from pxed.tftp.source import FileNotFound
from tests.fixtures import write_bootloaders
from tests.grub import Workspace, real_modules

MAC = "52:54:00:77:00:40"
SERVER = "192.168.77.1"
RELAYED = "10.20.0.1"


class ResponderTests(unittest.TestCase):
    def setUp(self) -> None:
        self.ws = Workspace(self)
        self.images = self.ws.make()
        base = Path(self.mktemp()).absolute()
        base.mkdir()
        self.bootloaders = write_bootloaders(base)
        kernel = base / "Image"
        kernel.write_bytes(b"kernel")
        policy = StaticPolicy({MAC: BootSpec(kernel=str(kernel))})
        self.responder = BootResponder(policy, self.bootloaders, 80, MemoryBootLog(),
                                       images=self.images)
        # Builds a test started finish before the test ends.
        self.addCleanup(lambda: defer.gatherResults(
            [self.images.image(a) for a in sorted(self.images.advertised)], consumeErrors=True))

    def answer(self, code: int, server: str = SERVER, http: bool = False) -> BootAnswer | None:
        machine = Machine(MAC, architecture(code), http_boot=http)
        return self.successResultOf(ensureDeferred(
            self.responder.answer(machine, server, "bootserver")))

    @defer.inlineCallbacks
    def test_arm64_gets_the_image_of_its_address(self) -> Any:
        """
        An ARM64 UEFI client is named the image built for the address it
        is answered from (an interface's, or a relay subnet's), which
        starts its build; each address has its own.
        """
        for server in (SERVER, RELAYED):
            answer = self.answer(11, server)
            self.assertEqual(answer, BootAnswer(server, f"grubaa64-{server}.efi",
                                                discovery_control=False))
        self.assertEqual(self.images.advertised, {SERVER, RELAYED})
        first = yield self.images.image(SERVER)
        second = yield self.images.image(RELAYED)
        self.assertIn(b"set root=(tftp,192.168.77.1)", first.read_bytes())
        self.assertIn(b"set root=(tftp,10.20.0.1)", second.read_bytes())
        self.assertEqual(self.ws.count(), 2)

    def test_http_boot_gets_the_image_by_url(self) -> None:
        """
        ARM64 UEFI HTTP Boot (code 19) gets the same program over HTTP.
        """
        answer = self.answer(19, http=True)
        assert answer is not None
        self.assertEqual(answer.bootfile, f"http://{SERVER}/_/boot/grubaa64-{SERVER}.efi")
        self.assertEqual(answer.vendor_class, b"HTTPClient")

    def test_configured_program_wins(self) -> None:
        program = Path(self.mktemp())
        program.write_bytes(b"MZ")
        self.responder.bootloaders["arm64-uefi"] = program
        answer = self.answer(11)
        assert answer is not None
        self.assertEqual(answer.bootfile, program.name)
        self.assertEqual(self.images.advertised, set())

    def test_other_architectures_untouched(self) -> None:
        """
        Only ARM64 gets the built image: RISC-V without a program stays
        unanswered.
        """
        self.assertIsNone(self.answer(27))
        self.assertEqual(self.images.advertised, set())

    def test_missing_modules_named_in_the_warning(self) -> None:
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.responder.images = GrubImageCache(Path(self.mktemp()), Path("/nonexistent/mods"),
                                               str(self.ws.mkimage))
        self.assertIsNone(self.answer(11))
        warnings = [e for e in events if e.get("log_level") == LogLevel.warn]
        self.assertEqual(len(warnings), 1)
        self.assertIn("/nonexistent/mods", warnings[0]["problem"])
        self.assertIn("grub-efi-arm64-bin", warnings[0]["problem"])


class HTTPBootTests(unittest.TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.ws = Workspace(self)
        self.images = self.ws.make()
        app = BootHTTP(StaticPolicy({}), FileCatalog(Signer(b"k" * 32)), MemoryBootLog(),
                       programs={}, images=self.images)
        self.base, self.pool = listen_on_loopback(self, app.resource())

    @defer.inlineCallbacks
    def get(self, path: str, method: str = "GET") -> Any:
        response = yield treq.request(method, self.base + path, pool=self.pool, timeout=30)
        body = yield treq.content(response)
        return response.code, response.headers.getRawHeaders(b"Content-Type"), body

    @defer.inlineCallbacks
    def test_image_over_http(self) -> Any:
        """
        The built image is served (and built on this first request) under
        its name, as application/efi, for an advertised address only.
        """
        self.images.advertised.add(SERVER)
        code, kind, body = yield self.get(f"/_/boot/grubaa64-{SERVER}.efi")
        self.assertEqual((code, kind), (200, [b"application/efi"]))
        self.assertEqual(body, self.images.path(SERVER).read_bytes())
        self.assertEqual(body[:2], b"MZ")
        code, _, _ = yield self.get("/_/boot/grubaa64-203.0.113.7.efi")
        self.assertEqual(code, 404)
        self.assertEqual(self.ws.count(), 1)


class ExplainTests(unittest.TestCase):
    def test_explain_names_the_image_and_builds_nothing(self) -> None:
        """
        C{pxed explain} tells an ARM64 client's answer (the image of the
        address) without building anything.
        """
        ws = Workspace(self)
        kernel = ws.root / "Image"
        kernel.write_bytes(b"k")
        config = ws.root / "pxed.yaml"
        config.write_text(
            "server: {address: 192.168.77.1}\n"
            f"arm64: {{modules: {ws.modules}, cache_dir: {ws.cache}, mkimage: {ws.mkimage}}}\n"
            f"boot: {{default: {{kernel: {kernel}}}}}\n")
        options = {Option.MESSAGE_TYPE: b"\x01",
                   Option.VENDOR_CLASS: b"PXEClient:Arch:00011:UNDI:003000",
                   Option.CLIENT_ARCH: b"\x00\x0b"}
        chaddr = bytes.fromhex("525400770040") + b"\0" * 10
        packet = encode(DHCPPacket(xid=1, chaddr=chaddr, options=options))
        out, err = io.StringIO(), io.StringIO()
        code = cli.main(["explain", "--config", str(config), "--hex", packet.hex()], out, err)
        self.assertEqual(code, 0, err.getvalue())
        self.assertIn("grubaa64-192.168.77.1.efi", out.getvalue())
        self.assertEqual(ws.count(), 0)
        self.assertFalse(ws.cache.exists())


class DoctorTests(unittest.TestCase):
    def test_findings(self) -> None:
        """
        C{pxed doctor} says whether the ARM64 image can be built: a
        warning naming what is missing, or where it comes from and goes.
        """
        ws = Workspace(self)
        good = parse_config({"arm64": {"modules": str(ws.modules), "cache_dir": str(ws.cache),
                                       "mkimage": str(ws.mkimage)}}, "pxed.yaml")
        [finding] = arm64_findings(good)
        self.assertEqual(finding.level, "ok")
        self.assertIn(str(ws.modules), finding.message)
        missing = parse_config({"arm64": {"cache_dir": str(ws.cache),
                                          "mkimage": "/nonexistent/grub-mkimage"}}, "pxed.yaml")
        [finding] = arm64_findings(missing)
        self.assertEqual(finding.level, "warn")
        self.assertIn("grub-common", finding.message)
        self.assertEqual(list(arm64_findings(parse_config({"arm64": False}))), [])
        self.assertEqual(ws.count(), 0)


class ReloadTests(unittest.TestCase):
    def test_cache_is_a_reloadable_part(self) -> None:
        """
        A reload that leaves C{arm64:} alone keeps the cache (and what it
        knows: the addresses advertised); one that changes it gives the
        responder, the web app and TFTP a new cache at once; C{arm64:
        false} takes it away.
        """
        ws = Workspace(self)
        path = ws.root / "pxed.yaml"

        def write(arm64: str) -> None:
            path.write_text("server: {ports: {dhcp: 0, pxe: 0, tftp: 0, http: 0}}\n"
                            f"arm64: {arm64}\n")

        write(f"{{modules: {ws.modules}, cache_dir: {ws.cache}, mkimage: {ws.mkimage}}}")
        top = makeBootService(load_config(path), reactor=MemoryReactorClock())
        runtime: Any = top.getServiceNamed("policy")
        service: Any = top.getServiceNamed("proxydhcp")
        responder = service.protocol.responder
        first = responder.images
        self.assertIsInstance(first, GrubImageCache)
        self.assertIs(runtime.parts.current.images, first)
        first.advertised.add(SERVER)

        path.write_text(path.read_text() + "boot: {}\n")
        self.assertTrue(runtime.reload()[0])
        self.assertIs(responder.images, first)

        other = ws.root / "other-cache"
        write(f"{{modules: {ws.modules}, cache_dir: {other}, mkimage: {ws.mkimage}}}")
        self.assertTrue(runtime.reload()[0])
        second = responder.images
        self.assertIsNot(second, first)
        self.assertEqual(second.cache_dir, other)
        self.assertIs(runtime.parts.current.images, second)
        # TFTP asks the new cache: nothing advertised there yet, nothing built.
        self.failureResultOf(runtime.tftp.open(f"grubaa64-{SERVER}.efi", ("192.0.2.9", 9)),
                             FileNotFound)

        write("false")
        self.assertTrue(runtime.reload()[0])
        self.assertIsNone(responder.images)
        self.assertEqual(ws.count(), 0)


class ConfigTests(unittest.TestCase):
    def test_defaults(self) -> None:
        config = parse_config({}, "pxed.yaml")
        self.assertTrue(config.arm64.build)
        images = image_cache(config.arm64)
        assert images is not None
        self.assertEqual(images.cache_dir, Path("/var/cache/pxed"))

    def test_off(self) -> None:
        config = parse_config({"arm64": False}, "pxed.yaml")
        self.assertIsNone(image_cache(config.arm64))

    def test_settings(self) -> None:
        modules = real_modules()
        config = parse_config({"arm64": {"modules": str(modules), "cache_dir": "/srv/cache",
                                         "mkimage": "/opt/grub-mkimage"}}, "pxed.yaml")
        images = image_cache(config.arm64)
        assert images is not None
        self.assertEqual((images.modules_dir(), images.cache_dir, images.mkimage),
                         (modules, Path("/srv/cache"), "/opt/grub-mkimage"))

    def test_errors(self) -> None:
        for section, key, words in (
            ({"modules": "/nonexistent"}, "arm64.modules", "grub-efi-arm64-bin"),
            ({"modules": "relative/dir"}, "arm64.modules", "absolute"),
            ({"cache_dir": "cache"}, "arm64.cache_dir", "absolute"),
            ({"mkimage": ""}, "arm64.mkimage", "non-empty"),
            ({"colour": "blue"}, "arm64.colour", "unknown key"),
        ):
            e = self.assertRaises(ConfigError, parse_config, {"arm64": section}, "pxed.yaml")
            self.assertEqual(e.key, key)
            self.assertIn(words, e.problem)
            self.assertNotIn("\n", str(e))

    @defer.inlineCallbacks
    def test_tftp_serves_images(self) -> Any:
        """
        The TFTP source built from a configuration serves the images too.
        """
        ws = Workspace(self)
        images = ws.make()
        source = tftp_source(parse_config({}, "pxed.yaml"), images)
        yield self.assertFailure(source.open(f"grubaa64-{SERVER}.efi", ("192.0.2.9", 9)),
                                 Exception)
        images.advertised.add(SERVER)
        readable = yield source.open(f"grubaa64-{SERVER}.efi", ("192.0.2.9", 9))
        self.assertEqual(readable.read(0, 2), b"MZ")
        readable.close()
