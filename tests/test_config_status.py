"""
Tests for L{pxed.config.status}: the C{status:} section.
"""

from __future__ import annotations

from twisted.trial import unittest

from pxed.config import StatusConfig, parse_config
from tests.fixtures import ConfigTestCase


class StatusSectionTests(ConfigTestCase):
    def test_defaults(self) -> None:
        loaded = parse_config({}, "site.yaml")
        self.assertEqual(loaded.status, StatusConfig())
        self.assertEqual((loaded.status.page, loaded.status.api, loaded.status.metrics),
                         ("/_/status", True, True))

    def test_everything(self) -> None:
        loaded = self.load("""\
            status:
              page: /ops/boots/
              api: true
              metrics: false
              history: {machines: 100, events: 64}
              loops: {after: 5, within: 2m}
            """)
        self.assertEqual(loaded.status, StatusConfig(
            page="/ops/boots", api=True, metrics=False, machines=100, events=64, loop_after=5,
            loop_window=120.0))

    def test_page_off(self) -> None:
        for off in (False, None):
            loaded = parse_config({"status": {"page": off}}, "site.yaml")
            self.assertIsNone(loaded.status.page)
        loaded = parse_config({"status": {"page": False, "api": False}}, "site.yaml")
        self.assertEqual((loaded.status.page, loaded.status.api), (None, False))

    def test_page_needs_the_api(self) -> None:
        self.assertError({"status": {"api": False}}, "status.page", "set status.api to true")

    def test_bad_paths(self) -> None:
        for path in ("status", "/a b", "/../x", "/x?y", ""):
            self.assertError({"status": {"page": path}}, "status.page")
        for taken in ("/_/machines", "/metrics", "/_/file/x", "/_/booting", "/_", "/_/"):
            self.assertError({"status": {"page": taken}}, "status.page", "is taken by")

    def test_bad_values(self) -> None:
        self.assertError({"status": {"metrics": "yes"}}, "status.metrics", "true or false")
        self.assertError({"status": {"history": {"machines": 0}}}, "status.history.machines",
                         "at least 1")
        self.assertError({"status": {"history": {"events": 4}}}, "status.history.events",
                         "at least 16")
        self.assertError({"status": {"loops": {"after": 1}}}, "status.loops.after", "at least 2")
        self.assertError({"status": {"loops": {"within": "soon"}}}, "status.loops.within",
                         "duration")
        self.assertError({"status": {"colour": "red"}}, "status.colour", "unknown key")
        self.assertError({"status": {"history": {"days": 3}}}, "status.history.days",
                         "unknown key")


class FileURLTests(unittest.TestCase):
    def test_api_file_urls(self) -> None:
        from pxed.config.reader import ConfigError, Reader
        from pxed.config.status import parse_status

        reader = Reader("f.yaml")
        self.assertTrue(parse_status(reader, {}).api_file_urls)
        status = parse_status(reader, {"api": {"file_urls": False}})
        self.assertEqual((status.api, status.api_file_urls), (True, False))
        with self.assertRaises(ConfigError) as caught:
            parse_status(reader, {"api": {"files": False}})
        self.assertEqual(caught.exception.key, "status.api.files")
