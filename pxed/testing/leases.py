# -*- test-case-name: tests.test_leasestore -*-
"""
The contract every L{pxed.leasestore.ILeaseStore} keeps, as a trial mixin:
pxed runs it on its memory, file and PostgreSQL stores, and a store of
your own can run it too (mix it into a C{TestCase} and give C{make}).
"""

from __future__ import annotations

from typing import Any

from zope.interface.verify import verifyObject

from pxed.dhcp.leases import BOUND, OFFERED, Lease
from pxed.leasestore import ILeaseStore

__all__ = ["ContractMixin"]

A = "192.168.77.10"
B = "192.168.77.11"


class ContractMixin:
    """
    The contract every L{ILeaseStore} keeps; C{make} builds a fresh one.
    """

    def make(self) -> Any:
        raise NotImplementedError

    def settle(self, store: Any) -> None:
        """Let a store that writes in the next reactor turn do so."""

    def result(self, store: Any, d: Any) -> Any:
        self.settle(store)
        return self.successResultOf(d)  # type: ignore[attr-defined]

    def test_interface(self) -> None:
        self.assertTrue(verifyObject(ILeaseStore, self.make()))  # type: ignore[attr-defined]

    def test_claim_free(self) -> None:
        store = self.make()
        lease = Lease("mac:a", "a", A, 100.0, BOUND)
        self.assertTrue(self.result(store, store.claim(lease, 0.0)))  # type: ignore[attr-defined]
        self.assertEqual(self.result(store, store.holder(A)), lease)  # type: ignore[attr-defined]
        self.assertEqual(self.result(store, store.lease_of("mac:a")), lease)  # type: ignore

    def test_claim_held_by_other_refused(self) -> None:
        store = self.make()
        first = Lease("mac:a", "a", A, 100.0, OFFERED)
        self.result(store, store.claim(first, 0.0))
        ok = self.result(store, store.claim(Lease("mac:b", "b", A, 100.0, BOUND), 99.0))
        self.assertFalse(ok)  # type: ignore[attr-defined]
        self.assertEqual(self.result(store, store.holder(A)), first)  # type: ignore
        self.assertIsNone(self.result(store, store.lease_of("mac:b")))  # type: ignore

    def test_claim_expired_of_other(self) -> None:
        store = self.make()
        self.result(store, store.claim(Lease("mac:a", "a", A, 100.0, BOUND), 0.0))
        taken = Lease("mac:b", "b", A, 300.0, BOUND)
        self.assertTrue(self.result(store, store.claim(taken, 100.0)))  # type: ignore
        self.assertIsNone(self.result(store, store.lease_of("mac:a")))  # type: ignore
        self.assertEqual(self.result(store, store.leases()), [taken])  # type: ignore

    def test_claim_replaces_own(self) -> None:
        store = self.make()
        self.result(store, store.claim(Lease("mac:a", "a", A, 100.0, BOUND), 0.0))
        moved = Lease("mac:a", "a", B, 100.0, BOUND)
        self.assertTrue(self.result(store, store.claim(moved, 1.0)))  # type: ignore
        self.assertIsNone(self.result(store, store.holder(A)))  # type: ignore
        self.assertEqual(self.result(store, store.leases()), [moved])  # type: ignore

    def test_release_keeps_record(self) -> None:
        store = self.make()
        self.result(store, store.claim(Lease("mac:a", "a", A, 100.0, BOUND), 0.0))
        self.assertTrue(self.result(store, store.release("mac:a", A, 10.0)))  # type: ignore
        record = self.result(store, store.lease_of("mac:a"))
        self.assertEqual(record.expires, 10.0)  # type: ignore[attr-defined]
        self.assertTrue(self.result(store, store.claim(Lease("mac:b", "b", A, 50.0), 10.0)))  # type: ignore

    def test_release_of_other_refused(self) -> None:
        store = self.make()
        self.result(store, store.claim(Lease("mac:a", "a", A, 100.0, BOUND), 0.0))
        self.assertFalse(self.result(store, store.release("mac:b", A, 10.0)))  # type: ignore
        self.assertEqual(self.result(store, store.holder(A)).expires, 100.0)  # type: ignore
