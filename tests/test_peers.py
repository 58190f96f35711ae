"""
Tests for L{pxed.peers}: finding the MAC behind a client address.
"""

from __future__ import annotations

from pathlib import Path

from twisted.trial import unittest

from pxed.peers import PeerMap, read_neighbours

ARP = """\
IP address       HW type     Flags       HW address            Mask     Device
192.168.77.50    0x1         0x2         52:54:00:77:00:20     *        br0
192.168.77.51    0x1         0x0         00:00:00:00:00:00     *        br0
192.168.77.52    0x1         0x6         52:54:00:77:00:AB     *        br0
garbage
192.168.77.53    0x1         zz          52:54:00:77:00:53     *        br0
"""


class ReadNeighboursTests(unittest.TestCase):
    def test_complete_entries_only(self) -> None:
        path = Path(self.mktemp())
        path.write_text(ARP)
        self.assertEqual(read_neighbours(str(path)), {
            "192.168.77.50": "52:54:00:77:00:20",
            "192.168.77.52": "52:54:00:77:00:ab",
        })

    def test_no_table(self) -> None:
        self.assertEqual(read_neighbours(self.mktemp()), {})

    def test_this_host(self) -> None:
        """
        The real table parses (whatever is in it) into addresses and MACs.
        """
        for address, mac in read_neighbours().items():
            self.assertEqual(len(address.split(".")), 4, address)
            self.assertEqual(len(mac.split(":")), 6, mac)


class PeerMapTests(unittest.TestCase):
    def setUp(self) -> None:
        self.table: dict[str, str] = {}
        self.reads = 0

        def neighbours() -> dict[str, str]:
            self.reads += 1
            return dict(self.table)

        self.peers = PeerMap(max_entries=3, neighbours=neighbours)

    def test_learned(self) -> None:
        self.peers.learn("10.0.0.5", "52:54:00:00:00:05")
        self.assertEqual(self.peers.mac("10.0.0.5"), "52:54:00:00:00:05")
        self.assertEqual(self.reads, 0)

    def test_latest_pair_wins(self) -> None:
        """
        A lease moves to another machine: the newer pair is the truth.
        """
        self.peers.learn("10.0.0.5", "52:54:00:00:00:05")
        self.peers.learn("10.0.0.5", "52:54:00:00:00:06")
        self.assertEqual(self.peers.mac("10.0.0.5"), "52:54:00:00:00:06")

    def test_nothing_to_learn(self) -> None:
        for address in (None, "", "0.0.0.0"):
            self.peers.learn(address, "52:54:00:00:00:05")
        self.peers.learn("10.0.0.5", "")
        self.assertIsNone(self.peers.mac("0.0.0.0"))
        self.assertIsNone(self.peers.mac("10.0.0.5"))

    def test_bounded_least_recent_first(self) -> None:
        for n in range(1, 4):
            self.peers.learn(f"10.0.0.{n}", f"52:54:00:00:00:0{n}")
        self.peers.learn("10.0.0.1", "52:54:00:00:00:01")  # seen again: kept
        self.peers.learn("10.0.0.4", "52:54:00:00:00:04")
        self.assertEqual(self.peers.mac("10.0.0.1"), "52:54:00:00:00:01")
        self.assertIsNone(self.peers.mac("10.0.0.2"))
        self.assertEqual(self.peers.mac("10.0.0.4"), "52:54:00:00:00:04")

    def test_neighbour_table(self) -> None:
        """
        An address never learned is looked up in the neighbour table each
        time (it follows leases), and learned pairs come first.
        """
        self.table["10.0.0.9"] = "52:54:00:00:00:09"
        self.assertEqual(self.peers.mac("10.0.0.9"), "52:54:00:00:00:09")
        self.table["10.0.0.9"] = "52:54:00:00:00:10"
        self.assertEqual(self.peers.mac("10.0.0.9"), "52:54:00:00:00:10")
        self.assertEqual(self.reads, 2)
        self.peers.learn("10.0.0.9", "52:54:00:00:00:11")
        self.assertEqual(self.peers.mac("10.0.0.9"), "52:54:00:00:00:11")
        self.assertEqual(self.reads, 2)
        self.assertIsNone(self.peers.mac("10.0.0.10"))
