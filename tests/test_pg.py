"""
Tests for L{pxed.pg}: the shared state on a real PostgreSQL that the tests
start themselves (see L{pxed.testing.postgres}), two pxed's stores in one reactor.
No mocks of the database.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from pxed.config import Config, ConfigError, parse_config
from pxed.machine import Machine, architecture
from pxed.metrics import Metrics
from pxed.pg import SharedState, open_shared_state
from pxed.pg.schema import SCHEMA_VERSION
from pxed.policy import BootRequest, Rule, RulePolicy
from pxed.policy.match import MacMatcher, Match
from pxed.signing import Signer
from pxed.store import StateUnavailable
from pxed.testing.postgres import PASSWORD_ROLE, PostgresServer, free_port, shared_server

MAC = "52:54:00:12:00:01"
OTHER = "52:54:00:12:00:02"


def sleep(seconds: float) -> defer.Deferred[None]:
    return deferLater(reactor, seconds, lambda: None)  # type: ignore[arg-type]


class PgTestCase(unittest.TestCase):
    """
    One PostgreSQL server for the test run, one fresh database per test.
    """

    server: PostgresServer

    def setUp(self) -> None:
        self.server = shared_server()
        self.url = self.server.create_database(f"t{uuid.uuid4().hex[:12]}")
        base = Path(self.mktemp()).absolute()
        base.mkdir()
        for name in ("undionly.kpxe", "snponly.efi"):
            (base / name).write_bytes(b"x")
        self.bootloaders = {"x86-bios": str(base / "undionly.kpxe"),
                            "x64-uefi": str(base / "snponly.efi")}

    def config(self, instance: str, url: str | None = None, **state: Any) -> Config:
        return parse_config({"bootloaders": self.bootloaders,
                             "state": {"url": url or self.url, "instance": instance, **state}},
                            f"{instance}.yaml")

    def open(self, instance: str, start: bool = True, **state: Any) -> SharedState:
        shared = open_shared_state(self.config(instance, **state), reactor, Metrics())
        if start:
            shared.service.startService()
            self.addCleanup(lambda: shared.service.stopService() if shared.service.running
                            else None)
        return shared

    def sql(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            cur = conn.execute(query, args or None)
            return cur.fetchall() if cur.description else []


class SchemaTests(PgTestCase):
    def test_created_and_versioned(self) -> None:
        self.open("a", start=False)
        self.assertEqual(self.sql("SELECT version FROM pxed_schema"), [(SCHEMA_VERSION,)])
        self.open("b", start=False)  # a second pxed migrates nothing
        self.assertEqual(self.sql("SELECT count(*) FROM pxed_schema"), [(1,)])

    def test_newer_schema_is_one_line(self) -> None:
        self.open("a", start=False)
        self.sql("UPDATE pxed_schema SET version = %s", SCHEMA_VERSION + 1)
        error = self.assertRaises(ConfigError, self.open, "b", start=False)
        self.assertEqual(error.key, "state.url")
        self.assertIn(f"schema is version {SCHEMA_VERSION + 1}, newer than this pxed knows",
                      str(error))
        self.assertNotIn("\n", str(error))

    def test_unreachable_at_start(self) -> None:
        port = free_port()
        url = f"postgresql://pxed:secret@127.0.0.1:{port}/pxed?connect_timeout=2"
        error = self.assertRaises(ConfigError, open_shared_state,
                                  self.config("a", url=url), reactor, Metrics())
        self.assertIn(f"cannot use the state database 127.0.0.1:{port}/pxed", str(error))
        self.assertIn("configure policy.signing.key_file", str(error))
        self.assertNotIn("secret", str(error))
        self.assertNotIn("\n", str(error))


class ConnectionTests(PgTestCase):
    def test_password_from_a_file(self) -> None:
        """
        The URL is libpq's: here a password file (passfile=), with a role
        the server asks a password of.
        """
        dbname = self.url.rsplit("/", 1)[1]
        self.sql(f"DO $$ BEGIN CREATE ROLE {PASSWORD_ROLE} LOGIN; EXCEPTION WHEN "
                 "duplicate_object THEN NULL; END $$")
        self.sql(f"ALTER ROLE {PASSWORD_ROLE} PASSWORD 'pw-7f3a'")
        self.sql(f'ALTER DATABASE "{dbname}" OWNER TO {PASSWORD_ROLE}')
        passfile = Path(self.mktemp()).absolute()
        passfile.write_text(f"127.0.0.1:{self.server.port}:{dbname}:{PASSWORD_ROLE}:pw-7f3a\n")
        passfile.chmod(0o600)
        url = (f"postgresql://{PASSWORD_ROLE}@127.0.0.1:{self.server.port}/{dbname}"
               f"?passfile={passfile}")
        shared = open_shared_state(self.config("a", url=url), reactor, Metrics())
        self.assertGreaterEqual(len(shared.store.signing_key()), 32)
        passfile.write_text("")
        error = self.assertRaises(ConfigError, open_shared_state, self.config("b", url=url),
                                  reactor, Metrics())
        self.assertIn("cannot use the state database 127.0.0.1", str(error))
        self.assertIn("password", str(error))
        self.assertNotIn("\n", str(error))


class StoreTests(PgTestCase):
    def test_signing_key_shared(self) -> None:
        a, b = self.open("a", start=False), self.open("b", start=False)
        key = a.store.signing_key()
        self.assertGreaterEqual(len(key), 32)
        self.assertEqual(b.store.signing_key(), key)
        token = Signer(a.store.signing_key()).sign("once", f"{MAC} install")
        self.assertEqual(Signer(b.store.signing_key()).verify("once", token), f"{MAC} install")

    @defer.inlineCallbacks
    def test_once_flags_shared(self) -> Any:
        a, b = self.open("a"), self.open("b")
        self.assertFalse((yield b.store.once_done(MAC, "install")))
        yield a.store.mark_once(MAC, "install")
        self.assertTrue((yield b.store.once_done(MAC, "install")))
        self.assertFalse((yield b.store.once_done(OTHER, "install")))
        self.assertEqual(self.sql("SELECT state, instance FROM pxed_once"), [("done", "a")])
        yield b.store.clear_once(MAC)
        self.assertFalse((yield a.store.once_done(MAC, "install")))

    @defer.inlineCallbacks
    def test_claims(self) -> Any:
        a, b = self.open("a"), self.open("b", claim=0.5)
        self.assertTrue((yield a.store.claim_once(MAC, "install")))
        self.assertFalse((yield b.store.claim_once(MAC, "install")))
        self.assertTrue((yield a.store.claim_once(MAC, "install")))  # its own retry
        self.assertTrue((yield b.store.claim_once(OTHER, "install")))
        yield sleep(0.6)  # a's claim is older than b's claim window: abandoned
        self.assertTrue((yield b.store.claim_once(MAC, "install")))
        yield b.store.mark_once(MAC, "install")
        self.assertFalse((yield a.store.claim_once(MAC, "install")))
        self.assertFalse((yield b.store.claim_once(MAC, "install")))

    @defer.inlineCallbacks
    def test_claims_race(self) -> Any:
        """
        Many claims at once from two pxed: exactly one pxed gets it.
        """
        a, b = self.open("a"), self.open("b")
        results = yield defer.gatherResults(
            [s.store.claim_once(MAC, "install") for _ in range(8) for s in (a, b)])
        winners = {("a", "b")[i % 2] for i, won in enumerate(results) if won}
        self.assertEqual(len(winners), 1)

    @defer.inlineCallbacks
    def test_policy_claims_at_the_script(self) -> Any:
        a, b = self.open("a"), self.open("b")
        from pxed.policy import BootSpec

        spec = BootSpec(kernel="/k")
        rules = [Rule("install", Match((MacMatcher((MAC,)),)), spec, once=True)]
        machine = Machine(mac=MAC, arch=architecture(7), ipxe=True)
        script = BootRequest(machine, "script")
        dhcp = BootRequest(machine, "proxydhcp")
        through_a, through_b = RulePolicy(rules, a.store), RulePolicy(rules, b.store)
        self.assertIsNotNone((yield through_a.boot_spec(script)))
        self.assertIsNone((yield through_b.boot_spec(script)))  # a's install under way
        self.assertIsNotNone((yield through_b.boot_spec(dhcp)))  # DHCP claims nothing
        self.assertIsNotNone((yield through_a.boot_spec(script)))
        yield a.store.mark_once(MAC, "install")
        self.assertIsNone((yield through_b.boot_spec(dhcp)))
        self.assertIsNone((yield through_a.boot_spec(script)))


class TimelineTests(PgTestCase):
    @defer.inlineCallbacks
    def test_each_sees_the_others(self) -> Any:
        a, b = self.open("a"), self.open("b")
        a.boot_log.record(MAC, "proxydhcp", arch="x64-uefi")
        b.boot_log.record(MAC, "script", peer="10.0.0.5")
        before = b.boot_log.version()
        yield defer.gatherResults([a.boot_log.flush(), b.boot_log.flush()])
        yield defer.gatherResults([a.boot_log.refresh(), b.boot_log.refresh()])
        for log in (a.boot_log, b.boot_log):
            events = log.events(MAC)
            self.assertEqual([(e.stage, e.fields["pxed"]) for e in events],
                             [("proxydhcp", "a"), ("script", "b")])
        self.assertGreater(b.boot_log.version(), before)
        yield b.boot_log.refresh()  # nothing new: nothing twice
        self.assertEqual(len(b.boot_log.events(MAC)), 2)

    @defer.inlineCallbacks
    def test_a_late_commit_is_not_missed(self) -> Any:
        """
        A batch that commits after a poll began (so the poll could not see
        it) is read by the next poll.
        """
        b = self.open("b")
        yield b.boot_log.refresh()
        with psycopg.connect(self.url, autocommit=True) as conn:
            with conn.transaction():
                conn.execute("INSERT INTO pxed_events (mac, stage, at, instance, writer) "
                             "VALUES (%s, 'proxydhcp', %s, 'c', 'other')", (MAC, time.time()))
                yield b.boot_log.refresh()
                self.assertEqual(b.boot_log.events(MAC), [])
        yield b.boot_log.refresh()
        self.assertEqual([e.fields["pxed"] for e in b.boot_log.events(MAC)], ["c"])

    @defer.inlineCallbacks
    def test_batched(self) -> Any:
        a = self.open("a")
        for i in range(1000):
            a.boot_log.record(f"52:54:00:13:{i // 256:02x}:{i % 256:02x}", "proxydhcp")
        yield a.boot_log.flush()
        self.assertEqual(self.sql("SELECT count(*), count(DISTINCT xact) FROM pxed_events"),
                         [(1000, 1)])
        metrics = a.boot_log.metrics
        self.assertEqual((metrics.events_written._value.get(),
                          metrics.event_batches._value.get()), (1000, 1))

    def test_queue_is_bounded(self) -> None:
        from pxed.pg import bootlog

        self.patch(bootlog, "MAX_PENDING", 3)
        a = self.open("a", batch=3600)
        for i in range(5):
            a.boot_log.record(MAC, f"stage{i}")
        self.assertEqual([e.stage for e in a.boot_log.pending], ["stage2", "stage3", "stage4"])
        self.assertEqual(a.boot_log.metrics.events_dropped._value.get(), 2)
        self.assertEqual(len(a.boot_log.events(MAC)), 5)  # memory keeps them all

    @defer.inlineCallbacks
    def test_stop_writes_the_queue_and_a_restart_loads_it(self) -> Any:
        a = self.open("a", batch=3600)
        a.boot_log.record(MAC, "proxydhcp")
        a.boot_log.record(MAC, "booting")
        yield a.service.stopService()
        again = self.open("a")
        self.assertEqual([e.stage for e in again.boot_log.events(MAC)], ["proxydhcp", "booting"])


class FaultTests(PgTestCase):
    @defer.inlineCallbacks
    def test_outage_and_recovery(self) -> Any:
        """
        With the server stopped: machines that need no shared state are
        answered, a 'once' machine gets nothing (counted, logged once),
        events wait; when it is back, all of it recovers by itself.
        """
        a = self.open("a")
        from pxed.policy import BootSpec

        rules = [Rule("install", Match((MacMatcher((MAC,)),)), BootSpec(kernel="/k"), once=True),
                 Rule("rest", Match(), BootSpec(kernel="/other"))]
        policy = RulePolicy(rules, a.store)
        registry = a.store.metrics.once_refused
        errors: list[str] = []

        def observe(event: dict[str, Any]) -> None:
            if event.get("log_namespace") == "pxed.pg.db":
                errors.append(event["log_format"])

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        self.server.stop()
        try:
            other = BootRequest(Machine(mac=OTHER, arch=architecture(7), ipxe=True), "script")
            once = BootRequest(Machine(mac=MAC, arch=architecture(7), ipxe=True), "script")
            # A machine the once rule does not match never waits for the database.
            answer = self.successResultOf(policy.boot_spec(other))
            self.assertEqual(answer.kernel, "/other")
            self.assertIsNone((yield policy.boot_spec(once)))
            # Once the outage is known, no request waits for the server.
            self.assertIsNone(self.successResultOf(policy.boot_spec(once)))
            self.assertEqual(registry._value.get(), 2)
            a.boot_log.record(OTHER, "script")
            yield a.boot_log.flush()
            self.assertEqual(len(a.boot_log.pending), 1)
            yield self.assertFailure(a.store.mark_once(OTHER, "x"), StateUnavailable)
            self.assertEqual(a.store.metrics.up._value.get(), 0)
        finally:
            self.server.start()
        down = [e for e in errors if e.startswith("state database unreachable")]
        self.assertEqual(len(down), 1)
        for _ in range(40):  # the poll finds it back; the pool reconnects by itself
            yield a.boot_log.refresh()
            if not a.store.db.down:
                break
            yield sleep(0.5)
        self.assertIsNotNone((yield policy.boot_spec(once)))
        yield a.boot_log.flush()
        yield a.boot_log.refresh()  # also retries the unrecorded mark
        self.assertEqual(self.sql("SELECT stage FROM pxed_events"), [("script",)])
        self.assertEqual(self.sql("SELECT mac, rule FROM pxed_once WHERE state = 'done'"),
                         [(OTHER, "x")])
        self.assertEqual(a.store.metrics.up._value.get(), 1)
        self.assertTrue(any(e.startswith("state database {where} answers again") for e in errors))

    @defer.inlineCallbacks
    def test_slow_database_delays_only_the_once_check(self) -> Any:
        a = self.open("a")
        from pxed.policy import BootSpec

        rules = [Rule("install", Match((MacMatcher((MAC,)),)), BootSpec(kernel="/k"), once=True),
                 Rule("rest", Match(), BootSpec(kernel="/other"))]
        policy = RulePolicy(rules, a.store)
        with psycopg.connect(self.url, autocommit=True) as conn:
            with conn.transaction():
                conn.execute("LOCK TABLE pxed_once, pxed_events IN ACCESS EXCLUSIVE MODE")
                once = policy.boot_spec(
                    BootRequest(Machine(mac=MAC, arch=architecture(7), ipxe=True), "script"))
                yield sleep(0.3)
                self.assertNoResult(once)
                other = policy.boot_spec(
                    BootRequest(Machine(mac=OTHER, arch=architecture(7), ipxe=True), "script"))
                self.assertEqual(self.successResultOf(other).kernel, "/other")
                a.boot_log.record(OTHER, "script")  # never waits
                self.assertEqual(a.boot_log.last(OTHER).stage, "script")
        self.assertIsNotNone((yield once))


class StartWithoutDatabaseTests(PgTestCase):
    """
    A pxed started while the server is down, with the signing key in its
    configuration: it starts in the outage state and recovers by itself.
    """

    def keyed(self, instance: str) -> Config:
        key = Path(self.mktemp()).absolute()
        key.write_text("k" * 40)
        key.chmod(0o600)
        return parse_config({"bootloaders": self.bootloaders,
                             "state": {"url": self.url, "instance": instance, "poll": "200ms"},
                             "policy": {"signing": {"key_file": str(key)}}},
                            f"{instance}.yaml")

    def start_down(self, instance: str) -> tuple[SharedState, list[str]]:
        messages: list[str] = []

        def observe(event: dict[str, Any]) -> None:
            if event.get("log_namespace", "").startswith("pxed.pg"):
                messages.append(event["log_format"])

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        shared = open_shared_state(self.keyed(instance), reactor, Metrics())
        shared.service.startService()
        self.addCleanup(lambda: shared.service.stopService() if shared.service.running
                        else None)
        return shared, messages

    @defer.inlineCallbacks
    def test_starts_in_outage_and_recovers(self) -> Any:
        from pxed.policy import BootSpec

        self.server.stop()
        try:
            a, messages = self.start_down("a")
            self.assertTrue(a.store.db.down)
            self.assertEqual(a.store.metrics.up._value.get(), 0)
            self.assertEqual([m for m in messages if m.startswith("started without")],
                             [messages[0]])
            rules = [Rule("install", Match((MacMatcher((MAC,)),)), BootSpec(kernel="/k"),
                          once=True),
                     Rule("rest", Match(), BootSpec(kernel="/other"))]
            policy = RulePolicy(rules, a.store)
            other = BootRequest(Machine(mac=OTHER, arch=architecture(7), ipxe=True), "script")
            once = BootRequest(Machine(mac=MAC, arch=architecture(7), ipxe=True), "script")
            self.assertEqual(self.successResultOf(policy.boot_spec(other)).kernel, "/other")
            # Known outage from the start: no request waits for the server.
            self.assertIsNone(self.successResultOf(policy.boot_spec(once)))
            self.assertEqual(a.store.metrics.once_refused._value.get(), 1)
            a.boot_log.record(OTHER, "script")
            yield a.boot_log.flush()
            self.assertEqual(len(a.boot_log.pending), 1)
            yield a.boot_log.refresh()
            self.assertTrue(a.store.db.down)
        finally:
            self.server.start()
        # The poll reaches it (the pool's reconnection backs off for up to
        # 12 s), migrates, and only then ends the outage.
        deadline = time.monotonic() + 40
        while a.store.db.down and time.monotonic() < deadline:
            yield a.boot_log.refresh()
            yield sleep(0.2)
        self.assertFalse(a.store.db.down)
        self.assertEqual(self.sql("SELECT version FROM pxed_schema"), [(SCHEMA_VERSION,)])
        self.assertEqual(a.store.metrics.up._value.get(), 1)
        self.assertEqual(a.store.key, self.sql("SELECT key FROM pxed_signing_key")[0][0])
        self.assertIsNotNone((yield policy.boot_spec(once)))
        yield a.store.mark_once(MAC, "install")
        self.assertEqual(self.sql("SELECT mac, rule, state, instance FROM pxed_once"),
                         [(MAC, "install", "done", "a")])
        yield a.boot_log.flush()
        self.assertEqual(self.sql("SELECT mac, stage FROM pxed_events"), [(OTHER, "script")])

    @defer.inlineCallbacks
    def test_newer_schema_on_return_keeps_the_outage(self) -> Any:
        self.sql("CREATE TABLE pxed_schema (version integer NOT NULL)")
        self.sql("INSERT INTO pxed_schema VALUES (%s)", SCHEMA_VERSION + 1)
        self.server.stop()
        try:
            a, messages = self.start_down("a")
        finally:
            self.server.start()
        too_new: list[str] = []
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            yield a.boot_log.refresh()
            too_new = [m for m in messages if m.startswith("state database {where}: {why}")]
            if too_new:
                break
            yield sleep(0.2)
        self.assertEqual(len(too_new), 1)
        for _ in range(3):  # said once, not every poll
            yield a.boot_log.refresh()
        self.assertEqual(len([m for m in messages if m == too_new[0]]), 1)
        self.assertTrue(a.store.db.down)
        self.assertEqual(a.store.metrics.up._value.get(), 0)
        self.assertEqual(self.sql("SELECT version FROM pxed_schema"), [(SCHEMA_VERSION + 1,)])
        self.assertEqual(self.sql("SELECT count(*) FROM pg_tables WHERE tablename = "
                                  "'pxed_once'"), [(0,)])
        yield self.assertFailure(a.store.once_done(MAC, "install"), StateUnavailable)


class WiringTests(PgTestCase):
    def test_full_dhcp_mode_keeps_leases_in_the_database(self) -> None:
        from pxed.pg.leases import PgLeaseStore
        from pxed.service import makeBootService

        config = parse_config({
            "bootloaders": self.bootloaders,
            "dhcp": {"mode": "full", "range": "192.168.77.10-192.168.77.50", "ping": False,
                     "lease_file": str(Path(self.mktemp()).absolute())},
            "state": {"url": self.url, "instance": "a"}}, "a.yaml")
        top: Any = makeBootService(config, reactor=reactor)
        keeper = top.getServiceNamed("dhcp").protocol.keeper
        self.assertIsInstance(keeper.store, PgLeaseStore)
        self.assertIsInstance(top.getServiceNamed("policy").store,
                              type(open_shared_state(config, reactor, Metrics()).store))


class BeaconTests(PgTestCase):
    def beacon(self, web: Any, signer: Signer) -> Any:
        from twisted.web.test.requesthelper import DummyRequest

        from pxed.http.app import BOOT_PURPOSE
        from pxed.policy.request import once_token

        request = DummyRequest([b"_", b"booting"])
        request.args = {b"mac": [MAC.encode()],
                        b"boot": [signer.sign(BOOT_PURPOSE, MAC).encode()],
                        b"once": [once_token(signer, MAC, "install").encode()]}
        return request, web.beacon(request)

    @defer.inlineCallbacks
    def test_committed_before_ok_or_503(self) -> Any:
        """
        The beacon answers once the flag is committed; with the database
        down it answers 503, and the flag is written when it is back.
        """
        from pxed.http.app import BootHTTP, FileCatalog
        from pxed.state import MemoryBootLog

        a = self.open("a")
        signer = Signer(a.store.signing_key())
        web = BootHTTP(RulePolicy([]), FileCatalog(signer), MemoryBootLog(), store=a.store)
        request, answer = self.beacon(web, signer)
        self.assertEqual((yield answer), b"ok\n")
        self.assertEqual(self.sql("SELECT state FROM pxed_once"), [("done",)])
        self.sql("DELETE FROM pxed_once")
        self.server.stop()
        try:
            request, answer = self.beacon(web, signer)
            self.assertEqual((yield answer), b"once flag not recorded\n")
            self.assertEqual(request.responseCode, 503)
            self.assertTrue(self.successResultOf(a.store.once_done(MAC, "install")))
        finally:
            self.server.start()
        for _ in range(40):
            yield a.boot_log.refresh()  # (retries the mark once the database answers)
            if not a.store.unrecorded:
                break
            yield sleep(0.5)
        self.assertEqual(self.sql("SELECT state, instance FROM pxed_once"), [("done", "a")])
