"""
Tests for L{pxed.leasestore} and L{pxed.leasefile}: the claim contract of L{ILeaseStore}, in
memory and in an atomically rewritten, fsync'd file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial import unittest

from pxed.dhcp.leases import BOUND, OFFERED, Lease
from pxed.leasefile import FileLeaseStore, LeaseFileError, journal_path, read_lease_file
from pxed.leasestore import MemoryLeaseStore
from pxed.testing.leases import ContractMixin

A = "192.168.77.10"
B = "192.168.77.11"


class MemoryLeaseStoreTests(ContractMixin, unittest.TestCase):
    def make(self) -> MemoryLeaseStore:
        return MemoryLeaseStore()


class FileLeaseStoreTests(ContractMixin, unittest.TestCase):
    def setUp(self) -> None:
        self.path = Path(self.mktemp())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.clock = Clock()

    def make(self) -> FileLeaseStore:
        return FileLeaseStore(self.path, reactor=self.clock)

    def settle(self, store: Any) -> None:
        self.clock.advance(0)

    def test_bound_lease_durable_before_it_fires(self) -> None:
        """
        A bound lease's Deferred fires only once the file holds it; a new
        store (a restarted pxed) reads it back.
        """
        store = self.make()
        lease = Lease("mac:a", "52:54:00:00:00:0a", A, 100.0, BOUND)
        d = store.claim(lease, 0.0)
        self.assertNoResult(d)
        self.clock.advance(0)
        self.assertTrue(self.successResultOf(d))
        self.assertEqual(read_lease_file(self.path), [lease])
        again = FileLeaseStore(self.path, reactor=self.clock)
        self.assertEqual(self.successResultOf(again.lease_of("mac:a")), lease)

    def test_one_save_per_turn(self) -> None:
        store = self.make()
        ds = [store.claim(Lease(f"mac:{i}", "m", f"192.168.77.{i}", 100.0, BOUND), 0.0)
              for i in range(1, 50)]
        self.clock.advance(0)
        self.assertEqual(store.saves, 1)
        self.assertTrue(all(self.successResultOf(d) for d in ds))
        self.assertEqual(len(read_lease_file(self.path)), 49)

    def test_offers_not_written(self) -> None:
        store = self.make()
        self.assertTrue(self.successResultOf(store.claim(Lease("mac:a", "a", A, 9.0, OFFERED),
                                                         0.0)))
        self.clock.advance(0)
        self.assertEqual(store.saves, 0)

    def test_no_temporary_files_left(self) -> None:
        store = self.make()
        store.claim(Lease("mac:a", "a", A, 100.0, BOUND), 0.0)
        self.clock.advance(0)
        self.assertEqual(sorted(p.name for p in self.path.parent.iterdir()),
                         [self.path.name, self.path.name + ".journal"])

    def test_write_failure_fails_the_claim(self) -> None:
        store = self.make()
        self.path.parent.chmod(0o500)
        self.addCleanup(self.path.parent.chmod, 0o700)
        import os
        if os.geteuid() == 0:
            # root writes anyway: make the target a directory instead.
            self.path.mkdir()
        d = store.claim(Lease("mac:a", "a", A, 100.0, BOUND), 0.0)
        self.clock.advance(0)
        self.failureResultOf(d, OSError)

    def test_bad_files(self) -> None:
        for text in ("{", "[]", '{"version": 2}',
                     '{"version": 1, "leases": [{"client": "x"}]}',
                     '{"version": 1, "leases": [{"client": "x", "mac": "m", "address": '
                     '"255.255.255.255", "expires": 1, "state": "bound"}]}',
                     '{"version": 1, "leases": [{"client": "x", "mac": "m", "address": '
                     '"10.0.0.1", "expires": 1, "state": "weird"}]}'):
            self.path.write_text(text)
            with self.assertRaises(LeaseFileError) as caught:
                self.make()
            self.assertIn(str(self.path), str(caught.exception))

    def test_missing_file_is_empty(self) -> None:
        self.assertEqual(self.successResultOf(self.make().leases()), [])

    def test_file_format(self) -> None:
        store = self.make()
        store.claim(Lease("mac:a", "52:54:00:00:00:0a", A, 100.5, BOUND), 0.0)
        self.clock.advance(0)
        data = json.loads(self.path.read_text())
        self.assertEqual(data, {"version": 1, "generation": 1, "leases": [
            {"client": "mac:a", "mac": "52:54:00:00:00:0a", "address": A, "expires": 100.5,
             "state": "bound"}]})
        self.assertEqual(journal_path(self.path).read_text(), '{"generation": 1}\n')

    def test_journal_then_compaction(self) -> None:
        """
        After the first snapshot, changes are journal lines; once the
        journal is longer than the leases (and compact_after), a new
        snapshot generation replaces it.  Every state is read back whole.
        """
        store = FileLeaseStore(self.path, reactor=self.clock, compact_after=5)
        store.claim(Lease("mac:0", "m", "192.168.77.100", 100.0, BOUND), 0.0)
        self.clock.advance(0)
        self.assertEqual(store.generation, 1)
        for i in range(1, 5):
            store.claim(Lease(f"mac:{i}", "m", f"192.168.77.{100 + i}", 100.0, BOUND), 0.0)
            self.clock.advance(0)
        lines = journal_path(self.path).read_text().splitlines()
        self.assertEqual(len(lines), 5)  # header and four leases
        self.assertEqual(len(read_lease_file(self.path)), 5)
        store.release("mac:1", "192.168.77.101", 50.0)
        self.clock.advance(0)
        self.assertEqual(store.generation, 2)  # five journal lines: compacted
        leases = {lease.client: lease for lease in read_lease_file(self.path)}
        self.assertEqual(leases["mac:1"].expires, 50.0)
        self.assertEqual(len(leases), 5)
        again = FileLeaseStore(self.path, reactor=self.clock)
        self.assertEqual(set(self.successResultOf(again.leases())),
                         set(read_lease_file(self.path)))

    def test_torn_last_line_and_old_journal(self) -> None:
        """
        A crash may cut the journal's last line short: that change was never
        confirmed and is left out.  A journal of an older generation (a
        crash between a snapshot and its new journal) is already in the
        snapshot and is not replayed.
        """
        store = self.make()
        store.claim(Lease("mac:a", "a", A, 100.0, BOUND), 0.0)
        self.clock.advance(0)
        store.claim(Lease("mac:b", "b", B, 100.0, BOUND), 0.0)
        self.clock.advance(0)
        journal = journal_path(self.path)
        with journal.open("a") as f:
            f.write('{"client": "mac:c", "mac"')
        self.assertEqual({lease.client for lease in read_lease_file(self.path)},
                         {"mac:a", "mac:b"})
        # Restarted: the first write starts a new generation, dropping the
        # torn line for good.
        again = self.make()
        again.save()
        again.claim(Lease("mac:c", "c", "192.168.77.12", 100.0, BOUND), 0.0)
        self.clock.advance(0)
        self.assertEqual({lease.client for lease in read_lease_file(self.path)},
                         {"mac:a", "mac:b", "mac:c"})
        journal.write_text('{"generation": 1}\n' + json.dumps(
            {"client": "mac:z", "mac": "z", "address": "192.168.77.99", "expires": 1.0,
             "state": "bound"}) + "\n")
        self.assertNotIn("mac:z", {lease.client for lease in read_lease_file(self.path)})

    def test_bad_journal_line(self) -> None:
        store = self.make()
        store.claim(Lease("mac:a", "a", A, 100.0, BOUND), 0.0)
        self.clock.advance(0)
        with journal_path(self.path).open("a") as f:
            f.write("garbage\n")
        with self.assertRaises(LeaseFileError):
            read_lease_file(self.path)


class WriterThreadTests(unittest.TestCase):
    """
    The file store as pxed runs it: fsyncs in a thread of its own, with
    the real reactor.
    """

    timeout = 20

    @defer.inlineCallbacks
    def test_batches_and_close(self) -> Any:
        path = Path(self.mktemp())
        path.parent.mkdir(parents=True, exist_ok=True)
        store = FileLeaseStore(path, compact_after=10)
        store.start_writer()
        try:
            first = [store.claim(Lease(f"mac:{i}", "m", f"192.168.77.{i}", 100.0, BOUND), 0.0)
                     for i in range(1, 30)]
            # A second batch while the first is being written.
            second = [store.claim(Lease(f"mac:{i}", "m", f"192.168.77.{i}", 100.0, BOUND), 0.0)
                      for i in range(30, 60)]
            results = yield defer.gatherResults(first + second)
            self.assertTrue(all(results))
            self.assertEqual(len(read_lease_file(path)), 59)
            late = store.release("mac:5", "192.168.77.5", 50.0)
        finally:
            yield store.close()
        self.assertTrue(late.called)
        leases = {lease.client: lease for lease in read_lease_file(path)}
        self.assertEqual(leases["mac:5"].expires, 50.0)
        self.assertEqual(journal_path(path).read_text().count("\n"), 1)  # only the header


class JournalProperties(unittest.TestCase):
    """
    Hypothesis: whatever claims and releases happen, and whenever the
    journal is compacted, what the files hold once the writes are
    confirmed is exactly the table in memory; a torn line a crash leaves
    at the journal's end changes nothing.
    """

    @settings(max_examples=100, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(st.lists(st.tuples(st.sampled_from(["claim", "release", "decline"]),
                              st.integers(0, 4), st.integers(0, 4), st.integers(0, 3)),
                    max_size=40),
           st.integers(2, 6))
    def test_files_hold_what_was_confirmed(self, steps: list[tuple[str, int, int, int]],
                                           compact_after: int) -> None:
        path = Path(self.mktemp())
        path.parent.mkdir(parents=True, exist_ok=True)
        clock = Clock()
        store = FileLeaseStore(path, reactor=clock, compact_after=compact_after)
        now = 0.0
        for op, who, where, batch in steps:
            client, address = f"mac:{who}", f"192.168.77.{10 + where}"
            if op == "claim":
                store.claim(Lease(client, client, address, now + 100, BOUND), now)
            elif op == "decline":
                store.claim(Lease(f"declined:{address}", "", address, now + 600, "declined"),
                            now)
            else:
                store.release(client, address, now)
            now += 10
            if batch == 0:
                continue  # written with the next ones, in one turn
            clock.advance(0)
            memory = set(self.successResultOf(store.leases()))
            self.assertEqual(set(read_lease_file(path)), memory)
            with journal_path(path).open("a") as f:
                f.write('{"client": "torn')  # a crash in the middle of a line
            self.assertEqual(set(read_lease_file(path)), memory)
            # The restarted server drops the torn line with a new snapshot.
            store = FileLeaseStore(path, reactor=clock, compact_after=compact_after)
            store.save()
            self.assertEqual(set(self.successResultOf(store.leases())), memory)
