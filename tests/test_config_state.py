"""
Tests for L{pxed.config.state}: the C{state:} section.
"""

from __future__ import annotations

import socket

from pxed.config import StateConfig, parse_config
from pxed.config.state import describe_url
from tests.fixtures import ConfigTestCase


class StateSectionTests(ConfigTestCase):
    def test_default_is_nothing_shared(self) -> None:
        state = parse_config({}, "site.yaml").state
        self.assertIsNone(state.url)
        self.assertEqual(state.instance, socket.gethostname().split(".")[0])

    def test_everything(self) -> None:
        loaded = self.load("""\
            state:
              url: postgresql://pxed@db.example:5433/boot?sslmode=verify-full&passfile=/etc/pxed/pgpass
              instance: rack-1
              batch: 500ms
              poll: 5s
              keep: 7d
              claim: 15m
            """)
        self.assertEqual(loaded.state, StateConfig(
            url="postgresql://pxed@db.example:5433/boot?sslmode=verify-full&"
                "passfile=/etc/pxed/pgpass",
            instance="rack-1", batch=0.5, poll=5.0, keep=7 * 86400.0, claim=900.0))

    def test_conninfo_string(self) -> None:
        loaded = parse_config({"state": {"url": "host=db dbname=pxed user=pxed"}}, "site.yaml")
        self.assertEqual(loaded.state.url, "host=db dbname=pxed user=pxed")

    def test_bad_url(self) -> None:
        self.assertError({"state": {"url": "host='unterminated"}}, "state.url",
                         "not a PostgreSQL connection string or URL")
        self.assertError({"state": {"url": "mysql://db/pxed"}}, "state.url",
                         "must be a postgresql:// URL")
        self.assertError({"state": {"url": ""}}, "state.url", "non-empty string")

    def test_bad_values(self) -> None:
        self.assertError({"state": {"instance": "two words"}}, "state.instance", "'two words'")
        self.assertError({"state": {"keep": "forever"}}, "state.keep", "number of days")
        self.assertError({"state": {"batch": 0}}, "state.batch", "more than 0")
        self.assertError({"state": {"cache": 1}}, "state.cache", "unknown key")

    def test_not_with_a_state_file(self) -> None:
        self.assertError({"state": {"url": "postgresql://db/pxed"},
                          "policy": {"state_file": "/tmp/pxed-state.json"}},
                         "policy.state_file", "not used with state.url")

    def test_describe_hides_the_password(self) -> None:
        self.assertEqual(describe_url("postgresql://pxed:secret@db:6000/boot"), "db:6000/boot")
        self.assertEqual(describe_url("dbname=boot password=secret"), "local socket:5432/boot")
