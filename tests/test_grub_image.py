"""
Tests for L{pxed.grub.image} and L{pxed.grub.imagesource}: the ARM64
GRUB image pxed builds, with the real C{grub-mkimage} and Debian's arm64
modules (C{scripts/setup} unpacks them), and a stand-in C{grub-mkimage}
where a test needs one that fails or takes its time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from pxed.grub import image
from pxed.grub.image import (
    MODULES,
    GrubImageCache,
    GrubImageError,
    early_config,
)
from pxed.grub.imagesource import GrubImageSource
from pxed.tftp.source import AccessViolation, FileNotFound, IFileSource
from tests.grub import Workspace

PEER = ("192.0.2.50", 1234)


class ImageTests(TestCase):
    def setUp(self) -> None:
        self.ws = Workspace(self)

    @defer.inlineCallbacks
    def test_builds_an_efi_program_naming_the_server(self) -> Any:
        """
        The image is an arm64 EFI program with the early configuration
        for its address built in.
        """
        cache = self.ws.make()
        path = yield cache.image("192.0.2.1")
        data = path.read_bytes()
        self.assertEqual(data[:2], b"MZ")
        self.assertIn(early_config("192.0.2.1").encode(), data)
        self.assertIn(b"set root=(tftp,192.0.2.1)", data)
        self.assertEqual(self.ws.count(), 1)
        self.assertEqual(path.parent, self.ws.cache / "grub-arm64-efi")

    @defer.inlineCallbacks
    def test_cached_until_an_input_changes(self) -> Any:
        """
        A second request reuses the file, also from a new cache object (a
        restart); another address, a changed module, another module list
        or another grub-mkimage version each build a new image.
        """
        cache = self.ws.make()
        first = yield cache.image("192.0.2.1")
        again = yield self.ws.make().image("192.0.2.1")
        self.assertEqual((again, self.ws.count()), (first, 1))

        other = yield cache.image("198.51.100.1")
        self.assertNotEqual(other, first)
        self.assertEqual(self.ws.count(), 2)
        self.assertTrue(first.is_file(), "another address's image stays")

        # A module file replaced (a new package unpacked).
        module = self.ws.modules / "echo.mod"
        content = module.read_bytes()
        module.unlink()
        module.write_bytes(content)
        rebuilt = yield cache.image("192.0.2.1")
        self.assertNotEqual(rebuilt, first)
        self.assertEqual(self.ws.count(), 3)
        self.assertFalse(first.exists(), "the older image of that address is removed")

        listed = yield self.ws.make(modules=(*MODULES, "regexp")).image("192.0.2.1")
        self.assertNotIn(listed, (first, rebuilt))
        self.assertEqual(self.ws.count(), 4)

        self.ws.wrap(version="grub-mkimage (GRUB) 2.12-test")
        upgraded = yield cache.image("192.0.2.1")
        self.assertNotIn(upgraded, (first, rebuilt, listed))
        self.assertEqual(self.ws.count(), 5)

    def test_module_listing_reread(self) -> None:
        """
        The module directory is read again when it changes, and a file
        overwritten in place (the directory unchanged) counts after
        L{image.LISTING_TTL} seconds.
        """
        now = [1000.0]
        self.patch(image.time, "monotonic", lambda: now[0])
        cache = self.ws.make()
        first = cache.fingerprint("192.0.2.1")
        module = self.ws.modules / "echo.mod"
        content = module.read_bytes()
        module.unlink()
        module.write_bytes(content)
        second = cache.fingerprint("192.0.2.1")
        self.assertNotEqual(second, first, "a file replaced changes the directory")
        directory = os.stat(self.ws.modules)
        os.utime(module, ns=(0, 0))  # in place: the directory stays as it was
        os.utime(self.ws.modules, ns=(directory.st_atime_ns, directory.st_mtime_ns))
        self.assertEqual(cache.fingerprint("192.0.2.1"), second)
        now[0] += image.LISTING_TTL + 1
        self.assertNotEqual(cache.fingerprint("192.0.2.1"), second)

    @defer.inlineCallbacks
    def test_never_half_written(self) -> Any:
        """
        While grub-mkimage writes, the image's name does not exist (and a
        second request waits for the same build); it appears only whole.
        """
        release = self.ws.root / "release"
        self.ws.wrap(version="v1", before=(
            f'n=0; while [ ! -f "{release}" ] && [ $n -lt 400 ]; do sleep 0.05; n=$((n+1)); '
            "done\n"))
        cache = self.ws.make()
        target = cache.path("192.0.2.1")
        first = cache.image("192.0.2.1")
        second = cache.image("192.0.2.1")
        yield deferLater(reactor, 0.3, lambda: None)
        self.assertFalse(target.exists())
        self.assertFalse(first.called)
        release.touch()
        paths = yield defer.gatherResults([first, second])
        self.assertEqual(paths, [target, target])
        self.assertEqual(self.ws.count(), 1)
        self.assertEqual(target.read_bytes()[:2], b"MZ")
        self.assertEqual(sorted(p.name for p in target.parent.iterdir()), [target.name],
                         "no temporary file is left")

    @defer.inlineCallbacks
    def test_failed_build_leaves_nothing(self) -> Any:
        """
        A grub-mkimage that writes part of an image and fails leaves no
        file under the image's name (nor a temporary one), and says why.
        """
        self.ws.mkimage.write_text(
            "#!/bin/sh\n"
            'if [ "$1" = --version ]; then echo broken; exit 0; fi\n'
            'while [ "$1" != -o ]; do shift; done\n'
            'printf MZhalf > "$2"; echo "grub-mkimage: error: disk full." >&2; exit 1\n'
        )
        cache = self.ws.make()
        failure = yield self.assertFailure(cache.image("192.0.2.1"), GrubImageError)
        self.assertIn("disk full", str(failure))
        self.assertIn("192.0.2.1", str(failure))
        self.assertEqual(list((self.ws.cache / "grub-arm64-efi").iterdir()), [])

    @defer.inlineCallbacks
    def test_not_an_efi_program(self) -> Any:
        """
        Output that is not a PE file is not put in place.
        """
        self.ws.mkimage.write_text(
            "#!/bin/sh\n"
            'if [ "$1" = --version ]; then echo odd; exit 0; fi\n'
            'while [ "$1" != -o ]; do shift; done\n'
            'printf garbage > "$2"\n'
        )
        cache = self.ws.make()
        yield self.assertFailure(cache.image("192.0.2.1"), GrubImageError)
        self.assertFalse(cache.path("192.0.2.1").exists())

    def test_missing_modules(self) -> None:
        """
        Without modules, one line names the directory and the package.
        """
        cache = GrubImageCache(Path(self.mktemp()), Path("/nonexistent/arm64-efi"),
                               str(self.ws.mkimage))
        problem = cache.problem()
        assert problem is not None
        self.assertNotIn("\n", problem)
        self.assertIn("/nonexistent/arm64-efi", problem)
        self.assertIn("grub-efi-arm64-bin", problem)
        self.failureResultOf(cache.image("192.0.2.1"), GrubImageError)

    def test_missing_mkimage(self) -> None:
        """
        Without grub-mkimage, one line names it and grub-common.
        """
        cache = GrubImageCache(Path(self.mktemp()), self.ws.modules, "/nonexistent/grub-mkimage")
        problem = cache.problem()
        assert problem is not None
        self.assertNotIn("\n", problem)
        self.assertIn("grub-common", problem)
        self.assertIn("/nonexistent/grub-mkimage", problem)
        self.assertIsNone(self.ws.make().problem())

    def test_names(self) -> None:
        cache = self.ws.make()
        self.assertEqual(cache.name("192.0.2.1"), "grubaa64-192.0.2.1.efi")
        self.assertEqual(cache.address_of("grubaa64-192.0.2.1.efi"), "192.0.2.1")
        for bad in ("grubaa64-192.0.2.256.efi", "grubx64-192.0.2.1.efi", "grubaa64-1.2.3.efi",
                    "grubaa64-192.0.2.1.efi.bak", "x/grubaa64-192.0.2.1.efi"):
            self.assertIsNone(cache.address_of(bad), bad)


class SourceTests(TestCase):
    def setUp(self) -> None:
        self.ws = Workspace(self)
        self.cache = self.ws.make()
        self.source = GrubImageSource(self.cache)

    def test_interface(self) -> None:
        verifyObject(IFileSource, self.source)

    @defer.inlineCallbacks
    def test_serves_advertised_addresses(self) -> Any:
        yield self.cache.prepare("192.0.2.1")
        readable = yield self.source.open("grubaa64-192.0.2.1.efi", PEER)
        try:
            self.assertEqual(readable.read(0, 2), b"MZ")
            self.assertEqual(readable.size, self.cache.path("192.0.2.1").stat().st_size)
        finally:
            readable.close()
        # A leading slash, as some firmware sends.
        readable = yield self.source.open("/grubaa64-192.0.2.1.efi", PEER)
        readable.close()

    @defer.inlineCallbacks
    def test_builds_nothing_for_other_addresses(self) -> Any:
        """
        A client naming an address pxed never advertised gets file not
        found, and no image is built for it.
        """
        yield self.assertFailure(self.source.open("grubaa64-203.0.113.9.efi", PEER), FileNotFound)
        self.assertEqual(self.ws.count(), 0)
        yield self.assertFailure(self.source.open("grubx64.efi", PEER), FileNotFound)

    @defer.inlineCallbacks
    def test_restart_serves_a_built_image(self) -> Any:
        """
        After a restart, an image already built for today's inputs is
        served before any DHCP answer advertised its address again.
        """
        yield self.cache.prepare("192.0.2.1")
        fresh = GrubImageSource(self.ws.make())
        readable = yield fresh.open("grubaa64-192.0.2.1.efi", PEER)
        readable.close()
        self.assertEqual(self.ws.count(), 1)

    @defer.inlineCallbacks
    def test_modules(self) -> Any:
        """
        The module directory is served under grub/arm64-efi/, read-only and
        without a way out.
        """
        readable = yield self.source.open("/grub/arm64-efi/command.lst", PEER)
        try:
            self.assertEqual(readable.read(0, 1 << 20),
                             (self.ws.modules / "command.lst").read_bytes())
        finally:
            readable.close()
        yield self.assertFailure(self.source.open("grub/arm64-efi/nothing.mod", PEER),
                                 FileNotFound)
        yield self.assertFailure(self.source.open("grub/arm64-efi/../../etc/passwd", PEER),
                                 AccessViolation)
        yield self.assertFailure(self.source.open("grub/x86_64-efi/command.lst", PEER),
                                 FileNotFound)

    def test_builds_only_through_prepare_or_disk(self) -> None:
        self.assertEqual(self.cache.advertised, set())
        self.assertFalse(os.path.exists(self.ws.cache))
