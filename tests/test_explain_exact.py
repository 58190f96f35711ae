"""
C{pxed explain} says byte for byte what the server sends: every datagram of
every capture in C{shared/captures}, and iPXE requests (direct, relayed with
option 82, on both ports), go through C{explain} and through the protocols
of the service L{pxed.service.makeBootService} builds from the same
configuration file; the bytes and destinations must be equal, signed script
URLs included.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from twisted.internet.testing import FakeDatagramTransport, MemoryReactorClock
from twisted.trial import unittest

from pxed.config import load_config
from pxed.dhcp.packet import DHCPPacket, Option, decode, encode
from pxed.explain import Datagram, Explanation, explain, read_capture
from pxed.net import PacketInfo
from pxed.service import makeBootService
from pxed.testing.packets import bootserver_request, ipxe_discover
from tests import pcap

SERVER = "192.168.77.1"
RELAY = "10.9.0.1"
RELAYED_SERVER = "10.9.255.1"
MAC = bytes.fromhex("525400770077")
AGENT = b"\x01\x06eth1/7\x02\x04\x0a\x09\x00\x01"  # circuit ID, remote ID


def _ipxe_requests() -> list[Datagram]:
    """
    What iPXE sends: its DISCOVER on the LAN (BIOS and UEFI), through a
    relay that inserts option 82, and a REQUEST to port 4011 through it.
    """
    out = []
    for arch in (0, 7):
        out.append(Datagram(len(out) + 1, ("0.0.0.0", 68), ("255.255.255.255", 67),
                            encode(ipxe_discover(MAC, arch, xid=0x100 + arch))))
        relayed = ipxe_discover(MAC, arch, xid=0x200 + arch)
        relayed.giaddr, relayed.hops = RELAY, 1
        relayed.options[Option.RELAY_AGENT_INFORMATION] = AGENT
        out.append(Datagram(len(out) + 1, (RELAY, 67), (RELAYED_SERVER, 67), encode(relayed)))
    request = bootserver_request(MAC, RELAYED_SERVER, 7, xid=0x300, client="10.9.0.50")
    request.giaddr = RELAY
    request.options[Option.USER_CLASS] = b"iPXE"
    request.options[Option.RELAY_AGENT_INFORMATION] = AGENT
    out.append(Datagram(len(out) + 1, (RELAY, 67), (RELAYED_SERVER, 4011), encode(request)))
    return out


class ExplainEqualsServerTests(unittest.TestCase):
    def setUp(self) -> None:
        base = Path(self.mktemp()).absolute()
        base.mkdir()
        for name in ("undionly.kpxe", "snponly.efi", "vmlinuz"):
            (base / name).write_bytes(name.encode())
        self.path = base / "pxed.yaml"
        self.path.write_text(textwrap.dedent(f"""\
            server:
              address: {SERVER}
              ports: {{dhcp: 67, pxe: 4011, tftp: 0, http: 8080}}
              relays: {{"10.9.0.0/16": {RELAYED_SERVER}}}
            bootloaders: {{x86-bios: {base}/undionly.kpxe, x64-uefi: {base}/snponly.efi}}
            boot: {{default: {{kernel: {base}/vmlinuz}}}}
            policy:
              state_file: {base}/state.json
              rules:
                - name: relayed
                  match: {{relay: "10.9.0.0/16"}}
                  linux: {{kernel: {base}/vmlinuz}}
            """))
        self.config = load_config(self.path)
        # The server as twistd runs it: it makes the signing key and
        # writes it to the state file, where explain reads it.
        self.top: Any = makeBootService(self.config, reactor=MemoryReactorClock())
        self.ports = {67: self.top.getServiceNamed("proxydhcp").protocol,
                      4011: self.top.getServiceNamed("bootserver").protocol}
        self.transports = {port: FakeDatagramTransport() for port in self.ports}
        for port, protocol in self.ports.items():
            protocol.makeConnection(self.transports[port])
        self.assertIn("signing_key", (base / "state.json").read_text())

    def sent(self, datagram: Datagram) -> list[tuple[bytes, tuple[str, int]]]:
        """
        What the server's protocol for the datagram's port writes.
        """
        protocol = self.ports[datagram.dst[1]]
        transport = self.transports[datagram.dst[1]]
        before = len(transport.written)
        local = datagram.dst[0] if datagram.dst[0] != "255.255.255.255" else SERVER
        protocol.datagramReceivedWithInfo(datagram.payload, datagram.src,
                                          PacketInfo(0, local, datagram.dst[0]))
        return list(transport.written[before:])

    def compare(self, datagrams: list[Datagram]) -> list[Explanation]:
        answered = []
        for result in explain(datagrams, self.config, SERVER):
            if result.stage is None:
                continue
            expected = [] if result.reply is None else [(result.reply_bytes, result.destination)]
            self.assertEqual(self.sent(result.datagram), expected,
                             f"frame {result.datagram.frame}: {result.ignored}")
            if result.reply is not None:
                self.assertEqual(decode(result.reply_bytes), result.reply)
                answered.append(result)
        return answered

    def test_captures(self) -> None:
        captures = sorted(pcap.CAPTURES.glob("*.pcap"))
        self.assertGreaterEqual(len(captures), 2)
        answered = []
        for path in captures:
            answered += self.compare(read_capture(path))
        kinds = {result.answer.kind for result in answered if result.answer is not None}
        self.assertEqual(kinds, {"bootloader", "ipxe-script"})

    def test_ipxe_requests(self) -> None:
        answered = self.compare(_ipxe_requests())
        self.assertEqual(len(answered), 5)
        for result in answered:
            reply: DHCPPacket = result.reply  # type: ignore[assignment]
            url = reply.options[Option.BOOTFILE_NAME].decode()
            # Signed: the context carries where the request came from ...
            self.assertIn("ctx", parse_qs(urlsplit(url).query), url)
            # ... which makes it too long for the BOOTP file field.
            self.assertEqual(reply.file, b"")
            self.assertEqual(result.notes, [])
            relayed = result.datagram.src[0] == RELAY
            self.assertEqual(reply.options.get(Option.RELAY_AGENT_INFORMATION),
                             AGENT if relayed else None)
            self.assertIn(RELAYED_SERVER if relayed else SERVER, url)
