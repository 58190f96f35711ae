"""
Tests for the DHCP side of the configuration (L{pxed.config.server}):
several interfaces, per-relay-subnet addresses, the PXE menu, and
bootloaders for every architecture, HTTP Boot included.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from twisted.trial import unittest

from pxed import config
from pxed.config import ConfigError, parse_config
from pxed.dhcp.menu import PXEMenu
from pxed.machine import ARCHITECTURE_SLUGS
from tests.fixtures import write_bootloaders


class ServerSectionTests(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).absolute()
        self.dir.mkdir()
        loaders = write_bootloaders(self.dir)
        self.patch(config.server, "DEFAULT_BOOTLOADERS", loaders)

    def server(self, **section: Any) -> Any:
        return parse_config({"server": section}, "site.yaml").server

    def assertError(self, section: dict[str, Any], key: str, *words: str) -> None:
        error = self.assertRaises(ConfigError, parse_config, {"server": section}, "site.yaml")
        self.assertEqual(error.key, key)
        for word in words:
            self.assertIn(word, str(error))

    def test_defaults(self) -> None:
        server = self.server()
        self.assertEqual((server.interfaces, server.relays, server.menu), ((), (), None))

    def test_interfaces(self) -> None:
        self.assertEqual(self.server(interfaces=["br0", "br1"]).interfaces, ("br0", "br1"))
        self.assertError({"interfaces": "br0"}, "server.interfaces", "list")
        self.assertError({"interfaces": []}, "server.interfaces", "non-empty")
        self.assertError({"interfaces": ["br0", 3]}, "server.interfaces[1]")
        self.assertError({"interfaces": ["br0", "br0"]}, "server.interfaces", "twice")
        self.assertError({"interface": "br0", "interfaces": ["br1"]}, "server.interfaces",
                         "either")

    def test_relays(self) -> None:
        relays = self.server(relays={"10.0.0.0/8": "192.168.1.1",
                                     "10.2.0.0/24": "192.168.2.1"}).relays
        # Most specific first.
        self.assertEqual(relays, ((ipaddress.IPv4Network("10.2.0.0/24"), "192.168.2.1"),
                                  (ipaddress.IPv4Network("10.0.0.0/8"), "192.168.1.1")))
        # Host bits are tolerated: the subnet of 10.3.0.1/24.
        self.assertEqual(self.server(relays={"10.3.0.1/24": "1.2.3.4"}).relays[0][0],
                         ipaddress.IPv4Network("10.3.0.0/24"))

    def test_bad_relays(self) -> None:
        self.assertError({"relays": ["10.0.0.0/8"]}, "server.relays", "mapping")
        self.assertError({"relays": {"10.0.0.0/33": "1.2.3.4"}}, "server.relays.10.0.0.0/33",
                         "subnet")
        self.assertError({"relays": {"fd00::/64": "1.2.3.4"}}, "server.relays.fd00::/64")
        for address in ("0.0.0.0", "224.0.0.1", "255.255.255.255", "nope", 7):
            self.assertError({"relays": {"10.0.0.0/8": address}}, "server.relays.10.0.0.0/8")

    def test_menu(self) -> None:
        self.assertEqual(self.server(menu=True).menu, PXEMenu())
        self.assertIsNone(self.server(menu=False).menu)
        menu = self.server(menu={"prompt": "F8!", "timeout": 0, "network": "Net",
                                 "local": "Disk"}).menu
        self.assertEqual(menu, PXEMenu(prompt="F8!", timeout=0, network_label="Net",
                                       local_label="Disk"))
        self.assertEqual(self.server(menu={"timeout": 255}).menu.prompt, PXEMenu.prompt)

    def test_bad_menu(self) -> None:
        for timeout in (-1, 256, "5", True, 1.5):
            self.assertError({"menu": {"timeout": timeout}}, "server.menu.timeout", "0..255")
        self.assertError({"menu": {"prompt": "é"}}, "server.menu.prompt", "ASCII")
        self.assertError({"menu": {"local": "x" * 71}}, "server.menu.local", "70")
        self.assertError({"menu": {"local": "a\nb"}}, "server.menu.local", "printable")
        self.assertError({"menu": {"items": []}}, "server.menu.items", "unknown key")
        self.assertError({"menu": "yes"}, "server.menu", "mapping")

    def test_log_packets(self) -> None:
        self.assertFalse(self.server().log_packets)
        self.assertTrue(self.server(log_packets=True).log_packets)
        self.assertError({"log_packets": "yes"}, "server.log_packets", "true or false")

    def test_broadcast_not_advertised(self) -> None:
        self.assertError({"address": "255.255.255.255"}, "server.address", "cannot be advertised")


class BootloaderSlugTests(unittest.TestCase):
    def test_every_architecture_can_be_named(self) -> None:
        """
        Every slug of the IANA table, HTTP Boot codes included, is a valid
        key of the bootloaders section.
        """
        base = Path(self.mktemp()).absolute()
        base.mkdir()
        section = {}
        for slug in sorted(ARCHITECTURE_SLUGS):
            path = base / f"{slug}.efi"
            path.write_bytes(b"x")
            section[slug] = str(path)
        loaded = parse_config({"bootloaders": section})
        self.assertEqual({slug: str(path) for slug, path in loaded.bootloaders.items()}, section)
        self.assertIn("x64-uefi-http", loaded.bootloaders)
        self.assertIn("arm64-uefi", loaded.bootloaders)
