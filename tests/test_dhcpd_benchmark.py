"""
Tests for the DORA benchmark's own parts (L{benchmarks.dhcpd}): the
messages its clients send, and its accounting of exchanges, against a
stand-in server on 127.0.0.1 that offers, ACKs, NAKs one client once, ignores
another and gives one address twice.
"""

from __future__ import annotations

import socket
import threading

from twisted.trial import unittest

from benchmarks.dhcpd import discover, drive, request
from pxed.dhcp.packet import DHCPPacket, MessageType, Option, decode, encode
from tests.fixtures import stand_in_server


class MessageTests(unittest.TestCase):
    def test_discover_and_request(self) -> None:
        d = decode(discover(5))
        self.assertEqual((d.message_type, d.xid, d.giaddr, d.hops), (1, 10, "127.0.0.1", 1))
        r = decode(request(5, "127.1.0.9", socket.inet_aton("127.0.0.2")))
        self.assertEqual((r.message_type, r.xid, r.mac), (3, 11, d.mac))
        self.assertEqual(r.options[Option.REQUESTED_ADDRESS], socket.inet_aton("127.1.0.9"))
        self.assertEqual(r.options[Option.SERVER_ID], socket.inet_aton("127.0.0.2"))


class DriveTests(unittest.TestCase):
    def test_counts(self) -> None:
        server, relay = stand_in_server(self)
        n = 50

        naked: set[int] = set()

        def answer() -> None:
            handled = 0
            while handled < 2 * n + 1:
                try:
                    data, _ = server.recvfrom(2048)
                except OSError:
                    return
                packet = decode(data)
                i = packet.xid // 2
                handled += 1
                if i == 7:
                    continue  # never answered: lost
                kind = MessageType.OFFER
                if packet.message_type == MessageType.REQUEST:
                    # Client 3 is NAKed once, then starts over and is ACKed.
                    kind = MessageType.NAK if i == 3 and i not in naked else MessageType.ACK
                    naked.add(i)
                address = "127.1.0.1" if i in (1, 2) else f"127.1.0.{i + 10}"
                reply = DHCPPacket(op=2, xid=packet.xid, chaddr=packet.chaddr, yiaddr=address,
                                   options={Option.MESSAGE_TYPE: bytes((kind,)),
                                            Option.SERVER_ID: socket.inet_aton("127.0.0.1")})
                server.sendto(encode(reply), relay)

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        result = drive(server.getsockname(), n, 0, 8, 1.0, bind=relay)
        thread.join(10)
        self.assertEqual((result["acked"], result["naks"], result["lost"], result["duplicates"]),
                         (n - 1, 1, 1, 1))
        self.assertGreater(result["dora_per_s"], 0)
