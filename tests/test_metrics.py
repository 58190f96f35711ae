"""
Tests for L{pxed.metrics}: every metric defined moves.

One machine boots through the service that L{pxed.service.makeBootService}
wires, as UEFI firmware and then iPXE would: its captured DHCP requests go
into the real DHCP protocols (through fake transports: replies are
broadcasts, which must not leave this host), its TFTP downloads are real
UDP on 127.0.0.1 (one of them losing a block, so that the server
retransmits), and its HTTP requests are real on 127.0.0.1.  Then every
metric family in the registry must have moved; a metric added later that
nothing updates fails here.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import treq
from twisted.internet import defer, reactor
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.testing import FakeDatagramTransport, MemoryReactorClock
from twisted.trial import unittest
from twisted.web.client import HTTPConnectionPool

from pxed.config import parse_config
from pxed.dhcp.packet import MessageType, decode, encode
from pxed.metrics import Metrics, arch_label, message_type_label
from pxed.net import PacketInfo
from pxed.service import makeBootService
from pxed.testing.packets import plain
from pxed.tftp import packet as P
from pxed.tftp.client import TFTPError, fetch_result
from tests.pcap import IPXE_UEFI_DISCOVER, OVMF_DISCOVER, OVMF_REQUEST_4011, changed, raw

MAC = "52:54:00:77:00:10"  # the machine in the UEFI capture
BROKEN = "52:54:00:77:00:99"  # its script cannot be rendered
STRANGER = bytes.fromhex("525400990001")
LOCAL = "127.0.0.1"
INFO = PacketInfo(ifindex=1, local=LOCAL, destination="255.255.255.255")


class LossyReader(DatagramProtocol):
    """
    Reads a file by TFTP (no options: 512-byte blocks) and ignores the
    first copy of block 1, so the server has to send it again.
    """

    noisy = False

    def __init__(self, server: tuple[str, int], filename: str) -> None:
        self.server = server
        self.filename = filename
        self.done: defer.Deferred[bytes] = defer.Deferred()
        self.data = b""
        self.block = 0
        self.dropped = False

    def startProtocol(self) -> None:
        assert self.transport is not None
        self.transport.write(P.encode(P.ReadRequest(self.filename, "octet", {})), self.server)

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        packet = P.decode(datagram)
        assert self.transport is not None
        if not isinstance(packet, P.Data) or self.done.called:
            return
        if packet.block == 1 and not self.dropped:
            self.dropped = True
            return
        if packet.block == self.block + 1:
            self.data += packet.payload
            self.block = packet.block
        self.transport.write(P.encode(P.Ack(packet.block)), addr)
        if packet.block == self.block and len(packet.payload) < 512:
            self.done.callback(self.data)


class EveryMetricMovesTests(unittest.TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).absolute()
        self.dir.mkdir()
        self.program = os.urandom(20_000)
        (self.dir / "snponly.efi").write_bytes(self.program)
        (self.dir / "undionly.kpxe").write_bytes(b"bios")
        self.kernel = os.urandom(70_000)
        self.initrd = os.urandom(30_000)
        (self.dir / "vmlinuz").write_bytes(self.kernel)
        (self.dir / "initrd.img").write_bytes(self.initrd)
        self.config = parse_config({
            "server": {"address": LOCAL, "ports": {"dhcp": 0, "pxe": 0, "tftp": 0, "http": 0}},
            "bootloaders": {"x64-uefi": str(self.dir / "snponly.efi"),
                            "x86-bios": str(self.dir / "undionly.kpxe")},
            "boot": {"machines": {MAC: {"kernel": str(self.dir / "vmlinuz"),
                                        "initrd": [str(self.dir / "initrd.img")],
                                        "cmdline": "console=ttyS0"},
                                  # Renders for the samples at load time,
                                  # not for this machine.
                                  BROKEN: {"kernel": str(self.dir / "vmlinuz"),
                                           "cmdline": "{% if mac == '" + BROKEN +
                                                      "' %}{{ nosuchvar }}{% endif %}"}}},
        }, "test")
        self.metrics = Metrics()
        self.top = makeBootService(self.config, metrics=self.metrics)
        # HTTP and TFTP listen for real, on every address (nothing is sent
        # anywhere but 127.0.0.1); the DHCP protocols get fake transports.
        for name in ("http", "tftp"):
            child = self.top.getServiceNamed(name)  # type: ignore[attr-defined]
            child.startService()
            self.addCleanup(child.stopService)
        self.offers = self.connect("proxydhcp")
        self.acks = self.connect("bootserver")
        tftp = self.top.getServiceNamed("tftp")  # type: ignore[attr-defined]
        self.tftp_port = tftp.port.getHost().port
        http = self.top.getServiceNamed("http")  # type: ignore[attr-defined]
        self.base = f"http://{LOCAL}:{http.port.getHost().port}"
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(self.pool.closeCachedConnections)
        self.boot_log = self.top.getServiceNamed("proxydhcp").protocol.responder.boot_log  # type: ignore

    def connect(self, name: str) -> Any:
        protocol = self.top.getServiceNamed(name).protocol  # type: ignore[attr-defined]
        protocol.makeConnection(FakeDatagramTransport())
        return protocol

    def samples(self) -> dict[tuple[str, str, tuple[tuple[str, str], ...]], float]:
        return {(family.name, s.name, tuple(sorted(s.labels.items()))): s.value
                for family in self.metrics.registry.collect() for s in family.samples}

    def moved(self, before: dict[Any, float], after: dict[Any, float]) -> set[str]:
        return {key[0] for key, value in after.items() if before.get(key) != value}

    @defer.inlineCallbacks
    def get(self, path: str) -> Any:
        url = path if path.startswith("http") else self.base + path
        response = yield treq.get(url, pool=self.pool, timeout=10)
        body = yield treq.content(response)
        self.assertEqual(response.code, 200, url)
        return body

    @defer.inlineCallbacks
    def test_a_boot_moves_every_metric(self) -> Any:
        before = self.samples()
        during: set[str] = set()
        tftp = self.top.getServiceNamed("tftp").protocol  # type: ignore[attr-defined]
        observer = tftp.on_transfer_start

        def started(*args: Any) -> None:
            # The gauge reads the server's own count at each scrape.
            active = self.metrics.registry.get_sample_value("pxed_tftp_active_transfers")
            self.assertEqual(active, 1.0)
            during.add("pxed_tftp_active_transfers")
            observer(*args)

        tftp.on_transfer_start = started

        # EDK2: the proxy offer, garbage beside it, the boot server's ACK.
        self.offers.datagramReceivedWithInfo(raw(OVMF_DISCOVER), ("0.0.0.0", 68), INFO)
        self.offers.datagramReceivedWithInfo(b"\x01garbage", ("0.0.0.0", 68), INFO)
        stranger = changed(OVMF_DISCOVER, chaddr=STRANGER + bytes(10))
        self.offers.datagramReceivedWithInfo(stranger, ("0.0.0.0", 68), INFO)
        self.acks.datagramReceivedWithInfo(raw(OVMF_REQUEST_4011), (LOCAL, 4011), None)
        self.assertEqual(decode(self.acks.transport.written[0][0]).file, b"snponly.efi")

        # Its program by TFTP three times (a size probe does not count):
        # the third is a loop, as if iPXE kept failing.
        first = yield fetch_result(reactor, LOCAL, self.tftp_port, "snponly.efi", blksize=1468,
                                   tsize=True, windowsize=4, interface=LOCAL)
        self.assertEqual(first.data, self.program)
        # The end is recorded once the transfer's port is closed.
        yield self.until(lambda: self.stages().count("tftp-end") == 1)
        reader = LossyReader((LOCAL, self.tftp_port), "snponly.efi")
        port = reactor.listenUDP(0, reader, interface=LOCAL)
        self.addCleanup(port.stopListening)
        second = yield reader.done
        self.assertEqual(second, self.program)
        yield self.until(lambda: self.stages().count("tftp-end") == 2)
        third = yield fetch_result(reactor, LOCAL, self.tftp_port, "snponly.efi",
                                   interface=LOCAL)
        self.assertEqual(third.data, self.program)
        yield self.until(lambda: self.stages().count("tftp-end") == 3)
        # A file pxed does not have: ERROR 1, counted, on the timeline.
        yield self.assertFailure(fetch_result(reactor, LOCAL, self.tftp_port, "grubx64.efi",
                                              interface=LOCAL), TFTPError)

        # iPXE: its DHCP, the script, the kernel and initrd, the beacon.
        sent = self.offers.transport.written
        offers_sent = len(sent)
        self.offers.datagramReceivedWithInfo(raw(IPXE_UEFI_DISCOVER), ("0.0.0.0", 68), INFO)
        yield self.until(lambda: len(sent) > offers_sent)
        # The script URL the offer names (signed: its beacon is a boot).
        offer = decode(sent[-1][0])
        named = (offer.options.get(67) or offer.file).rstrip(b"\0").decode()
        script = (yield self.get(f"/_/ipxe?{urlsplit(named).query}")).decode()
        kernel = re.search(r"^kernel (\S+)", script, re.MULTILINE)
        initrd = re.search(r"^initrd --name \S+ (\S+)", script, re.MULTILINE)
        beacon = re.search(r"imgfetch --name pxed-beacon (\S+)", script)
        assert kernel and initrd and beacon, script
        self.assertEqual((yield self.get(kernel.group(1))), self.kernel)
        self.assertEqual((yield self.get(initrd.group(1))), self.initrd)
        yield self.get(beacon.group(1))
        broken = (yield self.get(f"/_/ipxe?mac={BROKEN}&arch=7")).decode()
        self.assertIn("cannot render the boot script", broken)
        page = yield self.get("/_/status/")
        self.assertIn(b"<html", page)
        yield self.get("/_/machines")
        exposition = (yield self.get("/metrics")).decode()
        yield self.until(lambda: self.sample("pxed_http_requests_total", kind="metrics",
                                             code="200") == 1.0)

        after = self.samples()
        families = {family.name for family in self.metrics.registry.collect()}
        still = families - self.moved(before, after) - during
        self.assertEqual(still, set(), "metrics that nothing moved")
        self.assertEqual(families, set(self.metrics.names()))
        self.assertGreaterEqual(len(families), 17)

        # And they moved by what happened.
        sample = self.sample
        self.assertEqual(sample("pxed_dhcp_requests_total", port="proxydhcp", type="discover",
                                arch="x64-uefi", outcome="offered"), 2.0)
        self.assertEqual(sample("pxed_dhcp_requests_total", port="proxydhcp", type="discover",
                                arch="x64-uefi", outcome="ignored"), 1.0)
        self.assertEqual(sample("pxed_dhcp_requests_total", port="bootserver", type="request",
                                arch="x64-uefi", outcome="acked"), 1.0)
        self.assertEqual(sample("pxed_dhcp_replies_total", port="proxydhcp", type="offer"), 2.0)
        self.assertEqual(sample("pxed_dhcp_reply_seconds_count", port="bootserver"), 1.0)
        self.assertEqual(sample("pxed_dhcp_dropped_total", port="proxydhcp"), 1.0)
        self.assertEqual(sample("pxed_tftp_transfers_total", outcome="complete"), 3.0)
        self.assertEqual(sample("pxed_tftp_bytes_total"), 3.0 * len(self.program))
        self.assertGreaterEqual(sample("pxed_tftp_retransmits_total") or 0, 1.0)
        self.assertEqual(sample("pxed_tftp_blksize_bytes_bucket", le="1468.0"), 3.0)
        self.assertEqual(sample("pxed_tftp_blksize_bytes_bucket", le="1024.0"), 2.0)
        self.assertEqual(sample("pxed_tftp_windowsize_blocks_bucket", le="2.0"), 2.0)
        self.assertEqual(sample("pxed_tftp_active_transfers"), 0.0)
        self.assertEqual(sample("pxed_http_bytes_total", kind="file"),
                         float(len(self.kernel) + len(self.initrd)))
        self.assertEqual(sample("pxed_http_requests_total", kind="beacon", code="200"), 1.0)
        self.assertEqual(sample("pxed_machines_booted_total"), 1.0)
        self.assertEqual(sample("pxed_boot_seconds_count"), 1.0)
        self.assertEqual(sample("pxed_boot_loops_total"), 1.0)
        self.assertEqual(sample("pxed_tftp_not_found_total"), 1.0)
        self.assertEqual(sample("pxed_template_errors_total"), 1.0)
        for stage in ("bootserver", "tftp-start", "tftp-end", "ipxe-dhcp", "script", "kernel",
                      "initrd", "booting"):
            self.assertGreaterEqual(sample("pxed_boot_stage_seconds_count", stage=stage) or 0,
                                    1.0, stage)
        self.assertIn("pxed_machines_booted_total 1.0", exposition)

        # The machine's timeline, in the order it booted.
        self.assertEqual(self.stages(), [
            "proxydhcp", "bootserver",
            "tftp-start", "tftp-end", "tftp-start", "tftp-end", "tftp-start", "tftp-end", "loop",
            "tftp-not-found", "proxydhcp", "script", "kernel", "initrd", "booting",
        ])
        [error] = [e for e in self.boot_log.events(BROKEN) if e.stage == "script-error"]
        self.assertIn("'nosuchvar' is undefined", error.fields["error"])

    def stages(self) -> list[str]:
        return [e.stage for e in self.boot_log.events(MAC)]

    def sample(self, name: str, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value(name, labels)

    @defer.inlineCallbacks
    def until(self, done: Any, seconds: float = 5.0) -> Any:
        """
        Wait (a bounded time) for what ends after its reply: a transfer's
        port closing, an HTTP request being finished on the server side.
        """
        for _ in range(int(seconds / 0.01)):
            if done():
                return
            yield deferLater(0.01)
        self.fail("timed out waiting")


def deferLater(seconds: float) -> defer.Deferred[None]:
    from twisted.internet.task import deferLater as later

    return later(reactor, seconds, lambda: None)


class LeaseMetricsTests(unittest.TestCase):
    """
    The two metrics only pxed as the DHCP server (C{dhcp.mode: full}) has,
    through the service C{makeBootService} wires: a client's DISCOVER,
    REQUEST and RELEASE go into the real DHCP server protocol, on the
    loopback interface (replies go to a fake transport), with its real
    lease file.
    """

    CLIENT = "02:00:00:00:00:01"
    SERVER = "127.0.0.1"

    def setUp(self) -> None:
        base = Path(self.mktemp()).absolute()
        base.mkdir()
        config = parse_config({
            "server": {"address": self.SERVER,
                       "ports": {"dhcp": 0, "pxe": 0, "tftp": 0, "http": 0}},
            "bootloaders": {"x86-bios": None, "x64-uefi": None},
            "dhcp": {"mode": "full", "range": "127.0.0.100-127.0.0.103", "ping": False,
                     "lease_file": str(base / "leases.json")},
        }, "test")
        self.metrics = Metrics()
        self.reactor = MemoryReactorClock()
        self.reactor.advance(1_000_000)
        top = makeBootService(config, metrics=self.metrics, reactor=self.reactor)
        self.server = top.getServiceNamed("dhcp").protocol  # type: ignore[attr-defined]
        self.transport = FakeDatagramTransport()
        self.server.makeConnection(self.transport)

    def send(self, kind: int, **options: bytes) -> list[Any]:
        before = len(self.transport.written)
        lo = PacketInfo(ifindex=socket.if_nametoindex("lo"), local=self.SERVER,
                        destination="255.255.255.255")
        self.server.datagramReceivedWithInfo(encode(plain(self.CLIENT, kind, **options)),
                                             ("0.0.0.0", 68), lo)
        self.reactor.advance(0)
        return [decode(data) for data, _ in self.transport.written[before:]]

    def sample(self, name: str, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value(name, labels)

    def events(self) -> dict[str, float | None]:
        return {event: self.sample("pxed_dhcp_lease_events_total", event=event)
                for event in ("offered", "acked", "released")}

    def test_offer_bind_release_move_the_lease_metrics(self) -> None:
        self.assertIn("pxed_dhcp_leases", self.metrics.names())
        self.assertIn("pxed_dhcp_lease_events", self.metrics.names())
        self.assertEqual(self.sample("pxed_dhcp_leases"), 0.0)
        self.assertEqual(self.events(), {"offered": None, "acked": None, "released": None})

        [offer] = self.send(MessageType.DISCOVER)
        self.assertEqual(offer.message_type, MessageType.OFFER)
        self.assertEqual(self.sample("pxed_dhcp_leases"), 1.0)  # held while offered
        self.assertEqual(self.events(), {"offered": 1.0, "acked": None, "released": None})

        server_id = socket.inet_aton(self.SERVER)
        [ack] = self.send(MessageType.REQUEST, o54=server_id, o50=socket.inet_aton(offer.yiaddr))
        self.assertEqual((ack.message_type, ack.yiaddr), (MessageType.ACK, offer.yiaddr))
        self.assertEqual(self.sample("pxed_dhcp_leases"), 1.0)
        self.assertEqual(self.events(), {"offered": 1.0, "acked": 1.0, "released": None})

        self.release(ack.yiaddr, server_id)
        self.assertEqual(self.sample("pxed_dhcp_leases"), 0.0)
        self.assertEqual(self.events(), {"offered": 1.0, "acked": 1.0, "released": 1.0})
        self.assertIsNone(self.sample("pxed_dhcp_lease_events_total", event="nak"))

    def release(self, address: str, server_id: bytes) -> None:
        """
        A RELEASE, unicast from the bound address (named in ciaddr): no reply.
        """
        packet = plain(self.CLIENT, MessageType.RELEASE, o54=server_id)
        packet.ciaddr = address
        lo = PacketInfo(ifindex=socket.if_nametoindex("lo"), local=self.SERVER,
                        destination=self.SERVER)
        before = len(self.transport.written)
        self.server.datagramReceivedWithInfo(encode(packet), (address, 68), lo)
        self.reactor.advance(0)
        self.assertEqual(self.transport.written[before:], [])


class LabelTests(unittest.TestCase):
    def test_architecture_labels_are_bounded(self) -> None:
        self.assertEqual(arch_label("x64-uefi"), "x64-uefi")
        self.assertEqual(arch_label("unknown-4711"), "unknown")

    def test_message_types(self) -> None:
        self.assertEqual([message_type_label(c) for c in (1, 3, 8, 5, None)],
                         ["discover", "request", "inform", "other", "other"])

    def test_registries_are_separate(self) -> None:
        one, two = Metrics(), Metrics()
        one.loop_detected()
        self.assertEqual(one.registry.get_sample_value("pxed_boot_loops_total"), 1.0)
        self.assertEqual(two.registry.get_sample_value("pxed_boot_loops_total"), 0.0)
