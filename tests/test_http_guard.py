"""
Tests for pxed's HTTP defences (L{pxed.http.ranges}, L{pxed.http.guard},
L{pxed.descriptors}, L{pxed.config.http}) against the real server on
127.0.0.1, with raw TCP clients that misbehave.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from twisted.internet import defer, endpoints, protocol, reactor
from twisted.internet.error import ConnectionRefusedError
from twisted.trial import unittest

from pxed.config import ConfigError, parse_config
from pxed.descriptors import RESERVED, fit_descriptors, needed
from pxed.http.guard import HTTPLimits
from pxed.http.ranges import single_range
from tests.server import RunningPxed, connect, sleep, within

#: Larger than the 65,536-byte chunk Twisted's multi-range producer reads.
FILE_SIZE = 100_000


class RangePlanTests(unittest.TestCase):
    def test_one_range_kept(self) -> None:
        self.assertEqual(single_range(b"bytes=10-19", 100), b"bytes=10-19")
        self.assertEqual(single_range(b"bytes=90-", 100), b"bytes=90-99")
        self.assertEqual(single_range(b"bytes=-5", 100), b"bytes=95-99")
        self.assertEqual(single_range(b"bytes=50-500", 100), b"bytes=50-99")

    def test_overlapping_and_touching_ranges_merge(self) -> None:
        self.assertEqual(single_range(b"bytes=0-65385,0-10", FILE_SIZE), b"bytes=0-65385")
        self.assertEqual(single_range(b"bytes=0-9,10-19,5-7", 100), b"bytes=0-19")
        header = b"bytes=" + b",".join(b"0-%d" % (i * 100) for i in range(200))
        self.assertEqual(single_range(header, FILE_SIZE), b"bytes=0-19900")

    def test_disjoint_ranges_get_the_whole_file(self) -> None:
        self.assertIsNone(single_range(b"bytes=0-9,20-29", 100))

    def test_malformed_is_ignored(self) -> None:
        for header in (b"bytes=5-1", b"bytes=a-b", b"items=0-1", b"bytes=-", b"bytes",
                       b"bytes=0-1," * 1000):
            self.assertIsNone(single_range(header, 100), header)

    def test_unsatisfiable(self) -> None:
        self.assertEqual(single_range(b"bytes=200-300", 100), b"bytes=100-")
        self.assertEqual(single_range(b"bytes=-0", 100), b"bytes=100-")


class DescriptorBudgetTests(unittest.TestCase):
    def test_enough(self) -> None:
        budget = fit_descriptors(256, 500, (100_000, 100_000), apply=False)
        self.assertIsNone(budget.note)
        self.assertEqual((budget.max_connections, budget.max_transfers), (256, 500))

    def test_soft_limit_raised_within_hard(self) -> None:
        want = needed(256, 500)
        self.assertGreater(want, 1024)  # systemd's default soft limit
        budget = fit_descriptors(256, 500, (1024, want), apply=False)
        self.assertIsNone(budget.note)

    def test_hard_limit_lowers_the_limits(self) -> None:
        budget = fit_descriptors(256, 500, (1024, 1024), apply=False)
        self.assertIsNotNone(budget.note)
        assert budget.note is not None
        self.assertNotIn("\n", budget.note)
        self.assertIn("LimitNOFILE", budget.note)
        self.assertLessEqual(needed(budget.max_connections, budget.max_transfers), 1024)
        self.assertLess(budget.max_transfers, 500)
        # TFTP alone (pxed-tftp): no HTTP connections to share with.
        alone = fit_descriptors(0, 1000, (1024, 1024), apply=False)
        self.assertEqual(alone.max_connections, 0)
        self.assertLessEqual(needed(0, alone.max_transfers), 1024)
        self.assertNotIn("HTTP", alone.note or "")

    def test_the_process_limit_is_enough_after_start_up(self) -> None:
        import resource

        fit_descriptors(256, 500)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = needed(256, 500)
        self.assertTrue(soft >= min(want, hard) or soft == resource.RLIM_INFINITY)
        self.assertGreater(RESERVED, 0)


class HTTPConfigTests(unittest.TestCase):
    def test_defaults(self) -> None:
        config = parse_config({"bootloaders": {"x86-bios": None, "x64-uefi": None}})
        self.assertEqual(config.http, HTTPLimits())

    def test_values(self) -> None:
        config = parse_config({"bootloaders": {"x86-bios": None, "x64-uefi": None},
                               "http": {"max_connections": 10, "max_per_client": 2,
                                        "request_timeout": "5s", "send_timeout": 7}})
        self.assertEqual(config.http, HTTPLimits(10, 2, 5.0, 7.0))

    def test_errors_name_the_key(self) -> None:
        for section, key in (({"max_connections": 0}, "http.max_connections"),
                             ({"send_timeout": "soon"}, "http.send_timeout"),
                             ({"max_connections": 2, "max_per_client": 3},
                              "http.max_per_client"),
                             ({"nope": 1}, "http.nope")):
            with self.assertRaises(ConfigError) as caught:
                parse_config({"bootloaders": {"x86-bios": None, "x64-uefi": None},
                              "http": section}, "f.yaml")
            self.assertEqual(caught.exception.key, key)


class ServerTestCase(unittest.TestCase):
    timeout = 60
    extra = ""
    server = ""

    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).absolute()
        self.dir.mkdir()
        self.pxed = RunningPxed(self.dir, self.extra, self.server)
        self.addCleanup(self.pxed.stop)
        self.http = self.pxed.port("http")

    def file_path(self, size: int, name: str = "vmlinuz") -> str:
        path = self.dir / name
        if size > 1_000_000:
            with open(path, "wb") as f:
                f.truncate(size)  # sparse: cheap to make and to read
        else:
            path.write_bytes(os.urandom(size))
        return "/_/file/" + self.pxed.web.catalog.url("", str(path)).split("/_/file/", 1)[1]

    @defer.inlineCallbacks
    def get(self, path: str, headers: str = "", wait: float = 10) -> Any:
        """
        A GET with C{Connection: close}; (status, headers, body) once the
        server closes, which must be within C{wait} seconds.
        """
        client = yield connect(self.http)
        client.transport.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n{headers}"
                               "Connection: close\r\n\r\n".encode())
        yield within(client.closed, wait)
        head, _, body = bytes(client.received).partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1]) if head else 0
        return status, head.decode("latin-1"), body


class RangeServerTests(ServerTestCase):
    @defer.inlineCallbacks
    def test_overlapping_ranges_end_at_once(self) -> None:
        path = self.file_path(FILE_SIZE)
        content = (self.dir / "vmlinuz").read_bytes()
        status, head, body = yield self.get(path, "Range: bytes=0-65385,0-10\r\n", wait=5)
        self.assertEqual(status, 206)
        self.assertIn(f"bytes 0-65385/{FILE_SIZE}", head)
        self.assertEqual(body, content[:65386])

    @defer.inlineCallbacks
    def test_many_overlapping_ranges_never_grow_the_file(self) -> None:
        path = self.file_path(FILE_SIZE)
        ranges = ",".join(f"0-{FILE_SIZE - 1 - i}" for i in range(200))
        status, _, body = yield self.get(path, f"Range: bytes={ranges}\r\n", wait=5)
        self.assertEqual(status, 206)
        self.assertEqual(len(body), FILE_SIZE)

    @defer.inlineCallbacks
    def test_disjoint_ranges_get_the_whole_file(self) -> None:
        path = self.file_path(FILE_SIZE)
        status, _, body = yield self.get(path, "Range: bytes=0-9,100-109\r\n", wait=5)
        self.assertEqual(status, 200)
        self.assertEqual(len(body), FILE_SIZE)

    @defer.inlineCallbacks
    def test_unsatisfiable(self) -> None:
        path = self.file_path(1000)
        status, _, _ = yield self.get(path, "Range: bytes=5000-6000,7000-\r\n", wait=5)
        self.assertEqual(status, 416)

    @defer.inlineCallbacks
    def test_boot_program_too(self) -> None:
        status, head, body = yield self.get("/_/boot/snponly.efi",
                                            "Range: bytes=0-3,2-5,0-1\r\n", wait=5)
        self.assertEqual(status, 206)
        self.assertEqual(body, b"snponl")
        self.assertIn("application/efi", head)


#: The bounds the slow-client tests configure (the defaults are 10 s and 30 s).
REQUEST_TIMEOUT = 2.0
SEND_TIMEOUT = 2.0
#: How long after its bound a slow connection may still be open.
SLACK = 2.0
#: Where the slow clients connect from.
LORIS, READER = "127.0.0.2", "127.0.0.3"


class SlowClientTests(ServerTestCase):
    extra = f"""\
        http: {{request_timeout: {REQUEST_TIMEOUT}, send_timeout: {SEND_TIMEOUT},
               max_connections: 100, max_per_client: 50}}
        """

    @defer.inlineCallbacks
    def test_slowloris_and_slow_readers_are_dropped(self) -> None:
        """
        20 clients trickle header lines, 20 start a 32 MB download and never
        read: the server closes all 40 within their bounds (counted on its
        side: a client that never reads never learns), and still answers
        at once.
        """
        site = self.pxed.top.getServiceNamed("http").factory
        path = self.file_path(32 << 20)
        started = reactor.seconds()
        loris = []
        for _ in range(20):
            client = yield connect(self.http, LORIS)
            client.transport.write(b"GET /_/ipxe?mac=52:54:00:00:00:01 HTTP/1.1\r\n")
            loris.append(client)
        readers = []
        for _ in range(20):
            client = yield connect(self.http, READER, receive_buffer=65536)
            client.transport.pauseProducing()  # never read a byte
            client.transport.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            readers.append(client)
        self.assertEqual(site.connections, {LORIS: 20, READER: 20})
        gone: dict[str, float] = {}
        for n in range(int((max(REQUEST_TIMEOUT, SEND_TIMEOUT) + SLACK + 3) / 0.25)):
            for client in loris:
                if client.transport.connected:
                    client.transport.write(f"X-Slow-{n}: 1\r\n".encode())
            for host in (LORIS, READER):
                if host not in site.connections:
                    gone.setdefault(host, reactor.seconds() - started)
            if len(gone) == 2:
                break
            yield sleep(0.25)
        self.assertLess(gone.get(LORIS, 1e9), REQUEST_TIMEOUT + SLACK)
        # A slow reader's clock starts once the socket buffers are full.
        self.assertLess(gone.get(READER, 1e9), SEND_TIMEOUT + SLACK + 2)
        self.assertEqual(site.total, 0)
        for client in loris + readers:
            client.transport.resumeProducing()
        yield within(defer.gatherResults([c.closed for c in loris + readers]), 10)
        status, _, body = yield self.get("/_/boot/undionly.kpxe", wait=5)
        self.assertEqual((status, body), (200, b"undionly.kpxe"))

    @defer.inlineCallbacks
    def test_a_reading_client_is_not_dropped(self) -> None:
        """
        A download taking longer than both bounds, read steadily, completes.
        """
        path = self.file_path(8 << 20)
        client = yield connect(self.http)
        client.transport.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                               .encode())
        # Read in bursts with pauses shorter than the send timeout.
        for _ in range(6):
            client.transport.pauseProducing()
            yield sleep(SEND_TIMEOUT / 2)
            client.transport.resumeProducing()
            yield sleep(0.05)
        yield within(client.closed, 20)
        head, _, body = bytes(client.received).partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), head[:40])
        self.assertEqual(len(body), 8 << 20)

    @defer.inlineCallbacks
    def test_idle_kept_alive_connection_closes(self) -> None:
        client = yield connect(self.http)
        client.transport.write(b"GET /_/boot/undionly.kpxe HTTP/1.1\r\nHost: x\r\n\r\n")
        lifetime = yield within(client.closed, REQUEST_TIMEOUT + SLACK + 1)
        self.assertIn(b"undionly.kpxe", bytes(client.received))
        self.assertGreaterEqual(lifetime, REQUEST_TIMEOUT * 0.9)


class ConnectionLimitTests(ServerTestCase):
    extra = """\
        http: {max_connections: 6, max_per_client: 3}
        """

    @defer.inlineCallbacks
    def test_limits(self) -> None:
        held = []
        for _ in range(3):
            held.append((yield connect(self.http)))
        # A fourth from the same address is closed at once ...
        extra = yield connect(self.http)
        yield within(extra.closed, 2)
        # ... another address still gets in, up to the total.
        for _ in range(3):
            held.append((yield connect(self.http, "127.0.0.2")))
        third = yield connect(self.http, "127.0.0.3")
        yield within(third.closed, 2)
        for client in held:
            self.assertTrue(client.transport.connected)
        # One closes: a new connection is served again.
        held[0].transport.loseConnection()
        yield held[0].closed
        yield sleep(0.1)
        status, _, body = yield self.get("/_/boot/undionly.kpxe", wait=5)
        self.assertEqual((status, body), (200, b"undionly.kpxe"))
        for client in held[1:]:
            client.transport.loseConnection()
            yield client.closed
        self.assertTrue(re.match(r"^\d", "1"))


class InterfaceTests(ServerTestCase):
    """
    With C{server.interface}, HTTP listens on that interface's address
    only (here lo's 127.0.0.1, not the rest of 127.0.0.0/8 or any other).
    """

    server = ", interface: lo"

    @defer.inlineCallbacks
    def test_http_on_the_interface_address_only(self) -> None:
        self.assertEqual(self.pxed.top.getServiceNamed("http").port.getHost().host,
                         "127.0.0.1")
        status, _, _ = yield self.get("/_/boot/undionly.kpxe", wait=5)
        self.assertEqual(status, 200)
        endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.2", self.http, timeout=5)
        yield self.assertFailure(endpoints.connectProtocol(endpoint, protocol.Protocol()),
                                 ConnectionRefusedError)
