# -*- test-case-name: tests.test_metrics -*-
"""
pxed's Prometheus metrics, served at C{/metrics}.

Every metric defined here is updated somewhere (C{tests.test_metrics}
proves each one moves), and only through the methods of L{Metrics}, so the
protocols never touch C{prometheus_client} themselves.

Some are updated for every DHCP packet, and pxed must answer thousands of
those a second: label lookups are done once per label combination and the
bound children kept in dicts, and label values that come from the wire
are folded into a bounded set (an unknown architecture code is
C{unknown}, not C{unknown-4711}), so a scan cannot grow the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from pxed.machine import ARCHITECTURE_SLUGS

__all__ = ["Metrics", "CONTENT_TYPE"]

CONTENT_TYPE = CONTENT_TYPE_LATEST

_LATENCY = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_TRANSFER = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_STAGE = (0.01, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
_BOOT = (5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0)
_BLKSIZE = (512, 1024, 1408, 1428, 1456, 1468, 4096, 8192, 16384, 65464)
_WINDOWSIZE = (1, 2, 4, 8, 16, 32, 64)

#: DHCP message types that reach the policy, by code.
_MESSAGE_TYPES = {1: "discover", 3: "request", 8: "inform"}

_Child = TypeVar("_Child")


def _bound(cache: dict[Any, _Child], metric: Any, key: tuple[str, ...]) -> _Child:
    child = cache.get(key)
    if child is None:
        child = cache[key] = metric.labels(*key)
    return child


def arch_label(slug: str) -> str:
    """
    The architecture as a metric label: one of the registry's names, or
    C{unknown}.
    """
    return slug if slug in ARCHITECTURE_SLUGS else "unknown"


def message_type_label(code: int | None) -> str:
    return _MESSAGE_TYPES.get(code, "other") if code is not None else "other"


class Metrics:
    """
    pxed's metrics in a registry of their own (so that several pxed
    services in one process, or tests, do not collide).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry if registry is not None else CollectorRegistry()
        self.dhcp_requests = Counter(
            "pxed_dhcp_requests", "Network-boot DHCP requests that reached the boot policy, by "
            "port (proxydhcp, bootserver), message type, client architecture and outcome "
            "(offered, acked, ignored: the policy or configuration has no answer, error).",
            ["port", "type", "arch", "outcome"], registry=r)
        self.dhcp_dropped = Counter(
            "pxed_dhcp_dropped", "Datagrams dropped before the policy: malformed, replies of other "
            "servers, message types the port does not answer, clients that are not "
            "network-booting, other interfaces.", ["port"], registry=r)
        self.dhcp_replies = Counter(
            "pxed_dhcp_replies", "DHCP replies sent, by port and message type (offer, ack).",
            ["port", "type"], registry=r)
        self.dhcp_latency = Histogram(
            "pxed_dhcp_reply_seconds", "Time from a request's arrival to its reply being sent.",
            ["port"], buckets=_LATENCY, registry=r)
        self.tftp_transfers = Counter(
            "pxed_tftp_transfers", "TFTP transfers ended, by outcome (complete, aborted, timeout, "
            "error).", ["outcome"], registry=r)
        self.tftp_bytes = Counter(
            "pxed_tftp_bytes", "File bytes acknowledged in TFTP transfers (by the client; "
            "by pxed for uploads).", registry=r)
        self.tftp_retransmits = Counter(
            "pxed_tftp_retransmits", "TFTP packets (DATA, OACK) sent more than once.", registry=r)
        self.tftp_seconds = Histogram(
            "pxed_tftp_transfer_seconds", "Duration of TFTP transfers.", buckets=_TRANSFER,
            registry=r)
        self.tftp_blksize = Histogram(
            "pxed_tftp_blksize_bytes", "Negotiated TFTP block size of each transfer (512 when "
            "the client asked for none).", buckets=_BLKSIZE, registry=r)
        self.tftp_windowsize = Histogram(
            "pxed_tftp_windowsize_blocks", "Negotiated TFTP window size (RFC 7440) of each "
            "transfer (1 when the client asked for none).", buckets=_WINDOWSIZE, registry=r)
        self.tftp_active = Gauge(
            "pxed_tftp_active_transfers", "TFTP transfers in progress, including files being "
            "opened.", registry=r)
        self.tftp_not_found = Counter(
            "pxed_tftp_not_found", "TFTP reads of files pxed does not serve (answered with "
            "ERROR 1): a wrong boot file name, a missing sibling of a chained program.",
            registry=r)
        self.template_errors = Counter(
            "pxed_template_errors", "iPXE scripts that could not be rendered (the machine got "
            "a script that says so and stops).", registry=r)
        self.http_requests = Counter(
            "pxed_http_requests", "HTTP requests answered, by kind (script, file, program, "
            "export, beacon, status, api, metrics, admin, other) and status code.",
            ["kind", "code"], registry=r)
        self.http_bytes = Counter(
            "pxed_http_bytes", "HTTP response body bytes sent, by kind.", ["kind"], registry=r)
        self.stage_seconds = Histogram(
            "pxed_boot_stage_seconds", "Time a machine took to reach each stage of its boot from "
            "the stage before.", ["stage"], buckets=_STAGE, registry=r)
        self.boot_seconds = Histogram(
            "pxed_boot_seconds", "Time from a machine's first DHCP request of a boot to its "
            "beacon.", buckets=_BOOT, registry=r)
        self.booted = Counter(
            "pxed_machines_booted", "Boots that reached their beacon: the kernel and initrds "
            "were loaded and started.", registry=r)
        self.loops = Counter(
            "pxed_boot_loops", "Boot loops detected: a machine fetching the same boot program "
            "again and again without its boot finishing.", registry=r)
        self._dhcp_requests: dict[tuple[Any, ...], Any] = {}
        self._dhcp_dropped: dict[tuple[str, ...], Any] = {}
        self._dhcp_replies: dict[tuple[str, ...], Any] = {}
        self._dhcp_latency: dict[tuple[str, ...], Any] = {}
        self._tftp_transfers: dict[tuple[str, ...], Any] = {}
        self._http_requests: dict[tuple[str, ...], Any] = {}
        self._http_bytes: dict[tuple[str, ...], Any] = {}
        self._stage_seconds: dict[tuple[str, ...], Any] = {}

    # -- DHCP (per packet: cheap) ---------------------------------------------

    def dhcp_dropped_datagram(self, port: str) -> None:
        _bound(self._dhcp_dropped, self.dhcp_dropped, (port,)).inc()

    def dhcp_request(self, port: str, message_type: int | None, arch: str, outcome: str,
                     count: int = 1) -> None:
        if arch not in ARCHITECTURE_SLUGS:
            arch = "unknown"
        # Keyed by the raw values: the labels are worked out once per key.
        key = (port, message_type, arch, outcome)
        child = self._dhcp_requests.get(key)
        if child is None:
            child = self._dhcp_requests[key] = self.dhcp_requests.labels(
                port, message_type_label(message_type), arch, outcome)
        child.inc(count)

    def dhcp_reply(self, port: str, reply_type: str, seconds: float) -> None:
        _bound(self._dhcp_replies, self.dhcp_replies, (port, reply_type)).inc()
        _bound(self._dhcp_latency, self.dhcp_latency, (port,)).observe(seconds)

    # -- DHCP leases (pxed as the DHCP server) --------------------------------

    def track_leases(self, store: Any, now: Callable[[], float]) -> Callable[[str], None]:
        """
        Add the lease metrics (only pxed as the DHCP server has them): a
        counter of lease events, and, for a store in this process, a
        gauge of the leases held, read at each scrape.

        @return: the function to call with each event's name (offered,
            acked, nak, released, declined, exhausted).
        """
        events = Counter(
            "pxed_dhcp_lease_events", "What happened to leases: offered, acked, nak (a request "
            "refused), released, declined, exhausted (no free address to offer).", ["event"],
            registry=self.registry)
        if store is not None:
            held = Gauge("pxed_dhcp_leases", "Addresses held now (bound or offered).",
                         registry=self.registry)
            held.set_function(lambda: sum(1 for lease in store._by_address.values()
                                          if lease.held(now())))
        cache: dict[tuple[str, ...], Any] = {}
        return lambda event: _bound(cache, events, (event,)).inc()

    # -- TFTP -----------------------------------------------------------------

    def track_tftp(self, active: Callable[[], int]) -> None:
        """
        Read the number of transfers in progress from C{active} at each
        scrape: the server's own count is the truth, including transfers
        whose file is still being opened.
        """
        self.tftp_active.set_function(active)

    def tftp_transfer(self, outcome: str, bytes_sent: int, retransmits: int, seconds: float,
                      blksize: int, windowsize: int) -> None:
        _bound(self._tftp_transfers, self.tftp_transfers, (outcome,)).inc()
        self.tftp_bytes.inc(bytes_sent)
        self.tftp_retransmits.inc(retransmits)
        self.tftp_seconds.observe(seconds)
        self.tftp_blksize.observe(blksize)
        self.tftp_windowsize.observe(windowsize)

    def tftp_file_not_found(self) -> None:
        self.tftp_not_found.inc()

    # -- HTTP -----------------------------------------------------------------

    def template_error(self) -> None:
        self.template_errors.inc()

    def http_request(self, kind: str, code: int, body_bytes: int) -> None:
        _bound(self._http_requests, self.http_requests, (kind, str(code))).inc()
        _bound(self._http_bytes, self.http_bytes, (kind,)).inc(body_bytes)

    # -- boots ----------------------------------------------------------------

    def stage_reached(self, stage: str, seconds: float) -> None:
        _bound(self._stage_seconds, self.stage_seconds, (stage,)).observe(max(0.0, seconds))

    def boot_finished(self, seconds: float | None) -> None:
        self.booted.inc()
        if seconds is not None:
            self.boot_seconds.observe(max(0.0, seconds))

    def loop_detected(self) -> None:
        self.loops.inc()

    # -- exposition -----------------------------------------------------------

    def exposition(self) -> bytes:
        """
        The registry in Prometheus' text format.
        """
        return generate_latest(self.registry)

    def names(self) -> list[str]:
        """
        The names of the metric families defined (for tests and docs).
        """
        return sorted(m.name for m in self.registry.collect())
