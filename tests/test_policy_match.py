"""
Tests for L{pxed.policy.match}: every match key, on its own and combined.
"""

from __future__ import annotations

from twisted.trial import unittest
from zope.interface.verify import verifyObject

from pxed.machine import Firmware, Machine, architecture
from pxed.policy import BootRequest
from pxed.policy.match import (
    ArchMatcher,
    FirmwareMatcher,
    IMatcher,
    InterfaceMatcher,
    MacMatcher,
    Match,
    RelayMatcher,
    SubnetMatcher,
    UserClassMatcher,
    UUIDMatcher,
)
from pxed.testing.policy import nets

MAC = "52:54:00:12:34:56"
GUID = "12345678-9abc-def0-1122-334455667788"


def request(mac: str = MAC, code: int = 7, **kwargs: object) -> BootRequest:
    machine_fields = {k: kwargs.pop(k) for k in ("uuid", "ipxe", "user_class") if k in kwargs}
    return BootRequest(Machine(mac, architecture(code), **machine_fields),  # type: ignore[arg-type]
                       "proxydhcp", **kwargs)  # type: ignore[arg-type]


class MatcherTests(unittest.TestCase):
    def test_mac_exact(self) -> None:
        m = MacMatcher((MAC,))
        self.assertTrue(m.matches(request()))
        self.assertTrue(m.matches(request(MAC.upper())))
        self.assertFalse(m.matches(request("52:54:00:12:34:57")))

    def test_mac_oui(self) -> None:
        m = MacMatcher(("52:54:00",))
        self.assertTrue(m.matches(request()))
        self.assertFalse(m.matches(request("52:54:01:12:34:56")))
        # An OUI is a prefix of whole octets, not of characters.
        self.assertFalse(MacMatcher(("52:54:0",)).matches(request()))

    def test_mac_glob(self) -> None:
        self.assertTrue(MacMatcher(("52:54:00:*",)).matches(request()))
        self.assertTrue(MacMatcher(("*:56",)).matches(request()))
        self.assertTrue(MacMatcher(("52:54:00:12:34:5[0-7]",)).matches(request()))
        self.assertFalse(MacMatcher(("52:54:00:12:34:5[7-9]",)).matches(request()))
        self.assertTrue(MacMatcher(("aa:*", "52:*")).matches(request()))

    def test_arch(self) -> None:
        self.assertTrue(ArchMatcher(slugs=frozenset({"x64-uefi"})).matches(request(code=9)))
        self.assertFalse(ArchMatcher(slugs=frozenset({"x64-uefi"})).matches(request(code=0)))
        self.assertTrue(ArchMatcher(codes=frozenset({11})).matches(request(code=11)))
        self.assertFalse(ArchMatcher(codes=frozenset({11})).matches(request(code=7)))

    def test_firmware(self) -> None:
        uefi = FirmwareMatcher(frozenset({Firmware.UEFI}))
        self.assertTrue(uefi.matches(request(code=7)))
        self.assertFalse(uefi.matches(request(code=0)))
        ipxe = FirmwareMatcher(ipxe=True)
        self.assertTrue(ipxe.matches(request(code=0, ipxe=True)))
        self.assertFalse(ipxe.matches(request(code=0)))

    def test_uuid(self) -> None:
        m = UUIDMatcher(frozenset({GUID}))
        self.assertTrue(m.matches(request(uuid=GUID.upper())))
        self.assertFalse(m.matches(request(uuid=GUID.replace("1", "2"))))
        self.assertFalse(m.matches(request()))

    def test_user_class(self) -> None:
        m = UserClassMatcher(("iPXE",))
        self.assertTrue(m.matches(request(user_class="iPXE")))
        self.assertFalse(m.matches(request(user_class="ipxe")))
        self.assertFalse(m.matches(request()))
        self.assertTrue(UserClassMatcher(("rack-*",)).matches(request(user_class="rack-7")))

    def test_interface(self) -> None:
        m = InterfaceMatcher(("eth1", "br-*"))
        self.assertTrue(m.matches(request(interface="eth1")))
        self.assertTrue(m.matches(request(interface="br-lab")))
        self.assertFalse(m.matches(request(interface="eth0")))
        self.assertFalse(m.matches(request()))

    def test_subnet(self) -> None:
        m = SubnetMatcher(nets("10.1.0.0/16"))
        # Direct: pxed's address on the receiving interface.
        self.assertTrue(m.matches(request(local_address="10.1.2.3")))
        # Relayed: the relay's address on the client's subnet wins.
        self.assertTrue(m.matches(request(local_address="192.168.0.1", relay="10.1.9.1")))
        self.assertFalse(m.matches(request(local_address="10.1.2.3", relay="10.2.0.1")))
        # Once the client has an address (HTTP), that one.
        self.assertTrue(m.matches(request(client_address="10.1.7.7", relay="10.9.0.1")))
        self.assertFalse(m.matches(request()))
        self.assertFalse(m.matches(request(local_address="not an address")))

    def test_relay(self) -> None:
        m = RelayMatcher(nets("10.9.0.1/32", "172.16.0.0/12"))
        self.assertTrue(m.matches(request(relay="10.9.0.1")))
        self.assertTrue(m.matches(request(relay="172.20.1.1")))
        self.assertFalse(m.matches(request(relay="10.9.0.2")))
        self.assertFalse(m.matches(request(local_address="10.9.0.1")))

    def test_match_all(self) -> None:
        m = Match((MacMatcher(("52:54:00",)), ArchMatcher(codes=frozenset({7}))))
        self.assertTrue(m.matches(request()))
        self.assertFalse(m.matches(request(code=0)))
        self.assertFalse(m.matches(request("aa:bb:cc:dd:ee:ff")))
        self.assertTrue(Match().matches(request("aa:bb:cc:dd:ee:ff", code=0)))

    def test_interfaces(self) -> None:
        for matcher in (MacMatcher((MAC,)), ArchMatcher(), FirmwareMatcher(),
                        UUIDMatcher(frozenset()), UserClassMatcher(()), InterfaceMatcher(()),
                        SubnetMatcher(()), RelayMatcher(()), Match()):
            verifyObject(IMatcher, matcher)
