"""
Tests for L{pxed.config.tftp}: the C{tftp:} section, and that what it says
reaches the TFTP server C{makeBootService} builds (limits) and what it
serves (C{tftp.root}, reloadable).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.testing import MemoryReactorClock

from pxed.config import TFTPConfig, load_config, parse_config
from pxed.runtime import tftp_source
from pxed.service import makeBootService
from pxed.tftp.source import AccessViolation, FileNotFound
from tests.fixtures import EXAMPLE, ConfigTestCase


class TFTPSectionTests(ConfigTestCase):
    def test_defaults(self) -> None:
        loaded = parse_config({}, "site.yaml")
        self.assertEqual(loaded.tftp, TFTPConfig())
        self.assertIsNone(loaded.tftp.root)
        # Well above dnsmasq's default of 50 concurrent transfers.
        self.assertGreaterEqual(loaded.tftp.max_transfers, 200)

    def test_everything(self) -> None:
        root = self.dir / "tftp"
        root.mkdir()
        uploads = self.dir / "uploads"
        uploads.mkdir()
        loaded = self.load(f"""\
            tftp:
              root: {root}
              max_blksize: 8968
              max_windowsize: 64
              timeout: 2s
              retries: 3
              patience: 1m
              max_transfers: 1000
              max_per_client: 4
              upload_root: {uploads}
              max_upload_size: 1000000
              upload_overwrite: true
            """)
        self.assertEqual(loaded.tftp, TFTPConfig(
            root=root, max_blksize=8968, max_windowsize=64, timeout=2.0, retries=3,
            patience=60.0, max_transfers=1000, max_per_client=4, upload_root=uploads,
            max_upload_size=1_000_000, upload_overwrite=True))
        options = loaded.tftp.protocol_options()
        upload = options.pop("upload")
        self.assertEqual(options, {
            "max_blksize": 8968, "max_windowsize": 64, "timeout": 2.0, "retries": 3,
            "patience": 60.0, "max_transfers": 1000, "max_per_client": 4})
        self.assertEqual((upload.root, upload.max_size, upload.overwrite),
                         (uploads, 1_000_000, True))

    def test_uploads_off_by_default(self) -> None:
        self.assertIsNone(TFTPConfig().protocol_options()["upload"])

    def test_bad_upload_settings(self) -> None:
        self.assertError({"tftp": {"upload_root": "up"}}, "tftp.upload_root", "absolute path")
        self.assertError({"tftp": {"upload_root": str(self.dir / "missing")}},
                         "tftp.upload_root", "does not exist")
        self.assertError({"tftp": {"max_upload_size": "1G"}}, "tftp.max_upload_size",
                         "whole number")
        self.assertError({"tftp": {"upload_overwrite": "yes"}}, "tftp.upload_overwrite",
                         "true or false")

    def test_example_shows_the_defaults(self) -> None:
        self.assertEqual(load_config(EXAMPLE).tftp, TFTPConfig())

    def test_plain_numbers_are_seconds(self) -> None:
        loaded = parse_config({"tftp": {"timeout": 3, "patience": 45.5}}, "site.yaml")
        self.assertEqual((loaded.tftp.timeout, loaded.tftp.patience), (3.0, 45.5))

    def test_bad_numbers(self) -> None:
        cases = [
            ("max_blksize", 7, "8..65464"),
            ("max_blksize", 65465, "8..65464"),
            ("max_blksize", "1468", "whole number"),
            ("max_windowsize", 0, "1..65535"),
            ("max_windowsize", 65536, "1..65535"),
            ("retries", -1, "0..100"),
            ("retries", True, "whole number"),
            ("max_transfers", 0, "1..100000"),
            ("max_per_client", 1.5, "whole number"),
            ("timeout", "soon", "duration"),
            ("timeout", 0, "more than 0"),
            ("timeout", "5m", "at most 255 seconds"),
            ("patience", False, "duration"),
        ]
        for key, value, problem in cases:
            self.assertError({"tftp": {key: value}}, f"tftp.{key}", problem)

    def test_patience_covers_the_timeout(self) -> None:
        self.assertError({"tftp": {"timeout": 10, "patience": 5}}, "tftp.patience",
                         "at least tftp.timeout (10s)")

    def test_bad_root(self) -> None:
        self.assertError({"tftp": {"root": "srv/tftp"}}, "tftp.root", "absolute path")
        self.assertError({"tftp": {"root": str(self.dir / "missing")}}, "tftp.root",
                         "does not exist")
        self.assertError({"tftp": {"root": str(self.kernel)}}, "tftp.root", "does not exist")
        self.assertError({"tftp": {"root": ""}}, "tftp.root", "non-empty string")

    def test_unknown_key(self) -> None:
        self.assertError({"tftp": {"blksize": 1468}}, "tftp.blksize", "unknown key")
        self.assertError({"tftp": [1]}, "tftp", "must be a mapping")


class TFTPWiringTests(ConfigTestCase):
    """The section reaches the running server."""

    def config(self, tftp: str) -> Any:
        return self.load(f"""\
            server: {{ports: {{dhcp: 0, pxe: 0, tftp: 0, http: 0}}}}
            bootloaders:
              x86-bios: {self.undionly}
              x64-uefi: {self.snponly}
            {tftp}
            """)

    def test_limits_reach_the_protocol(self) -> None:
        config = self.config("tftp: {max_blksize: 1400, max_windowsize: 32, timeout: 2, "
                             "retries: 2, patience: 20, max_transfers: 900, max_per_client: 3}")
        top = makeBootService(config, reactor=MemoryReactorClock())
        protocol = top.getServiceNamed("tftp").protocol  # type: ignore[attr-defined]
        limits = protocol.limits
        self.assertEqual(
            (limits.max_blksize, limits.max_windowsize, limits.timeout, limits.retries,
             limits.patience, protocol.max_transfers, protocol.max_per_client),
            (1400, 32, 2.0, 2, 20.0, 900, 3))

    def test_root_served_after_the_programs(self) -> None:
        root = self.dir / "tftp"
        (root / "pxelinux.cfg").mkdir(parents=True)
        (root / "pxelinux.cfg" / "default").write_bytes(b"DEFAULT linux")
        (root / "undionly.kpxe").write_bytes(b"shadow")
        source = tftp_source(self.config(f"tftp: {{root: {root}}}"))
        peer = ("192.0.2.7", 2000)
        readable = self.successResultOf(source.open("pxelinux.cfg/default", peer))
        self.assertEqual(readable.read(0, 100), b"DEFAULT linux")
        readable.close()
        # The configured boot program keeps its name.
        readable = self.successResultOf(source.open("undionly.kpxe", peer))
        self.assertEqual(readable.read(0, 100), b"undionly.kpxe")
        readable.close()
        self.failureResultOf(source.open("../pxed.yaml", peer), AccessViolation)
        self.failureResultOf(source.open("missing", peer), FileNotFound)

    def test_no_root_serves_only_programs(self) -> None:
        source = tftp_source(self.config(""))
        self.failureResultOf(source.open("pxed.yaml", ("192.0.2.7", 2000)), FileNotFound)

    def test_reload(self) -> None:
        """
        A new root is served after a reload; changed limits are reported as
        needing a restart (the protocol is built once).
        """
        root = self.dir / "tftp"
        root.mkdir()
        (root / "new.cfg").write_bytes(b"new")
        self.config("")
        path = self.dir / "pxed.yaml"
        top = makeBootService(load_config(path), reactor=MemoryReactorClock())
        runtime: Any = top.getServiceNamed("policy")
        peer = ("192.0.2.7", 2000)
        self.failureResultOf(runtime.tftp.open("new.cfg", peer), FileNotFound)
        path.write_text(path.read_text() + f"tftp: {{root: {root}}}\n")
        ok, message = runtime.reload()
        self.assertTrue(ok)
        self.assertNotIn("need a restart", message)
        self.successResultOf(runtime.tftp.open("new.cfg", peer)).close()
        path.write_text(path.read_text().replace(
            f"tftp: {{root: {root}}}", f"tftp: {{root: {root}, max_windowsize: 8}}"))
        ok, message = runtime.reload()
        self.assertTrue(ok)
        self.assertIn("(tftp changes need a restart)", message)
