"""
Tests for L{pxed.dhcp.sanity}: the giaddr a reply may go to and the
malformed options that get no reply, through the pieces, through
C{pxed explain} (which must agree with the server), and through the
running server's ports on 127.0.0.1.
"""

from __future__ import annotations

import io
import ipaddress
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.trial import unittest

from pxed import cli
from pxed.dhcp.packet import DHCPPacket, MessageType, Option, decode, encode
from pxed.dhcp.sanity import option_problem, relay_problem
from tests.server import RunningPxed, sleep, udp_client

CHADDR = bytes.fromhex("525400770010") + bytes(10)
GUID = b"\0" + bytes(range(16))
OWN = ("192.168.77.1", None)
RELAYS = ((ipaddress.IPv4Network("10.20.0.0/16"), None),)


def request(kind: int = MessageType.DISCOVER, **fields: Any) -> DHCPPacket:
    options = {Option.MESSAGE_TYPE: bytes((kind,)),
               Option.VENDOR_CLASS: b"PXEClient:Arch:00007:UNDI:003016",
               Option.CLIENT_ARCH: b"\x00\x07", Option.CLIENT_UUID: GUID,
               **fields.pop("options", {})}
    return DHCPPacket(xid=0x5A, chaddr=CHADDR, options=options, **fields)


#: (giaddr, why it may not be a relay) for a request from outside.
BAD_RELAYS = [("255.255.255.255", "broadcast"), ("224.0.0.1", "multicast"),
              ("239.1.2.3", "multicast"), ("127.0.0.1", "loopback"),
              ("127.8.8.8", "loopback"), ("192.168.77.1", "own address"),
              ("0.0.0.7", "cannot be"), ("240.0.0.1", "cannot be")]
#: (option, value, what the reason names) for malformed options.
BAD_OPTIONS = [(Option.CLIENT_ARCH, b"", "option 93"), (Option.CLIENT_ARCH, b"\x07", "option 93"),
               (Option.CLIENT_ARCH, b"\x00\x07\x00", "option 93"),
               (Option.CLIENT_UUID, b"", "option 97"), (Option.CLIENT_UUID, GUID[:-1], "option 97"),
               (Option.CLIENT_UUID, b"\x01" + GUID[1:], "option 97"),
               (Option.CLIENT_UUID, b"\0" * 3000, "option 97"),
               (Option.RELAY_AGENT_INFORMATION, b"\x01" * 3000, "option 82")]


class RelayTests(unittest.TestCase):
    def test_good(self) -> None:
        for giaddr in ("0.0.0.0", "10.20.0.1", "192.0.2.1"):
            self.assertIsNone(relay_problem(request(giaddr=giaddr), "10.20.0.1", OWN), giaddr)
        # Loopback from loopback: pxed's own host relaying (or a test).
        self.assertIsNone(relay_problem(request(giaddr="127.0.0.2"), "127.0.0.1", OWN))

    def test_bad(self) -> None:
        for giaddr, why in BAD_RELAYS:
            problem = relay_problem(request(giaddr=giaddr), "10.20.0.1", OWN)
            assert problem is not None, giaddr
            self.assertIn(why, problem, giaddr)

    def test_listed_relays_only(self) -> None:
        self.assertIsNone(relay_problem(request(giaddr="10.20.1.1"), "10.20.1.1", OWN, RELAYS))
        problem = relay_problem(request(giaddr="10.30.1.1"), "10.30.1.1", OWN, RELAYS)
        assert problem is not None
        self.assertIn("server.relays", problem)
        # A relay subnet's chosen address is pxed's own too.
        chosen = ((ipaddress.IPv4Network("10.0.0.0/8"), "10.20.0.9"),)
        problem = relay_problem(request(giaddr="10.20.0.9"), "10.20.0.9", ("x", "10.20.0.9"),
                                chosen)
        assert problem is not None
        self.assertIn("own", problem)


class OptionTests(unittest.TestCase):
    def test_good(self) -> None:
        self.assertIsNone(option_problem(request()))
        self.assertIsNone(option_problem(request(options={Option.CLIENT_ARCH: b"\0\7\0\x10"})))
        no_guid = request()
        del no_guid.options[Option.CLIENT_UUID]
        self.assertIsNone(option_problem(no_guid))

    def test_bad(self) -> None:
        for code, value, what in BAD_OPTIONS:
            problem = option_problem(request(options={code: value}))
            assert problem is not None, (code, value[:4])
            self.assertIn(what, problem)


