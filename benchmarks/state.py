# -*- test-case-name: tests.test_state_benchmark -*-
"""
What sharing pxed's state through PostgreSQL costs, next to the single-pxed
stores (state file, timelines in memory), in one process run:

    python -m benchmarks.state                    # as root; prints a table
    python -m benchmarks.state --machines 1000 --repeat 3 --json out.json

A throw-away PostgreSQL (Debian's binaries, fsync on: real commits) is
started on 127.0.0.1 and removed afterwards.  Measured, each C{--repeat}
times, the stores taking turns (the table shows medians):

  - offers: C{--machines} relayed PXE DISCOVERs handed at once to the
    ProxyDHCP protocol that L{pxed.service.makeBootService} builds (its
    responder, policy, boot recorder), replies counted at its transport
    (no sockets: this is pxed's own cost).  C{plain}: the default rule
    only, so the database is only written (timeline events, batched);
    C{once}: a 'once' rule matches every machine, so each DISCOVER asks
    the store whether the machine was installed (one query each);
  - storm: a boot storm's timeline, 10 events for each of the machines
    (offer, 4011 ACK, TFTP, iPXE DHCP, script, kernel, initrd, beacon),
    recorded through the boot recorder; time on the reactor thread, then
    until the database holds every event, and the transactions it took;
    next to the same events written one INSERT and commit each, which is
    the database storm that batching avoids;
  - marks: once flags committed (the beacon's work), state file against
    PostgreSQL;
  - leases: bound leases given to that many clients at once (full DHCP
    mode's durable step), the lease file against PostgreSQL;
  - round trips: one query through L{pxed.pg.db.Database} (a thread pool
    in front of psycopg's pool, what pxed uses) against psycopg's asyncio
    pool on a plain asyncio loop (the alternative), concurrency 8.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred, gatherResults
from twisted.internet.task import deferLater, react

__all__ = ["main", "ratio"]

EVENTS: list[tuple[str, dict[str, Any]]] = [("proxydhcp", {"arch": "x64-uefi"}), ("bootserver", {}),
          ("tftp-start", {"file": "snponly.efi"}),
          ("tftp-end", {"file": "snponly.efi", "outcome": "complete", "bytes": 200000}),
          ("proxydhcp", {"kind": "ipxe-script"}), ("script", {"files": {"/k": "kernel"}}),
          ("kernel", {"path": "/k", "bytes": 9000000}), ("initrd", {"path": "/i"}),
          ("booting", {}), ("proxydhcp", {"arch": "x64-uefi"})]


def _scalar(conn: Any, query: str) -> Any:
    """The one value C{query} returns."""
    row = conn.execute(query).fetchone()
    assert row is not None, query
    return row[0]


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def _config(workdir: Path, url: str | None, once: bool) -> Any:
    from pxed.config import parse_config

    kernel = workdir / "vmlinuz"
    kernel.write_bytes(b"k")
    loaders = {}
    for slug, name in (("x86-bios", "undionly.kpxe"), ("x64-uefi", "snponly.efi")):
        (workdir / name).write_bytes(b"x")
        loaders[slug] = str(workdir / name)
    data: dict[str, Any] = {
        "server": {"address": "127.0.0.2"},
        "bootloaders": loaders,
        "boot": {"default": {"kernel": str(kernel)}},
        "status": {"history": {"machines": 100000}},
    }
    if once:
        data["policy"] = {"rules": [{"name": "install", "match": {"mac": "02:00:*"},
                                     "once": True, "linux": {"kernel": str(kernel)}}]}
    if url is not None:
        data["state"] = {"url": url, "instance": "bench"}
    else:
        data.setdefault("policy", {})["state_file"] = str(workdir / "state.json")
    return parse_config(data, str(workdir / "pxed.yaml"))


class _Counting:
    """
    The protocol's transport: counts replies, fires when all came.
    """

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.sent = 0
        self.done: Deferred[float] = Deferred()

    def write(self, data: bytes, dest: Any) -> None:
        self.sent += 1
        if self.sent == self.expected:
            self.done.callback(time.perf_counter())


async def offers(reactor: Any, workdir: Path, url: str | None, machines: int,
                 once: bool) -> dict[str, float]:
    from benchmarks.dhcp import discovers
    from pxed.service import makeBootService

    top = makeBootService(_config(workdir, url, once), reactor=reactor)
    state = _start_state(top)
    try:
        protocol = top.getServiceNamed("proxydhcp").protocol  # type: ignore[attr-defined]
        transport = _Counting(machines)
        protocol.transport = transport
        packets = discovers(machines)
        started = time.perf_counter()
        for packet in packets:
            protocol.datagramReceived(packet, ("127.0.0.1", 67))
        finished = await _bounded(reactor, transport.done, 120)
        return {"offers_per_s": machines / (finished - started), "seconds": finished - started}
    finally:
        if state is not None:
            await state.stopService()


def _start_state(top: Any) -> Any:
    for child in top:
        if child.name == "state":
            child.startService()
            return child
    return None


async def _bounded(reactor: Any, d: Deferred[Any], seconds: float) -> Any:
    d.addTimeout(seconds, reactor)
    return await d


async def storm(reactor: Any, url: str, machines: int) -> dict[str, float]:
    """
    The boot storm's timeline through the recorder into PostgreSQL, then
    the same events one transaction each.
    """
    import psycopg

    from pxed.config import parse_config
    from pxed.metrics import Metrics
    from pxed.observe import BootRecorder
    from pxed.pg import open_shared_state
    from pxed.state import MemoryBootLog

    macs = [f"02:00:00:00:{i // 256:02x}:{i % 256:02x}" for i in range(machines)]
    results: dict[str, float] = {}
    # In memory (a single pxed's default): the reactor-thread cost.
    memory = BootRecorder(MemoryBootLog(100000), Metrics(), reactor)
    started = time.perf_counter()
    for stage, fields in EVENTS:
        for mac in macs:
            memory.record(mac, stage, **fields)
    results["memory_record_s"] = time.perf_counter() - started
    # PostgreSQL, batched.
    config = parse_config({"state": {"url": url, "instance": "bench"},
                           "status": {"history": {"machines": 100000}},
                           "bootloaders": {"x86-bios": None, "x64-uefi": None}}, "bench.yaml")
    shared = open_shared_state(config, reactor, Metrics())
    shared.service.startService()
    try:
        log = shared.boot_log
        recorder = BootRecorder(log, Metrics(), reactor)
        with psycopg.connect(url) as conn:
            before = _scalar(conn, "SELECT xact_commit FROM pg_stat_database WHERE datname = "
                                   "current_database()")
        started = time.perf_counter()
        for stage, fields in EVENTS:
            for mac in macs:
                recorder.record(mac, stage, **fields)
        results["pg_record_s"] = time.perf_counter() - started
        # What the batch timer would do a second later, now: the write cost.
        started = time.perf_counter()
        while log.pending:
            await log.flush()
        results["pg_written_s"] = time.perf_counter() - started
        results["pg_batches"] = log.metrics.event_batches._value.get()
        with psycopg.connect(url) as conn:
            after = _scalar(conn, "SELECT xact_commit FROM pg_stat_database WHERE datname = "
                                  "current_database()")
            results["pg_rows"] = _scalar(conn, "SELECT count(*) FROM pxed_events")
        results["pg_commits"] = after - before
    finally:
        await shared.service.stopService()
    # The same events one transaction each: what batching avoids.
    rows = [(mac, stage, time.time(), json.dumps(fields)) for stage, fields in EVENTS
            for mac in macs]
    with psycopg.connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        for row in rows:
            conn.execute("INSERT INTO pxed_events (mac, stage, at, instance, writer, fields) "
                         "VALUES (%s, %s, %s, 'single', 'single', %s)", row)
        results["single_written_s"] = time.perf_counter() - started
    return results


async def marks(reactor: Any, workdir: Path, url: str, machines: int) -> dict[str, float]:
    from pxed.config import parse_config
    from pxed.metrics import Metrics
    from pxed.pg import open_shared_state
    from pxed.store import FileStateStore

    macs = [f"02:00:00:01:{i // 256:02x}:{i % 256:02x}" for i in range(machines)]
    store = FileStateStore(workdir / "marks.json")
    started = time.perf_counter()
    for mac in macs:
        store.mark_once(mac, "install")
    file_s = time.perf_counter() - started
    config = parse_config({"state": {"url": url, "instance": "bench"},
                           "bootloaders": {"x86-bios": None, "x64-uefi": None}}, "bench.yaml")
    shared = open_shared_state(config, reactor, Metrics())
    shared.service.startService()
    try:
        started = time.perf_counter()
        await gatherResults([shared.store.mark_once(mac, "install") for mac in macs])
        pg_s = time.perf_counter() - started
    finally:
        await shared.service.stopService()
    return {"file_marks_per_s": machines / file_s, "pg_marks_per_s": machines / pg_s}


async def leases(reactor: Any, workdir: Path, url: str, machines: int) -> dict[str, float]:
    """
    C{machines} clients each given a bound lease at once: the lease file
    (journal, one fsync per batch) against PostgreSQL (one transaction
    per claim, the address's row locked), full DHCP mode's durable step.
    """
    from prometheus_client import CollectorRegistry

    from pxed.dhcp.leases import BOUND, Lease
    from pxed.leasefile import FileLeaseStore
    from pxed.pg.db import Database, StateMetrics
    from pxed.pg.leases import PgLeaseStore

    now = time.time()
    wanted = [Lease(f"mac:{i}", f"02:00:00:02:{i // 256:02x}:{i % 256:02x}",
                    f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256 + 1}", now + 3600, BOUND)
              for i in range(machines)]
    store = FileLeaseStore(workdir / "leases.json", reactor)
    store.save()
    started = time.perf_counter()
    await gatherResults([store.claim(lease, now) for lease in wanted])
    file_s = time.perf_counter() - started
    await store.close()
    db = Database(url, reactor, StateMetrics(CollectorRegistry()))
    db.startService()
    try:
        from pxed.pg.schema import migrate

        await db.run(migrate)
        shared = PgLeaseStore(db, "bench")
        started = time.perf_counter()
        won = await gatherResults([shared.claim(lease, now) for lease in wanted])
        pg_s = time.perf_counter() - started
        assert all(won)
    finally:
        await db.stopService()
    return {"file_leases_per_s": machines / file_s, "pg_leases_per_s": machines / pg_s}


async def round_trips(reactor: Any, url: str, count: int) -> dict[str, float]:
    """
    One small query C{count} times, 8 at a time: through pxed's thread
    pool, and through psycopg's asyncio pool on an asyncio loop in a
    thread of its own (the same work, the other design).
    """
    import threading

    from prometheus_client import CollectorRegistry

    from pxed.pg.db import Database, StateMetrics

    db = Database(url, reactor, StateMetrics(CollectorRegistry()))
    db.startService()
    try:
        await db.run(lambda conn: conn.execute("SELECT 1").fetchone())  # warm
        started = time.perf_counter()
        for _ in range(count // 8):
            await gatherResults([db.run(lambda conn: conn.execute("SELECT 1").fetchone())
                                 for _ in range(8)])
        threads_s = time.perf_counter() - started
    finally:
        await db.stopService()
    box: dict[str, float] = {}

    async def on_asyncio() -> None:
        from psycopg_pool import AsyncConnectionPool

        async with AsyncConnectionPool(url, min_size=4, max_size=4, open=False) as pool:
            await pool.wait()

            async def one() -> None:
                async with pool.connection() as conn:
                    await (await conn.execute("SELECT 1")).fetchone()

            await one()
            started = time.perf_counter()
            for _ in range(count // 8):
                await asyncio.gather(*(one() for _ in range(8)))
            box["asyncio_s"] = time.perf_counter() - started

    runner = threading.Thread(target=lambda: asyncio.run(on_asyncio()))
    runner.start()
    while runner.is_alive():
        await deferLater(reactor, 0.05, lambda: None)
    return {"threads_per_s": count / threads_s, "asyncio_per_s": count / box["asyncio_s"],
            "threads_us": threads_s / count * 1e6, "asyncio_us": box["asyncio_s"] / count * 1e6}


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


async def run_all(reactor: Any, url_for: Callable[[], str], machines: int, repeat: int,
                  workroot: Path) -> dict[str, Any]:
    results: dict[str, list[dict[str, float]]] = {}
    for n in range(repeat):
        for kind in ("plain", "once"):
            for store in ("file", "pg"):
                workdir = workroot / f"{kind}-{store}-{n}"
                workdir.mkdir()
                url = url_for() if store == "pg" else None
                result = await offers(reactor, workdir, url, machines, kind == "once")
                results.setdefault(f"offers-{kind}-{store}", []).append(result)
        results.setdefault("storm", []).append(await storm(reactor, url_for(), machines))
        workdir = workroot / f"marks-{n}"
        workdir.mkdir()
        results.setdefault("marks", []).append(await marks(reactor, workdir, url_for(),
                                                           machines))
        workdir = workroot / f"leases-{n}"
        workdir.mkdir()
        results.setdefault("leases", []).append(await leases(reactor, workdir, url_for(),
                                                             machines))
        results.setdefault("round_trips", []).append(
            await round_trips(reactor, url_for(), 4000))
    return {name: _median(runs) for name, runs in results.items()}


def report(machines: int, repeat: int, r: dict[str, Any]) -> list[str]:
    lines = [f"{machines} machines, median of {repeat} runs; PostgreSQL with fsync on"]
    for kind in ("plain", "once"):
        f, p = r[f"offers-{kind}-file"], r[f"offers-{kind}-pg"]
        lines.append(f"offers/s ({kind:5}): state file {f['offers_per_s']:9.0f}   PostgreSQL "
                     f"{p['offers_per_s']:9.0f}   PostgreSQL/file "
                     f"{ratio(p['offers_per_s'], f['offers_per_s'])}")
    s = r["storm"]
    events = len(EVENTS) * machines
    lines.append(f"boot storm, {events} timeline events: recording {s['memory_record_s']:.3f}s "
                 f"in memory, {s['pg_record_s']:.3f}s with PostgreSQL "
                 f"({ratio(s['pg_record_s'], s['memory_record_s'])}); written in "
                 f"{s['pg_written_s']:.3f}s, {s['pg_batches']:.0f} batches "
                 f"({s['pg_commits']:.0f} commits in all)")
    lines.append(f"  one INSERT+commit per event instead: {s['single_written_s']:.3f}s, "
                 f"{events} commits ({ratio(s['single_written_s'], s['pg_written_s'])} the "
                 "batched write)")
    m = r["marks"]
    lines.append(f"once marks/s: state file {m['file_marks_per_s']:.0f}   PostgreSQL "
                 f"{m['pg_marks_per_s']:.0f}   PostgreSQL/file "
                 f"{ratio(m['pg_marks_per_s'], m['file_marks_per_s'])}")
    le = r["leases"]
    lines.append(f"bound leases/s: lease file {le['file_leases_per_s']:.0f}   PostgreSQL "
                 f"{le['pg_leases_per_s']:.0f}   PostgreSQL/file "
                 f"{ratio(le['pg_leases_per_s'], le['file_leases_per_s'])}")
    t = r["round_trips"]
    lines.append(f"query round trip (8 at a time): thread pool {t['threads_us']:.0f} us "
                 f"({t['threads_per_s']:.0f}/s), asyncio pool {t['asyncio_us']:.0f} us "
                 f"({t['asyncio_per_s']:.0f}/s); threads/asyncio time "
                 f"{ratio(t['threads_us'], t['asyncio_us'])}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.state", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--machines", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("the benchmark needs root (it runs PostgreSQL as the postgres user)",
              file=sys.stderr)
        return 2
    from twisted.logger import ILogObserver, globalLogBeginner
    from zope.interface import implementer

    from pxed.testing.postgres import PostgresServer

    @implementer(ILogObserver)
    def discard(event: Any) -> None:
        pass

    globalLogBeginner.beginLoggingTo([discard], redirectStandardIO=False)
    server = PostgresServer(durable=True)
    out: dict[str, Any] = {}
    try:
        server.start()

        def url_for() -> str:
            return server.create_database(f"b{uuid.uuid4().hex[:12]}")

        async def body(reactor: Any) -> None:
            with tempfile.TemporaryDirectory(prefix="pxed-state-bench-") as tmp:
                out.update(await run_all(reactor, url_for, args.machines, max(1, args.repeat),
                                         Path(tmp)))

        try:
            react(lambda reactor: ensureDeferred(body(reactor)))
        except SystemExit as e:
            if e.code:
                raise
    finally:
        server.remove()
    for line in report(args.machines, max(1, args.repeat), out):
        print(line)
    if args.json is not None:
        args.json.write_text(json.dumps({"machines": args.machines, "results": out}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
