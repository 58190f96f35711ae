"""
Tests for L{pxed.testing}: the fakes behave like the real thing, so tests
built on them test pxed.
"""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.internet import defer
from twisted.trial import unittest

from pxed.dhcp.classify import classify
from pxed.dhcp.packet import MessageType, Option, decode, encode
from pxed.http.app import BootHTTP
from pxed.http.files import FileCatalog
from pxed.http.status import StatusPages
from pxed.policy import BootSpec, StaticPolicy
from pxed.signing import Signer
from pxed.state import MemoryBootLog
from pxed.testing.http import MemoryHTTP
from pxed.testing.packets import (
    bootserver_request,
    changed,
    http_boot_discover,
    ipxe_discover,
    pxe_discover,
)
from pxed.testing.policy import SlowPolicy, nets
from pxed.testing.tftp import ClockClient
from pxed.tftp import packet as P
from pxed.tftp.source import BytesSource

MAC = bytes.fromhex("525400123456")


class PacketTests(unittest.TestCase):
    def test_what_pxed_makes_of_them(self) -> None:
        """
        pxed's own classifier takes each builder's packet for what it
        stands for.
        """
        firmware = classify(pxe_discover(MAC, 0, 1))
        ipxe = classify(ipxe_discover(MAC, 7, 2))
        http = classify(http_boot_discover(MAC, 16, 3))
        assert firmware is not None and ipxe is not None and http is not None
        self.assertEqual((firmware.mac, firmware.arch.code, firmware.ipxe), ("52:54:00:12:34:56",
                                                                            0, False))
        self.assertTrue(ipxe.ipxe)
        self.assertTrue(http.http_boot)
        request = bootserver_request(MAC, "192.0.2.1", 7, 4)
        self.assertEqual(request.message_type, MessageType.REQUEST)
        self.assertEqual(request.options[Option.SERVER_ID], bytes([192, 0, 2, 1]))

    def test_changed(self) -> None:
        raw = encode(pxe_discover(MAC, 7, 1))
        packet = decode(changed(raw, xid=9, options={Option.CLIENT_UUID: None,
                                                     Option.USER_CLASS: b"x"}))
        self.assertEqual(packet.xid, 9)
        self.assertNotIn(Option.CLIENT_UUID, packet.options)
        self.assertEqual(packet.options[Option.USER_CLASS], b"x")


class ClockClientTests(unittest.TestCase):
    def setUp(self) -> None:
        self.content = os.urandom(5000)

    def test_read_lock_step_and_windowed(self) -> None:
        for options in ({}, {"blksize": "1024", "windowsize": "4"}):
            client = ClockClient.serving(BytesSource({"f": self.content}))
            result = client.read("f", options)
            self.assertEqual(result.data, self.content, options)
            self.assertIsNone(result.error)

    def test_loss_retransmitted_on_the_clock(self) -> None:
        """
        A lost block comes again after the server's timeout, which the
        client waits out by advancing the fake clock.
        """
        lost: list[int] = []

        def drop(packet: P.Packet) -> bool:
            if isinstance(packet, P.Data) and packet.block == 3 and not lost:
                lost.append(packet.block)
                return True
            return False

        client = ClockClient.serving(BytesSource({"f": self.content}), timeout=1.0)
        client.drop = drop
        result = client.read("f")
        self.assertEqual(result.data, self.content)
        self.assertEqual(lost, [3])
        self.assertEqual(sum(1 for p in result.packets if isinstance(p, P.Data)
                             and p.block == 3), 2)
        self.assertGreater(result.seconds, 0)

    def test_not_found(self) -> None:
        result = ClockClient.serving(BytesSource({})).read("nothere")
        self.assertEqual(result.error, P.Error(1, "File not found"))


class MemoryHTTPTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_script_and_json_in_memory(self) -> Any:
        boot_log = MemoryBootLog()
        app = BootHTTP(StaticPolicy({"52:54:00:12:34:56": BootSpec("http://h/vmlinuz")}),
                       FileCatalog(Signer(b"k" * 32)), boot_log)
        from twisted.internet.task import Clock

        pages = StatusPages(boot_log, Clock())
        http = MemoryHTTP(pages.mount(app.resource()))
        response, body = yield http.get("/_/ipxe?mac=52:54:00:12:34:56&arch=7")
        self.assertEqual(response.code, 200)
        self.assertIn(b"kernel http://h/vmlinuz", body)
        boot_log.record("52:54:00:12:34:56", "proxydhcp", arch="x64-uefi")
        response, body = yield http.get("/_/machines")
        self.assertEqual([m["mac"] for m in json.loads(body)["machines"]], ["52:54:00:12:34:56"])
        response, _ = yield http.post("/_/admin/reload")
        self.assertEqual(response.code, 404)  # no admin token


class PolicyTests(unittest.TestCase):
    def test_slow_policy_and_nets(self) -> None:
        policy = SlowPolicy()
        d = policy.boot_spec("request")
        self.assertNoResult(d)
        policy.asked[0][1].callback(None)
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual([str(n) for n in nets("10.0.0.0/8", "192.0.2.1/32")],
                         ["10.0.0.0/8", "192.0.2.1/32"])
