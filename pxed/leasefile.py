# -*- test-case-name: tests.test_leasestore -*-
"""
The lease file: pxed's own L{ILeaseStore}, a JSON snapshot and a journal
of the changes since, so that a restart or C{kill -9} loses no lease a
client was given (see L{FileLeaseStore}).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from pxed.atomicfile import write_atomically
from pxed.dhcp.leases import OFFERED, STATES, Lease
from pxed.leasestore import ILeaseStore, MemoryLeaseStore, lease_json
from pxed.net import is_unicast
from pxed.reactors import given_or_global

__all__ = ["FileLeaseStore", "LeaseFileError", "read_lease_file", "journal_path",
           "write_atomically"]


class LeaseFileError(Exception):
    """
    The lease file exists but cannot be used; the message says why.
    """


def _lease(item: Any, where: str) -> Lease:
    lease = Lease(str(item["client"]), str(item["mac"]), str(item["address"]),
                  float(item["expires"]), str(item["state"]))
    if (lease.state not in STATES or not is_unicast(lease.address)
            or not math.isfinite(lease.expires)):
        raise ValueError(f"{where} is invalid")
    return lease


def journal_path(path: Path) -> Path:
    return path.with_name(path.name + ".journal")


def _read_snapshot(path: Path) -> tuple[list[Lease], int]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return [], 0
    except (OSError, UnicodeDecodeError) as e:
        raise LeaseFileError(f"{path}: cannot read: {e}") from None
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("version") != 1:
            raise ValueError("not a pxed lease file (version 1)")
        leases = [_lease(item, f"lease {i}") for i, item in enumerate(data.get("leases", []))]
        generation = int(data.get("generation", 0))
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise LeaseFileError(f"{path}: {e}") from None
    return leases, generation


def _read_journal(path: Path, generation: int) -> list[Lease]:
    """
    The changes journaled since the snapshot of C{generation}: none if the
    journal belongs to an older snapshot (a crash between writing the
    snapshot and starting its journal).  A last line cut short by a crash
    is not a change that was ever confirmed, so it is left out.
    """
    try:
        lines = path.read_bytes().split(b"\n")
    except FileNotFoundError:
        return []
    except OSError as e:
        raise LeaseFileError(f"{path}: cannot read: {e}") from None
    complete, last = lines[:-1], lines[-1]
    if not complete:
        return []
    try:
        header = json.loads(complete[0])
        if not isinstance(header, dict) or header.get("generation") != generation:
            return []
        return [_lease(json.loads(line), f"line {i + 2}")
                for i, line in enumerate(complete[1:])]
    except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError) as e:
        raise LeaseFileError(f"{path}: {e}") from None
    finally:
        del last  # a torn line: never confirmed


def read_lease_file(path: Path) -> list[Lease]:
    """
    The leases kept at C{path} (its snapshot and journal, see
    L{FileLeaseStore}); none if there is no file yet.

    @raise LeaseFileError: a file exists but is unreadable or not pxed's.
    """
    snapshot, generation = _read_snapshot(path)
    store = MemoryLeaseStore(snapshot)
    for lease in _read_journal(journal_path(path), generation):
        store._put(lease)
    return list(store._by_address.values())


@implementer(ILeaseStore)
class FileLeaseStore(MemoryLeaseStore):
    """
    The memory store, kept in a JSON snapshot (C{path}) and a journal of
    the changes since (C{path}.journal, one JSON line per lease written).

    A change that must be durable is appended to the journal, and the
    Deferreds of every such change made in one turn of the reactor fire
    after one fsync of it, in the next turn: a boot storm's ACKs cost one
    small write and one fsync per batch of datagrams read, whatever the
    number of leases.  Once the journal is longer than the leases (and at
    least C{compact_after} lines), a new snapshot is written atomically
    (L{write_atomically}) with a new generation number, and the journal
    starts again under that number; a journal whose number is not the
    snapshot's is already in it, so a crash at any point loses nothing
    confirmed.  This is how ISC dhcpd keeps its lease file, too.

    @raise LeaseFileError: from the constructor, if the files exist but
        are unusable.
    """

    def __init__(self, path: str | os.PathLike[str], reactor: Any = None,
                 compact_after: int = 1000) -> None:
        self.path = Path(path)
        self.journal = journal_path(self.path)
        snapshot, self.generation = _read_snapshot(self.path)
        super().__init__(snapshot)
        replayed = _read_journal(self.journal, self.generation)
        for lease in replayed:
            self._put(lease)
        reactor = given_or_global(reactor)
        self._reactor = reactor
        self.compact_after = compact_after
        self._lines = len(replayed)
        self._changed: list[Lease] = []
        self._waiting: list[tuple[Deferred[bool], bool]] = []
        self._flush: IDelayedCall | None = None
        self._fd: int | None = None
        self._pool: ThreadPool | None = None
        self._writing: Deferred[None] | None = None
        #: How many times changes were made durable (for tests and metrics).
        self.saves = 0

    def _text(self) -> str:
        leases = sorted(self._by_address.values(), key=lambda lease: lease.address)
        return json.dumps({"version": 1, "generation": self.generation,
                           "leases": [lease_json(lease) for lease in leases]}, indent=0) + "\n"

    def save(self) -> None:
        """
        Write a new snapshot of every lease and start an empty journal
        (at start-up, when the journal is long, and on shutdown).

        @raise OSError: the files cannot be written.
        """
        self.generation += 1
        self._write_snapshot(self._text(), self.generation)

    def _write_snapshot(self, text: str, generation: int) -> None:
        # In the writer thread when there is one: touches only the files.
        write_atomically(self.path, text)
        self._close_journal()
        fd = os.open(self.journal, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        try:
            os.write(fd, json.dumps({"generation": generation}).encode() + b"\n")
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._lines = 0
        self.saves += 1

    def _write_lines(self, data: bytes, count: int) -> None:
        assert self._fd is not None
        os.write(self._fd, data)
        os.fsync(self._fd)
        self._lines += count
        self.saves += 1

    def _job(self, leases: list[Lease]) -> Callable[[], None]:
        """
        What makes C{leases} durable, prepared here (the reactor thread
        owns the table) and run in the writer thread or at once: journal
        lines, or a new snapshot once the journal is long or not open yet.
        """
        if self._fd is None or self._lines + len(leases) >= max(self.compact_after,
                                                                len(self._by_address)):
            self.generation += 1
            return partial(self._write_snapshot, self._text(), self.generation)
        data = b"".join(json.dumps(lease_json(lease), separators=(",", ":")).encode() + b"\n"
                        for lease in leases)
        return partial(self._write_lines, data, len(leases))

    def _close_journal(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def start_writer(self) -> None:
        """
        Write and fsync in a thread of our own from now on, so the reactor
        goes on reading requests while a batch of ACKs waits for its fsync
        (the next batch is written as soon as that one is done).
        """
        if self._pool is None:
            self._pool = ThreadPool(1, 1, name="pxed-leases")
            self._pool.start()

    def close(self) -> Deferred[None]:
        """
        Finish the writes under way, write a final snapshot and close the
        journal and the writer thread (when pxed stops).
        """
        if self._writing is not None:
            d: Deferred[None] = Deferred()
            self._writing.addBoth(lambda _: self._reactor.callLater(0, self._closed, d))
            return d
        return self._closed(Deferred())

    def _closed(self, d: Deferred[None]) -> Deferred[None]:
        if self._flush is not None and self._flush.active():
            self._flush.cancel()
        pool, self._pool = self._pool, None
        self._save_waiting()  # synchronous now: no pool
        try:
            self.save()
            d.callback(None)
        except OSError:
            d.errback(Failure())
        finally:
            self._close_journal()
            if pool is not None:
                pool.stop()
        return d

    def _durable(self, lease: Lease, value: bool) -> Deferred[bool]:
        d: Deferred[bool] = Deferred()
        self._changed.append(lease)
        self._waiting.append((d, value))
        if self._flush is None and self._writing is None:
            self._flush = self._reactor.callLater(0, self._save_waiting)
        return d

    def _save_waiting(self) -> None:
        self._flush = None
        if not self._waiting:
            return
        waiting, self._waiting = self._waiting, []
        changed, self._changed = self._changed, []
        job = self._job(changed)
        if self._pool is None:
            try:
                job()
            except OSError:
                self._answer(waiting, Failure())
            else:
                self._answer(waiting, None)
            return
        self._writing = deferToThreadPool(self._reactor, self._pool, job)
        self._writing.addBoth(self._written, waiting)

    def _written(self, result: Any, waiting: list[tuple[Deferred[bool], bool]]) -> None:
        self._writing = None
        self._answer(waiting, result if isinstance(result, Failure) else None)
        if self._waiting and self._flush is None:
            self._flush = self._reactor.callLater(0, self._save_waiting)

    @staticmethod
    def _answer(waiting: list[tuple[Deferred[bool], bool]], failure: Failure | None) -> None:
        for d, value in waiting:
            if failure is not None:
                d.errback(failure)
            else:
                d.callback(value)

    def claim(self, lease: Lease, now: float) -> Deferred[bool]:
        if not self._claim(lease, now):
            return succeed(False)
        if lease.state == OFFERED:
            return succeed(True)
        return self._durable(lease, True)

    def release(self, client: str, address: str, now: float) -> Deferred[bool]:
        if not self._release(client, address, now):
            return succeed(False)
        record = self._by_address[address]
        return self._durable(record, True)
