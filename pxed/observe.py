# -*- test-case-name: tests.test_observe -*-
"""
Where every boot stage is reported: the boot log the protocols write to,
which also keeps the metrics, spots loops and logs what the protocols
themselves cannot say.

The DHCP responder and the HTTP app record stages by MAC as before (this
is an L{IBootLog} in front of the real store); TFTP and HTTP downloads
only know a client's address, so their hooks here find its MAC with a
L{PeerMap} first.  Hooks run on the reactor thread and must not block;
the DHCP ones run for every packet and stay cheap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from pxed import timeline
from pxed.dhcp.logbudget import LogBudget, shown
from pxed.dhcp.packet import MessageType
from pxed.grub.config import file_key, is_beacon, optional_probe
from pxed.metrics import Metrics
from pxed.peers import PeerMap
from pxed.state import BootEvent, IBootLog

if TYPE_CHECKING:
    from pxed.tftp.session import TransferResult

__all__ = ["BootRecorder"]

log = Logger()

#: What the outcome of an answered DHCP request is called, by port.
_ANSWERED = {"proxydhcp": ("offered", "offer"), "bootserver": ("acked", "ack"),
             "dhcp": ("answered", "lease")}

#: HTTP kinds whose successful GETs are stages of a machine's boot.
_FILE_KINDS = {"file", "program", "export"}


_SIMPLE = frozenset({str, int, float, bool, type(None)})


def _plain(value: Any) -> Any:
    """
    Event fields as JSON can carry them (the store may be shared).
    """
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)


def _metric_stage(stage: str, fields: Mapping[str, Any]) -> str:
    if stage in timeline.DHCP_STAGES and fields.get("kind") == "ipxe-script":
        return "ipxe-dhcp"
    return stage if stage in timeline.LABELS else "other"


@implementer(IBootLog)
class BootRecorder:
    """
    An L{IBootLog} that writes to C{store} and, for each event, times the
    stage, counts finished boots and checks for loops.

    @param loop_after: fetching the same boot program (or script) this
        many times without the boot finishing is a loop (reported again at
        each further multiple).
    @param loop_window: ... within this many seconds.
    """

    def __init__(
        self,
        store: IBootLog,
        metrics: Metrics,
        clock: IReactorTime,
        peers: PeerMap | None = None,
        loop_after: int = 3,
        loop_window: float = 600.0,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.peers = peers if peers is not None else PeerMap()
        self.loop_after = loop_after
        self.loop_window = loop_window
        # A client can ask for missing files as fast as it likes.
        self.budget = LogBudget(clock)

    # -- IBootLog -------------------------------------------------------------

    def record(self, mac: str, stage: str, **fields: Any) -> None:
        previous = self.store.last(mac)
        # (Most events carry only strings and numbers: no copy for them.)
        plain = fields if all(type(v) in _SIMPLE for v in fields.values()) else {
            key: _plain(value) for key, value in fields.items()}
        self.store.record(mac, stage, **plain)
        peer = plain.get("peer")
        if stage == "script" and isinstance(peer, str):
            # iPXE names its MAC in the script URL: later downloads from
            # this address are this machine's.
            self.peers.learn(peer, mac)
        current = self.store.last(mac)
        if current is None:  # a store that drops events
            return
        if previous is not None and previous.stage != timeline.BEACON:
            gap = current.when - previous.when
            if gap <= timeline.NEW_BOOT_AFTER:
                self.metrics.stage_reached(_metric_stage(stage, plain), gap)
        if stage == timeline.SCRIPT_ERROR:
            self.metrics.template_error()
        if stage == timeline.BEACON:
            self._finished(mac, current)
        elif timeline.fetch_key(current) is not None:
            self._check_loop(mac, current)

    def events(self, mac: str) -> list[BootEvent]:
        return self.store.events(mac)

    def machines(self) -> list[str]:
        return self.store.machines()

    def last(self, mac: str) -> BootEvent | None:
        return self.store.last(mac)

    def version(self) -> int:
        return self.store.version()

    def _finished(self, mac: str, beacon: BootEvent) -> None:
        boot = timeline.current_boot(self.store.events(mac))
        started = boot[0].when if len(boot) > 1 else None  # not the beacon alone
        self.metrics.boot_finished(beacon.when - started if started is not None else None)

    def _check_loop(self, mac: str, event: BootEvent) -> None:
        count = timeline.repeats(self.store.events(mac), self.loop_window)
        if count < self.loop_after or count % self.loop_after:
            return
        what = timeline.fetch_key(event)
        self.store.record(mac, timeline.LOOP, fetched=what, count=count)
        self.metrics.loop_detected()
        log.warn("{mac}: boot loop: fetched {fetched} {count} times without finishing a boot; "
                 "look at what runs after it", mac=mac, stage=timeline.LOOP, fetched=what,
                 count=count, peer=event.fields.get("peer"))

    # -- DHCP hooks (per packet) ----------------------------------------------

    def dhcp_dropped(self, port: str) -> None:
        self.metrics.dhcp_dropped_datagram(port)

    def dhcp_received(self, port: str) -> float:
        """
        A request is about to be answered: returns the time it arrived.
        """
        return self.clock.seconds()

    def dhcp_answered(self, result: Any, port: str, packet: Any, machine: Any,
                      addr: tuple[str, int], started: float) -> Any:
        """
        The request's answer was sent (C{result} is the answer), or there
        was none (C{None}), or it failed (a L{Failure}, passed on).
        """
        arch = machine.arch.slug
        if isinstance(result, Failure):
            self.metrics.dhcp_request(port, packet.message_type, arch, "error")
            return result
        if result is None:
            self.metrics.dhcp_request(port, packet.message_type, arch, "ignored")
            return result
        outcome, reply = _ANSWERED.get(port, ("answered", "reply"))
        self.metrics.dhcp_request(port, packet.message_type, arch, outcome)
        self.metrics.dhcp_reply(port, reply, self.clock.seconds() - started)
        if not packet.relayed:
            # Port 4011 hears a client from the address it now has.
            self.peers.learn(addr[0], machine.mac)
        return result

    def dhcp_offered(self, port: str, kept: Sequence[tuple[str, Any, tuple[str, int], float]]
                     ) -> None:
        """
        What L{dhcp_answered} counts, for a batch of answers the ProxyDHCP
        fast path sent (L{pxed.dhcp.fastpath}): (MAC, offer, where the
        request came from, seconds to answer) each, all DISCOVERs (the
        only message it answers).
        """
        outcome, reply = _ANSWERED.get(port, ("answered", "reply"))
        by_arch: dict[str, int] = {}
        for mac, offer, addr, seconds in kept:
            arch = offer.machine.arch.slug
            by_arch[arch] = by_arch.get(arch, 0) + 1
            self.metrics.dhcp_reply(port, reply, seconds)
            if not offer.relayed:
                self.peers.learn(addr[0], mac)
        for arch, count in by_arch.items():
            self.metrics.dhcp_request(port, MessageType.DISCOVER, arch, outcome, count)

    # -- TFTP hooks -----------------------------------------------------------

    def tftp_started(self, peer: tuple[str, int], filename: str,
                     options: Mapping[str, str]) -> None:
        mac = self.peers.mac(peer[0])
        if is_beacon(filename):
            return  # recorded as the boot's beacon when asked for
        if mac is None:
            log.debug("TFTP {filename} to {peer}: no MAC known for this address, so it is not "
                      "on any timeline", filename=shown(filename), peer=peer)
            return
        self.record(mac, "tftp-start", file=filename, peer=peer[0], options=dict(options))

    def tftp_ended(self, peer: tuple[str, int], filename: str,
                   result: TransferResult) -> None:
        self.metrics.tftp_transfer(result.outcome, result.bytes_sent, result.retransmits,
                                   result.duration, result.blksize, result.windowsize)
        mac = self.peers.mac(peer[0])
        if mac is None or is_beacon(filename):
            return
        # An upload (an installer's log, say) is no step of a boot, and never
        # part of a loop.  A file a GRUB configuration named is its kernel or
        # initrd, as over HTTP.
        stage, path = "tftp-upload" if result.upload else "tftp-end", {}
        if not result.upload and result.outcome == "complete":
            key = file_key(filename)
            kind = self._named_file(mac, key) if key is not None else None
            if kind is not None:
                stage, path = kind, {"path": key}
        self.record(mac, stage, file=filename, **path,
                    peer=peer[0], outcome=result.outcome,
                    bytes=result.bytes_sent, seconds=round(result.duration, 3),
                    blksize=result.blksize, windowsize=result.windowsize,
                    retransmits=result.retransmits, tsize=result.tsize, error=result.error)

    def tftp_not_found(self, peer: tuple[str, int], filename: str) -> None:
        """
        A read of a file pxed does not serve: where such a boot stops
        (a wrong file name, a chained program's sibling not exported).
        """
        self.metrics.tftp_file_not_found()
        if optional_probe(filename):
            log.debug("{peer}: TFTP file not found: {filename} (an optional probe of shim or "
                      "GRUB)", peer=peer[0], filename=filename)
            return
        mac = self.peers.mac(peer[0])
        if mac is not None:
            self.record(mac, timeline.TFTP_NOT_FOUND, file=shown(filename), peer=peer[0])
        self.budget.info(log, "{who}: TFTP file not found: {filename}", who=mac or peer[0],
                         mac=mac, filename=shown(filename), peer=peer[0],
                         stage=timeline.TFTP_NOT_FOUND)

    # -- HTTP hook ------------------------------------------------------------

    def http_served(self, kind: str, peer: str | None, method: str, path: str, code: int,
                    body_bytes: int, seconds: float) -> None:
        """
        An HTTP request finished (or its client went away).
        """
        self.metrics.http_request(kind, code, body_bytes)
        if kind not in _FILE_KINDS or method != "GET" or not 200 <= code < 300 or not peer:
            return
        mac = self.peers.mac(peer)
        name = path.rsplit("/", 1)[-1]
        if mac is None:
            # Not on any timeline, but still the one line this download gets.
            log.info("{peer}: served {file}, {bytes} bytes in {seconds:.2f}s (no MAC known for "
                     "this address)", peer=peer, file=name, bytes=body_bytes, seconds=seconds,
                     path=path, stage=kind)
            return
        stage = self._file_stage(mac, kind, path)
        self.record(mac, stage, path=path, file=name, peer=peer, bytes=body_bytes,
                    seconds=round(seconds, 3), code=code)
        log.info("{mac}: served {what} {file}, {bytes} bytes in {seconds:.2f}s", mac=mac,
                 stage=stage, what=timeline.LABELS.get(stage, stage), file=name, peer=peer,
                 bytes=body_bytes, seconds=seconds, path=path)

    def _named_file(self, mac: str, key: str) -> str | None:
        for event in reversed(self.store.events(mac)):
            if event.stage == "script":
                kind = (event.fields.get("files") or {}).get(key)
                return str(kind) if kind is not None else None
        return None

    def _file_stage(self, mac: str, kind: str, path: str) -> str:
        if kind != "file":
            return kind
        # What the file is (kernel, initrd ...) is what the latest script
        # this machine fetched said it is.
        for event in reversed(self.store.events(mac)):
            if event.stage == "script":
                files = event.fields.get("files") or {}
                return str(files.get(path, "file"))
        return "file"
