"""
Tests for L{pxed.config.dhcp}: the C{dhcp:} section, exactly as the
README documents it, and a one-line error naming the file and key for
each mistake.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from twisted.trial import unittest

from pxed.config import ConfigError, parse_config
from pxed.config.dhcp import DEFAULT_LEASE_FILE

RANGE = "192.168.77.100-192.168.77.199"


class DHCPConfigTests(unittest.TestCase):
    def parse(self, dhcp: Any) -> Any:
        return parse_config({"bootloaders": {"x86-bios": None, "x64-uefi": None},
                             "dhcp": dhcp}, "pxed.yaml").dhcp

    def fails(self, dhcp: Any, key: str, words: str) -> None:
        with self.assertRaises(ConfigError) as caught:
            self.parse(dhcp)
        message = str(caught.exception)
        self.assertTrue(message.startswith(f"pxed.yaml: {key}: "), message)
        self.assertIn(words, message)
        self.assertNotIn("\n", message)

    def test_default_is_proxy(self) -> None:
        config = self.parse(None)
        self.assertFalse(config.full)
        self.assertEqual(config.mode, "proxy")

    def test_issue_example(self) -> None:
        lease_file = Path(self.mktemp()).absolute()
        config = self.parse({"mode": "full", "range": RANGE, "router": "192.168.77.254",
                             "dns": ["192.168.77.254"], "lease_time": "1h", "clients": "all",
                             "ping": True, "lease_file": str(lease_file)})
        self.assertTrue(config.full)
        self.assertEqual(config.local.ranges, ((ipaddress.IPv4Address("192.168.77.100"),
                                               ipaddress.IPv4Address("192.168.77.199")),))
        self.assertEqual((config.router, config.dns, config.lease_time, config.clients,
                          config.ping, config.lease_file),
                         ("192.168.77.254", ("192.168.77.254",), 3600.0, "all", True,
                          lease_file))

    def test_defaults(self) -> None:
        config = self.parse({"mode": "full", "range": RANGE})
        self.assertEqual((config.lease_time, config.clients, config.ping, config.lease_file,
                          config.router, config.dns),
                         (3600.0, "all", True, DEFAULT_LEASE_FILE, None, ()))

    def test_list_of_ranges_and_relayed(self) -> None:
        config = self.parse({"mode": "full", "range": [RANGE, "192.168.77.20-192.168.77.29"],
                             "ranges": {"10.20.0.0/24": "10.20.0.100-10.20.0.199",
                                        "10.30.0.0/16": ["10.30.1.1-10.30.1.9"]}})
        self.assertEqual(len(config.local.ranges), 2)
        self.assertEqual([str(p.network) for p in config.relayed],
                         ["10.20.0.0/24", "10.30.0.0/16"])
        self.assertEqual(config.relayed[0].size, 100)

    def test_mistakes(self) -> None:
        self.fails({"mode": "both"}, "dhcp.mode", "proxy or full")
        self.fails({"range": RANGE}, "dhcp.range", "only applies with dhcp.mode: full")
        self.fails({"mode": "full"}, "dhcp.range", "needs addresses")
        self.fails({"mode": "full", "range": "192.168.77.100"}, "dhcp.range", "must be a range")
        self.fails({"mode": "full", "range": "192.168.77.200-192.168.77.100"}, "dhcp.range",
                   "comes after")
        self.fails({"mode": "full", "range": "192.168.77.x-192.168.77.100"}, "dhcp.range",
                   "not an IPv4 address")
        self.fails({"mode": "full", "range": [RANGE, "192.168.77.150-192.168.77.160"]},
                   "dhcp.range[1]", "overlaps")
        self.fails({"mode": "full", "ranges": {"10.20.0.0/24": "10.21.0.1-10.21.0.9"}},
                   "dhcp.ranges.10.20.0.0/24", "not inside")
        self.fails({"mode": "full", "ranges": {"10.20.0.0/24": "10.20.0.0-10.20.0.9"}},
                   "dhcp.ranges.10.20.0.0/24", "broadcast")
        self.fails({"mode": "full", "ranges": {"10.20.0.1/24": "10.20.0.1-10.20.0.9"}},
                   "dhcp.ranges.10.20.0.1/24", "not an IPv4 subnet")
        self.fails({"mode": "full", "range": RANGE, "router": "nope"}, "dhcp.router",
                   "not an IPv4 address")
        self.fails({"mode": "full", "range": RANGE, "dns": ["1.1.1.1", "x"]}, "dhcp.dns[1]",
                   "not an IPv4 address")
        self.fails({"mode": "full", "range": RANGE, "lease_time": "soon"}, "dhcp.lease_time",
                   "duration")
        self.fails({"mode": "full", "range": RANGE, "lease_time": 10}, "dhcp.lease_time",
                   "at least a minute")
        self.fails({"mode": "full", "range": RANGE, "clients": "some"}, "dhcp.clients",
                   "all or boot")
        self.fails({"mode": "full", "range": RANGE, "ping": "yes"}, "dhcp.ping", "true or false")
        self.fails({"mode": "full", "range": RANGE, "lease_file": "leases.json"},
                   "dhcp.lease_file", "absolute")
        self.fails({"mode": "full", "range": RANGE, "extra": 1}, "dhcp.extra", "unknown key")

    def test_bad_lease_file(self) -> None:
        path = Path(self.mktemp()).absolute()
        path.write_text("not json")
        self.fails({"mode": "full", "range": RANGE, "lease_file": str(path)}, "dhcp.lease_file",
                   str(path))
