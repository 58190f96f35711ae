"""
The fuzz flood: 100,000 datagrams at the real server (L{pxed.service}, its
ProxyDHCP, boot server and TFTP ports on 127.0.0.1), a quarter of them
pure random bytes and the rest valid DHCP and TFTP packets mutated.  No
random datagram gets a reply, and the server still serves afterwards.

For network safety every datagram's giaddr (bytes 24..27, where a DHCP
reply would be sent) is kept at 0.0.0.0 or on loopback: a mutated packet
must not make pxed send anything off this machine.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.trial import unittest

from pxed.dhcp.packet import Option, decode, encode
from pxed.testing.packets import bootserver_request, ipxe_discover, pxe_discover
from pxed.tftp import packet as P
from tests.server import RunningPxed, sleep, udp_client

TOTAL = 100_000
RANDOM_SHARE = 4  # one in four pure random
#: Datagrams sent before the reactor gets a turn (the server runs in it).
BATCH = 200
SEED = 14

MAC = bytes.fromhex("525400f0220a")


def _valid_dhcp() -> list[bytes]:
    iso = pxe_discover(MAC, 0, xid=1)
    uefi = pxe_discover(MAC, 7, xid=2)
    ipxe = ipxe_discover(MAC, 7, xid=3)
    request = bootserver_request(MAC, "127.0.0.1", 7, xid=4, client="127.0.0.1")
    return [encode(p) for p in (iso, uefi, ipxe, request)]


def _valid_tftp() -> list[bytes]:
    return [P.encode(p) for p in (
        P.ReadRequest("undionly.kpxe"),
        P.ReadRequest("snponly.efi", options={"blksize": "1468", "tsize": "0",
                                              "windowsize": "4"}),
        P.WriteRequest("upload.bin"),
        P.Ack(1), P.Error(0, "bye"), P.Data(1, b"x" * 10))]


def _safe(datagram: bytes, rng: random.Random) -> bytes:
    """
    Keep giaddr at 0.0.0.0 or on loopback, whatever the bytes were.
    """
    if len(datagram) < 28:
        return datagram
    giaddr = bytes((127, 0, 0, 1)) if rng.random() < 0.5 else bytes(4)
    return datagram[:24] + giaddr + datagram[28:]


def mutate(datagram: bytes, rng: random.Random) -> bytes:
    data = bytearray(datagram)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(5)
        if kind == 0 and data:  # flip bytes
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif kind == 1 and data:  # truncate
            del data[rng.randrange(len(data)):]
        elif kind == 2:  # grow
            data += rng.randbytes(rng.randint(1, 64))
        elif kind == 3 and len(data) > 240:  # an option's length byte
            data[rng.randrange(240, len(data))] = rng.choice((0, 1, 2, 17, 255))
        elif kind == 4 and data:  # duplicate a slice
            start = rng.randrange(len(data))
            data[start:start] = data[start:start + rng.randint(1, 32)]
    return bytes(data)


class FloodTests(unittest.TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).absolute()
        self.dir.mkdir()
        kernel = self.dir / "vmlinuz"
        kernel.write_bytes(b"kernel")
        upload = self.dir / "uploads"
        upload.mkdir()
        self.pxed = RunningPxed(self.dir, f"""\
            tftp: {{upload_root: {upload}}}
            boot:
              default: {{kernel: {kernel}}}
            """)
        self.addCleanup(self.pxed.stop)
        self.ports = [self.pxed.port(name) for name in ("proxydhcp", "bootserver", "tftp")]

    def dhcp_replies(self) -> float:
        """
        DHCP replies pxed sent, wherever to (a broadcast, a relay), from
        its metrics.
        """
        registry = self.pxed.metrics.registry
        return sum(sample.value for family in registry.collect()
                   if family.name == "pxed_dhcp_replies"
                   for sample in family.samples if sample.name.endswith("_total"))

    @defer.inlineCallbacks
    def send(self, client: Any, datagrams: Any) -> Any:
        for n, (data, port) in enumerate(datagrams):
            client.transport.write(data, ("127.0.0.1", port))
            if n % BATCH == BATCH - 1:
                yield sleep(0)
        yield sleep(2)  # the last ones handled, first answers sent

    @defer.inlineCallbacks
    def test_flood(self) -> Any:
        rng = random.Random(SEED)
        dhcp, tftp = _valid_dhcp(), _valid_tftp()
        server = "127.0.0.1"
        proxy, boot, tftp_port = self.ports
        randoms = [(_safe(rng.randbytes(rng.choice((1, 2, 4, 20, 300, 548, 1500))), rng),
                    rng.choice(self.ports)) for _ in range(TOTAL // RANDOM_SHARE)]
        mutants = []
        for _ in range(TOTAL - len(randoms)):
            if rng.random() < 0.6:
                mutants.append((_safe(mutate(rng.choice(dhcp), rng), rng),
                                rng.choice((proxy, boot))))
            else:
                mutants.append((mutate(rng.choice(tftp), rng), tftp_port))
        # The random quarter first, from a socket of its own: nothing comes
        # back to it, and no DHCP reply leaves for anywhere else.
        random_client, mutant_client = udp_client(self), udp_client(self)
        yield self.send(random_client, randoms)
        self.assertEqual(random_client.replies, [], "a random datagram was answered")
        self.assertEqual(self.dhcp_replies(), 0.0)
        yield self.send(mutant_client, mutants)
        self.assertEqual(random_client.replies, [])
        # Mutated valid packets were answered now and then: the flood did
        # reach the protocols' decisions.
        self.assertGreater(len(mutant_client.replies) + self.dhcp_replies(), 0)
        answered = len(mutant_client.replies)
        print(f"\n  fuzz: {len(randoms)} random, {len(mutants)} mutated; {answered} answers "
              f"to the mutated ones' sender, {self.dhcp_replies():.0f} DHCP replies")

        # And the server still serves: DHCP on 4011, TFTP, HTTP.  The
        # transfers the mutated requests started end first (their client
        # never answers: four timeouts), freeing this address's slots.
        transfers = self.pxed.top.getServiceNamed("tftp").protocol
        for _ in range(200):
            if not transfers.active_transfers:
                break
            yield sleep(0.05)
        self.assertEqual(transfers.active_transfers, 0,
                         [(key, type(session).__name__, getattr(session, "negotiated", None))
                          for key, session in transfers._transfers.items()])
        client = udp_client(self)
        waiting = client.next_reply()
        request = bootserver_request(MAC, server, 7, xid=77, client=server)
        client.transport.write(encode(request), (server, boot))
        reply = decode((yield waiting))
        self.assertEqual((reply.xid, reply.options.get(Option.MESSAGE_TYPE)), (77, b"\x05"))
        waiting = client.next_reply()
        client.transport.write(P.encode(P.ReadRequest("undionly.kpxe")), (server, tftp_port))
        self.assertEqual(P.decode((yield waiting)), P.Data(1, b"undionly.kpxe"))
