"""
Tests for how L{pxed.dhcp.responder.BootResponder} carries out the policy's
decision: the question it asks, silence for C{ignore}, TFTP for chained
files, and the signed network context in iPXE's script URL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from twisted.internet.defer import Deferred, ensureDeferred, succeed
from twisted.trial import unittest
from zope.interface import implementer

from pxed.dhcp.responder import BootResponder
from pxed.machine import Machine, architecture
from pxed.policy import BootRequest, Chain, IBootPolicy, Ignore, LocalBoot, Rule, RulePolicy
from pxed.policy.actions import firmware_name
from pxed.policy.match import InterfaceMatcher, Match, RelayMatcher, SubnetMatcher
from pxed.policy.request import ScriptContext, open_context
from pxed.signing import Signer
from pxed.state import MemoryBootLog
from pxed.testing.policy import nets
from tests.fixtures import write_bootloaders

MAC = "52:54:00:77:00:10"
SERVER = "192.168.77.1"


@implementer(IBootPolicy)
class Recording:
    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.asked: list[BootRequest] = []

    def boot_spec(self, request: BootRequest) -> Deferred[Any]:
        self.asked.append(request)
        return succeed(self.answer)


class ResponderPolicyTests(unittest.TestCase):
    def setUp(self) -> None:
        base = Path(self.mktemp()).absolute()
        base.mkdir()
        self.bootloaders = write_bootloaders(base)
        self.grub = str(base / "grubx64.efi")
        self.signer = Signer(b"r" * 32)
        self.responder = BootResponder(Recording(LocalBoot()), self.bootloaders, 80,
                                       MemoryBootLog(), signer=self.signer)

    def answer(self, machine: Machine, **kwargs: Any) -> Any:
        return self.successResultOf(ensureDeferred(
            self.responder.answer(machine, SERVER, "proxydhcp", **kwargs)))

    def test_question(self) -> None:
        policy = Recording(LocalBoot())
        self.responder.policy = policy
        machine = Machine(MAC, architecture(7))
        self.answer(machine, interface="eth1", relay="10.9.0.1")
        self.assertEqual(policy.asked, [BootRequest(machine, "proxydhcp", interface="eth1",
                                                    relay="10.9.0.1", local_address=SERVER)])

    def test_ignore_is_silent(self) -> None:
        self.responder.policy = RulePolicy([Rule("i", Match(), Ignore())])
        for machine in (Machine(MAC, architecture(0)), Machine(MAC, architecture(7), ipxe=True)):
            self.assertIsNone(self.answer(machine))

    def test_local_chains_ipxe_first(self) -> None:
        """
        PXE firmware told to boot locally gets iPXE, whose script exits.
        """
        answer = self.answer(Machine(MAC, architecture(7)))
        self.assertEqual(answer.bootfile, "snponly.efi")

    def test_chain_local_file_by_tftp(self) -> None:
        self.responder.policy = Recording(Chain(self.grub))
        answer = self.answer(Machine(MAC, architecture(7)))
        self.assertEqual(answer.bootfile, firmware_name(self.grub))
        # iPXE itself fetches it over HTTP through its script instead.
        answer = self.answer(Machine(MAC, architecture(7), ipxe=True))
        self.assertIn("/_/ipxe?", answer.bootfile)

    def test_chain_url_goes_through_ipxe(self) -> None:
        self.responder.policy = Recording(Chain("http://boot.example/netboot.xyz.efi"))
        self.assertEqual(self.answer(Machine(MAC, architecture(0))).bootfile, "undionly.kpxe")

    def test_context_in_script_url(self) -> None:
        answer = self.answer(Machine(MAC, architecture(7), ipxe=True), interface="eth1",
                             relay="10.9.0.1")
        query = parse_qs(urlsplit(answer.bootfile).query)
        context = open_context(self.signer, query["ctx"][0])
        assert context is not None
        self.assertEqual((context.mac, context.network()),
                         (MAC, {"interface": "eth1", "relay": "10.9.0.1", "local_address": SERVER}))

    def test_user_class_in_script_url(self) -> None:
        """
        The user class the DHCP request sent goes into the signed context,
        for user_class rules to decide the same way for the script.
        """
        machine = Machine(MAC, architecture(7), ipxe=True, user_class="netboot")
        query = parse_qs(urlsplit(self.answer(machine).bootfile).query)
        self.assertEqual(open_context(self.signer, query["ctx"][0]),
                         ScriptContext(MAC, local_address=SERVER, user_class="netboot"))

    def test_network_rules(self) -> None:
        """
        Interface, subnet and relay rules decide at the DHCP stage.
        """
        self.responder.policy = RulePolicy([
            Rule("eth2", Match((InterfaceMatcher(("eth2",)),)), Ignore()),
            Rule("relayed", Match((RelayMatcher(nets("10.9.0.0/24")),)), Ignore()),
            Rule("lab", Match((SubnetMatcher(nets("192.168.77.0/24")),)), LocalBoot()),
        ])
        machine = Machine(MAC, architecture(0))
        self.assertIsNone(self.answer(machine, interface="eth2"))
        self.assertIsNone(self.answer(machine, relay="10.9.0.5"))
        self.assertIsNotNone(self.answer(machine, interface="eth1"))
