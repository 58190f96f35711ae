"""
Tests for L{pxed.dhcp.leases}: client identity, pools and the order in
which addresses are tried.
"""

from __future__ import annotations

import ipaddress

from twisted.trial import unittest

from pxed.dhcp.leases import BOUND, DECLINED, OFFERED, Lease, Pool, candidates, client_key
from pxed.dhcp.packet import DHCPPacket, Option

MAC = "52:54:00:12:34:56"
CHADDR = bytes.fromhex("525400123456")


def pool(*ranges: tuple[str, str], network: str = "192.168.77.0/24") -> Pool:
    return Pool(ipaddress.IPv4Network(network),
                tuple((ipaddress.IPv4Address(a), ipaddress.IPv4Address(b)) for a, b in ranges))


class ClientKeyTests(unittest.TestCase):
    def test_mac_without_identifier(self) -> None:
        packet = DHCPPacket(chaddr=CHADDR + bytes(10))
        self.assertEqual(client_key(packet), f"mac:{MAC}")

    def test_identifier(self) -> None:
        packet = DHCPPacket(chaddr=CHADDR + bytes(10), options={Option.CLIENT_ID: b"\xffabc"})
        self.assertEqual(client_key(packet), "id:ff616263")

    def test_identifier_that_is_the_mac(self) -> None:
        """
        Hardware type 1 plus the client's own MAC is the same client as the
        firmware that sent no identifier: one address from firmware to OS.
        """
        packet = DHCPPacket(chaddr=CHADDR + bytes(10), options={Option.CLIENT_ID: b"\x01" + CHADDR})
        self.assertEqual(client_key(packet), f"mac:{MAC}")
        other = DHCPPacket(chaddr=CHADDR + bytes(10),
                           options={Option.CLIENT_ID: b"\x01" + bytes(6)})
        self.assertNotEqual(client_key(other), f"mac:{MAC}")


class PoolTests(unittest.TestCase):
    def test_size_and_membership(self) -> None:
        p = pool(("192.168.77.10", "192.168.77.12"), ("192.168.77.20", "192.168.77.20"))
        self.assertEqual(p.size, 4)
        self.assertIn("192.168.77.11", p)
        self.assertIn("192.168.77.20", p)
        self.assertNotIn("192.168.77.13", p)
        self.assertNotIn("not an address", p)
        self.assertEqual(p.netmask, "255.255.255.0")

    def test_walk_covers_every_address_once(self) -> None:
        p = pool(("192.168.77.10", "192.168.77.12"), ("192.168.77.20", "192.168.77.21"))
        walked = list(p.walk("mac:x"))
        self.assertEqual(sorted(walked), sorted(["192.168.77.10", "192.168.77.11",
                                                 "192.168.77.12", "192.168.77.20",
                                                 "192.168.77.21"]))

    def test_walk_starts_per_client(self) -> None:
        p = pool(("192.168.77.0", "192.168.77.255"))
        starts = {next(p.walk(f"mac:{i}")) for i in range(20)}
        self.assertGreater(len(starts), 10)


class CandidateTests(unittest.TestCase):
    p = pool(("192.168.77.10", "192.168.77.13"))

    def test_own_address_first_even_expired(self) -> None:
        leases = [Lease("mac:a", "a", "192.168.77.12", 50.0, BOUND)]
        self.assertEqual(next(candidates(self.p, "mac:a", leases, 100.0)), "192.168.77.12")

    def test_requested_next(self) -> None:
        got = list(candidates(self.p, "mac:a", [], 0.0, requested="192.168.77.11"))
        self.assertEqual(got[0], "192.168.77.11")
        self.assertEqual(len(got), 4)

    def test_requested_outside_pool_ignored(self) -> None:
        got = list(candidates(self.p, "mac:a", [], 0.0, requested="192.168.77.99"))
        self.assertNotIn("192.168.77.99", got)

    def test_held_by_others_never(self) -> None:
        leases = [Lease("mac:b", "b", "192.168.77.10", 200.0, BOUND),
                  Lease("mac:c", "c", "192.168.77.11", 200.0, OFFERED),
                  Lease("declined:192.168.77.12", "", "192.168.77.12", 200.0, DECLINED)]
        got = list(candidates(self.p, "mac:a", leases, 100.0, requested="192.168.77.10"))
        self.assertEqual(got, ["192.168.77.13"])

    def test_expired_of_others_last_oldest_first(self) -> None:
        leases = [Lease("mac:b", "b", "192.168.77.10", 90.0, BOUND),
                  Lease("mac:c", "c", "192.168.77.11", 10.0, BOUND)]
        got = list(candidates(self.p, "mac:a", leases, 100.0))
        self.assertEqual(got[2:], ["192.168.77.11", "192.168.77.10"])
        self.assertEqual(sorted(got[:2]), ["192.168.77.12", "192.168.77.13"])