class ExplainTests(unittest.TestCase):
    """
    C{pxed explain} says "no reply" for each, with the reason: it runs the
    server's own pipeline.
    """

    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).absolute()
        self.dir.mkdir()
        for name in ("vmlinuz", "undionly.kpxe", "snponly.efi"):
            (self.dir / name).write_bytes(name.encode())
        self.config = self.dir / "pxed.yaml"
        self.config.write_text(
            "server: {address: 192.168.77.1}\n"
            f"bootloaders: {{x86-bios: {self.dir / 'undionly.kpxe'}, "
            f"x64-uefi: {self.dir / 'snponly.efi'}}}\n"
            f"boot: {{default: {{kernel: {self.dir / 'vmlinuz'}}}}}\n")

    def explain(self, packet: DHCPPacket, source: str = "10.20.0.1:67") -> str:
        out, err = io.StringIO(), io.StringIO()
        code = cli.main(["explain", "--config", str(self.config), "--source", source,
                         "--hex", encode(packet).hex()], out, err)
        self.assertEqual(code, 0, err.getvalue())
        return out.getvalue()

    def test_agrees(self) -> None:
        self.assertIn("reply: DHCPOFFER", self.explain(request(giaddr="10.20.0.1")))
        for giaddr, why in BAD_RELAYS:
            text = self.explain(request(giaddr=giaddr))
            self.assertIn(f"no reply: giaddr {giaddr}", text)
            self.assertIn(why, text)
        for code, value, what in BAD_OPTIONS:
            text = self.explain(request(options={code: value}), "0.0.0.0:68")
            self.assertIn("no reply: malformed: " + what, text)


class ServerTests(unittest.TestCase):
    """
    The running server's ports: port 4011 answers where the request came
    from, so the client sees each reply or its absence; for ProxyDHCP
    (whose replies go to the relay) the server's own count of replies says.
    """

    timeout = 30

    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).absolute()
        self.dir.mkdir()
        (self.dir / "vmlinuz").write_bytes(b"k")
        self.pxed = RunningPxed(self.dir, f"boot: {{default: {{kernel: {self.dir}/vmlinuz}}}}\n")
        self.addCleanup(self.pxed.stop)

    def replies(self) -> float:
        return sum(sample.value for family in self.pxed.metrics.registry.collect()
                   if family.name == "pxed_dhcp_replies"
                   for sample in family.samples if sample.name.endswith("_total"))

    @defer.inlineCallbacks
    def test_bootserver(self) -> Any:
        client = udp_client(self)
        port = ("127.0.0.1", self.pxed.port("bootserver"))
        good = request(MessageType.REQUEST, ciaddr="127.0.0.1")
        for code, value, _ in BAD_OPTIONS:
            spoiled = request(MessageType.REQUEST, ciaddr="127.0.0.1", options={code: value})
            client.transport.write(encode(spoiled), port)
        yield sleep(0.3)
        self.assertEqual(client.replies, [])
        waiting = client.next_reply()
        client.transport.write(encode(good), port)
        reply = decode((yield waiting))
        self.assertEqual(reply.options[Option.CLIENT_UUID], GUID)

    @defer.inlineCallbacks
    def test_proxydhcp_relays(self) -> Any:
        client = udp_client(self)
        port = ("127.0.0.1", self.pxed.port("proxydhcp"))
        # From loopback, so only what is not loopback's is refused here
        # (127.0.0.1 is the server's own address).
        for giaddr in ("255.255.255.255", "224.0.0.1", "127.0.0.1", "0.0.0.7"):
            client.transport.write(encode(request(giaddr=giaddr)), port)
        for code, value, _ in BAD_OPTIONS:
            client.transport.write(encode(request(options={code: value})), port)
        yield sleep(0.3)
        self.assertEqual(self.replies(), 0.0)
        # A loopback relay other than pxed: answered (to 127.0.0.2:67).
        client.transport.write(encode(request(giaddr="127.0.0.2")), port)
        for _ in range(50):
            if self.replies():
                break
            yield sleep(0.05)
        self.assertEqual(self.replies(), 1.0)
