# -*- test-case-name: tests.test_leasestore -*-
"""
Where DHCP leases live: behind L{ILeaseStore}, so one pxed keeps them in
a file and several pxed serving one LAN share them in a database.

The whole contract rests on one atomic operation, L{ILeaseStore.claim}:
an address goes to a client only if nobody else holds it, decided inside
the store.  Two servers that pick the same free address at the same
moment both try to claim it; one wins, the other tries its next
candidate.  That is what makes "never two clients on one address" hold
for any number of pxed sharing a store.

Two implementations ship: in memory (one process, lost on restart) and a
JSON file: a snapshot rewritten atomically (temporary file, fsync, rename,
fsync of the directory, as the state file in L{pxed.store}) and a journal
of the changes since, fsync'd before any ACK that depends on it is sent,
so a restart or C{kill -9} loses no bound lease.
Offers are kept in memory only: losing one costs the client a NAK and a
new DISCOVER, not a doubled address.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

from pxed.dhcp.leases import OFFERED, STATES, Lease
from pxed.net import is_unicast

__all__ = ["ILeaseStore", "MemoryLeaseStore", "FileLeaseStore", "LeaseFileError",
           "read_lease_file"]


class LeaseFileError(Exception):
    """
    The lease file exists but cannot be used; the message says why.
    """


class ILeaseStore(Interface):
    """
    The DHCP leases of every address pxed hands out.

    A store holds at most one record per address and at most one per
    client.  A record is a L{pxed.dhcp.leases.Lease}; it is I{held} while
    C{now < expires}, and stays in the store after it expires (so a client
    that comes back gets its old address) until the address is claimed by
    another client.  Times are POSIX seconds from the caller's clock:
    servers sharing a store must keep their clocks in step (NTP), and a
    skew of a few seconds only shortens or lengthens leases by as much.

    Every method returns a L{Deferred}; a store that cannot do what it is
    asked (a database down, a disk full) fails the Deferred, and the
    server then sends nothing (the client retransmits).  Everything a
    method changes is applied completely or not at all.
    """

    def claim(lease: Lease, now: float) -> Deferred[bool]:
        """
        Give C{lease.address} to C{lease.client}, atomically.

        Succeeds (fires C{True}) if and only if no record for
        C{lease.address} belongs to another client and is held at C{now}.
        Then, as one step: every other record of C{lease.client} is
        deleted (a client has one address), the record of the address (the
        client's own, or another client's expired one) is replaced, and
        C{lease} is stored.  Otherwise nothing changes and it fires
        C{False}.  Claiming again is how a lease is renewed, an offer
        turned into a bound lease, or an address marked declined (with a
        pseudo-client, L{pxed.dhcp.leases.declined_client}).

        When it fires C{True} for a lease whose C{state} is not
        C{"offered"}, the lease is durable: it survives a restart or crash
        of this process (for a shared store: of any server).
        """

    def release(client: str, address: str, now: float) -> Deferred[bool]:
        """
        End C{client}'s lease on C{address} at C{now} (DHCPRELEASE, or an
        offer the client did not take): its C{expires} becomes at most
        C{now}, so the address is free, but the record stays, so the
        client is offered the same address if it comes back.  Fires
        whether a record of C{client} on C{address} existed.
        """

    def lease_of(client: str) -> Deferred[Lease | None]:
        """
        C{client}'s record, held or expired, or C{None}.
        """

    def holder(address: str) -> Deferred[Lease | None]:
        """
        The record of C{address}, held or expired, or C{None}.
        """

    def leases() -> Deferred[list[Lease]]:
        """
        Every record, held or expired, in no particular order: what the
        allocator chooses free addresses from, and what the status page
        and C{/_/leases} show.  A snapshot: a L{claim} may still lose to
        another server after it.
        """


def _lease_json(lease: Lease) -> dict[str, Any]:
    return {"client": lease.client, "mac": lease.mac, "address": lease.address,
            "expires": lease.expires, "state": lease.state}


@implementer(ILeaseStore)
class MemoryLeaseStore:
    """
    Leases in two dictionaries: correct for one process, forgotten on
    restart.  Every method completes before it returns (its Deferred has
    fired), which is what makes L{claim} atomic here.
    """

    def __init__(self, leases: list[Lease] | None = None) -> None:
        self._by_address: dict[str, Lease] = {}
        self._by_client: dict[str, Lease] = {}
        for lease in leases or ():
            self._put(lease)

    def _put(self, lease: Lease) -> None:
        previous = self._by_client.pop(lease.client, None)
        if previous is not None:
            del self._by_address[previous.address]
        other = self._by_address.pop(lease.address, None)
        if other is not None:
            del self._by_client[other.client]
        self._by_address[lease.address] = lease
        self._by_client[lease.client] = lease

    def _claim(self, lease: Lease, now: float) -> bool:
        record = self._by_address.get(lease.address)
        if record is not None and record.client != lease.client and record.held(now):
            return False
        self._put(lease)
        return True

    def claim(self, lease: Lease, now: float) -> Deferred[bool]:
        return succeed(self._claim(lease, now))

    def _release(self, client: str, address: str, now: float) -> bool:
        record = self._by_address.get(address)
        if record is None or record.client != client:
            return False
        if record.expires > now:
            self._put(Lease(record.client, record.mac, record.address, now, record.state))
        return True

    def release(self, client: str, address: str, now: float) -> Deferred[bool]:
        return succeed(self._release(client, address, now))

    def lease_of(self, client: str) -> Deferred[Lease | None]:
        return succeed(self._by_client.get(client))

    def holder(self, address: str) -> Deferred[Lease | None]:
        return succeed(self._by_address.get(address))

    def leases(self) -> Deferred[list[Lease]]:
        return succeed(list(self._by_address.values()))


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


def write_atomically(path: Path, text: str, mode: int = 0o644) -> None:
    """
    Replace C{path} by C{text} so that a crash at any moment leaves the
    old content or the new, never a mix: write a temporary file beside
    it, fsync, rename over, fsync the directory.
    """
    directory = path.parent
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


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
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self._reactor = reactor
        self.compact_after = compact_after
        self._lines = len(replayed)
        self._changed: list[Lease] = []
        self._waiting: list[tuple[Deferred[bool], bool]] = []
        self._flush: IDelayedCall | None = None
        self._fd: int | None = None
        #: How many times changes were made durable (for tests and metrics).
        self.saves = 0

    def _text(self) -> str:
        leases = sorted(self._by_address.values(), key=lambda lease: lease.address)
        return json.dumps({"version": 1, "generation": self.generation,
                           "leases": [_lease_json(lease) for lease in leases]}, indent=0) + "\n"

    def save(self) -> None:
        """
        Write a new snapshot of every lease and start an empty journal
        (at start-up, when the journal is long, and on shutdown).

        @raise OSError: the files cannot be written.
        """
        self.generation += 1
        write_atomically(self.path, self._text())
        self._close_journal()
        fd = os.open(self.journal, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        try:
            os.write(fd, json.dumps({"generation": self.generation}).encode() + b"\n")
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._lines = 0
        self.saves += 1

    def _append(self, leases: list[Lease]) -> None:
        if self._fd is None:
            self.save()
            return
        data = b"".join(json.dumps(_lease_json(lease), separators=(",", ":")).encode() + b"\n"
                        for lease in leases)
        os.write(self._fd, data)
        os.fsync(self._fd)
        self._lines += len(leases)
        self.saves += 1
        if self._lines >= max(self.compact_after, len(self._by_address)):
            self.save()

    def _close_journal(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        """
        Write a final snapshot and close the journal (when pxed stops).
        """
        if self._flush is not None and self._flush.active():
            self._flush.cancel()
            self._save_waiting()
        try:
            self.save()
        finally:
            self._close_journal()

    def _durable(self, lease: Lease, value: bool) -> Deferred[bool]:
        d: Deferred[bool] = Deferred()
        self._changed.append(lease)
        self._waiting.append((d, value))
        if self._flush is None:
            self._flush = self._reactor.callLater(0, self._save_waiting)
        return d

    def _save_waiting(self) -> None:
        self._flush = None
        waiting, self._waiting = self._waiting, []
        changed, self._changed = self._changed, []
        try:
            self._append(changed)
        except OSError:
            failure = Failure()
            for d, _ in waiting:
                d.errback(failure)
            return
        for d, value in waiting:
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
