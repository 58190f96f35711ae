"""
Tests for L{pxed.policy}: actions, rules in order with first match
winning, 'once', the C{boot:} section as rules, and the signed network
context.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.trial import unittest
from zope.interface import implementer
from zope.interface.verify import verifyObject

from pxed.machine import Machine, architecture
from pxed.policy import (
    BootRequest,
    BootSpec,
    Chain,
    IBootAction,
    IBootPolicy,
    Ignore,
    IPXEScript,
    IRule,
    LocalBoot,
    Rule,
    RulePolicy,
    StaticPolicy,
)
from pxed.policy.actions import firmware_name
from pxed.policy.match import ArchMatcher, MacMatcher, Match
from pxed.policy.request import (
    CONTEXT_PURPOSE,
    ScriptContext,
    once_rule,
    once_token,
    open_context,
    sign_context,
)
from pxed.policy.rules import boot_section_rules
from pxed.signing import Signer
from pxed.store import MemoryStateStore
from pxed.templates import ScriptEnv

MAC = "52:54:00:12:34:56"
OTHER = "52:54:00:99:99:99"
LINUX = BootSpec("/srv/vmlinuz", ("/srv/initrd",), "quiet")


def ask(mac: str = MAC, code: int = 7) -> BootRequest:
    return BootRequest(Machine(mac, architecture(code)), "proxydhcp")


def env(request: BootRequest | None = None) -> ScriptEnv:
    return ScriptEnv(request or ask(), "10.0.0.1", "http://10.0.0.1", "http://10.0.0.1/b",
                     file_url=lambda loc: loc if "://" in loc else "F" + loc,
                     export_url=lambda n, p: f"E{n}{p}")


def on(mac: str) -> Match:
    return Match((MacMatcher((mac,)),))


class ActionTests(unittest.TestCase):
    def test_interfaces(self) -> None:
        for action in (LINUX, IPXEScript("#!ipxe\n"), Chain("/x"), LocalBoot(), Ignore()):
            verifyObject(IBootAction, action)

    def test_silent_only_for_ignore(self) -> None:
        self.assertEqual([a.silent for a in (LINUX, IPXEScript(""), Chain("/x"), LocalBoot(),
                                             Ignore())], [False, False, False, False, True])

    def test_firmware_file(self) -> None:
        self.assertEqual(Chain("/srv/grubx64.efi").firmware_file(), "/srv/grubx64.efi")
        self.assertIsNone(Chain("http://h/netboot.xyz.efi").firmware_file())
        for action in (LINUX, IPXEScript(""), LocalBoot()):
            self.assertIsNone(action.firmware_file())

    def test_firmware_name(self) -> None:
        name = firmware_name("/srv/tftp/grubx64.efi")
        self.assertRegex(name, r"^chain-[0-9a-f]{12}/grubx64\.efi$")
        self.assertEqual(name, firmware_name("/srv/tftp/grubx64.efi"))
        self.assertNotEqual(name, firmware_name("/other/grubx64.efi"))

    def test_linux_script(self) -> None:
        text = BootSpec("/k", ("http://h/i",), "m={{ mac }}", message="hi {{ arch }}") \
            .ipxe_script(env())
        self.assertIn(f"kernel F/k initrd=i m={MAC}", text)
        self.assertIn("initrd --name i http://h/i", text)
        self.assertIn("echo hi x64-uefi", text)

    def test_linux_without_initrd_args(self) -> None:
        text = BootSpec("/k", ("/i",), "q", initrd_args=False).ipxe_script(env())
        self.assertIn("kernel F/k q\n", text)

    def test_chain_and_local(self) -> None:
        self.assertIn("chain --autofree F/g.efi x\n", Chain("/g.efi", "x").ipxe_script(env()))
        self.assertIn("chain --autofree http://h/n.efi\n",
                      Chain("http://h/n.efi").ipxe_script(env()))
        self.assertIn("exit 0", LocalBoot().ipxe_script(env()))

    def test_cmdline_newlines_cannot_add_commands(self) -> None:
        text = BootSpec("/k", (), "a\nshell\nb").ipxe_script(env())
        self.assertNotIn("\nshell", text)
        self.assertIn("a shell b", text)


class RulePolicyTests(unittest.TestCase):
    def decide(self, policy: Any, request: BootRequest | None = None) -> Any:
        return self.successResultOf(policy.boot_spec(request or ask()))

    def test_first_match_wins(self) -> None:
        policy = RulePolicy([
            Rule("uefi", Match((ArchMatcher(codes=frozenset({7})),)), LocalBoot()),
            Rule("mine", on(MAC), LINUX),
            Rule("all", Match(), Chain("/x")),
        ])
        verifyObject(IBootPolicy, policy)
        self.assertEqual(self.decide(policy), LocalBoot())
        self.assertEqual(self.decide(policy).rule, "uefi")
        self.assertEqual(self.decide(policy, ask(code=0)), LINUX)
        self.assertEqual(self.decide(policy, ask(OTHER, 0)), Chain("/x"))

    def test_no_match_is_silence(self) -> None:
        self.assertIsNone(self.decide(RulePolicy([Rule("m", on(OTHER), LINUX)])))
        self.assertIsNone(self.decide(RulePolicy([])))

    def test_ignore_stops_the_search(self) -> None:
        policy = RulePolicy([Rule("i", on(MAC), Ignore()), Rule("all", Match(), LINUX)])
        self.assertIsNone(self.decide(policy))
        self.assertEqual(self.decide(policy, ask(OTHER)), LINUX)

    def test_once(self) -> None:
        store = MemoryStateStore()
        policy = RulePolicy([Rule("install", on(MAC), LINUX, once=True),
                             Rule("disk", Match(), LocalBoot())], store)
        first = self.decide(policy)
        self.assertEqual((first, first.once, first.rule), (LINUX, "install", "install"))
        self.successResultOf(store.mark_once(OTHER, "install"))
        self.assertEqual(self.decide(policy), LINUX)
        self.successResultOf(store.mark_once(MAC, "install"))
        later = self.decide(policy)
        self.assertEqual((later, later.once), (LocalBoot(), None))
        self.successResultOf(store.clear_once(MAC))
        self.assertEqual(self.decide(policy), LINUX)

    def test_async_rules(self) -> None:
        @implementer(IRule)
        class Later:
            name = "later"
            once = False

            def __init__(self) -> None:
                self.d: Deferred[Any] = Deferred()

            def decide(self, request: BootRequest) -> Deferred[Any]:
                return self.d

        rule = Later()
        verifyObject(IRule, rule)
        d = RulePolicy([rule, Rule("all", Match(), LINUX)]).boot_spec(ask())
        self.assertNoResult(d)
        rule.d.callback(None)
        self.assertEqual(self.successResultOf(d), LINUX)

    def test_boot_section_order(self) -> None:
        """
        C{boot.machines} come first, C{boot.default} last, around the rules.
        """
        first, last = boot_section_rules({MAC: LINUX}, BootSpec("/default"))
        policy = RulePolicy([*first, Rule("r", Match(), Chain("/c")), *last])
        self.assertEqual(self.decide(policy), LINUX)
        self.assertEqual(self.decide(policy).rule, f"boot.machines.{MAC}")
        self.assertEqual(self.decide(policy, ask(OTHER)), Chain("/c"))
        only_default = RulePolicy([*boot_section_rules({}, BootSpec("/default"))[1]])
        self.assertEqual(self.decide(only_default, ask(OTHER)).rule, "boot.default")
        self.assertEqual(boot_section_rules({}, None), ([], []))

    def test_static_policy(self) -> None:
        policy = StaticPolicy({MAC: LINUX}, default=BootSpec("/d"))
        verifyObject(IBootPolicy, policy)
        self.assertEqual(self.successResultOf(policy.boot_spec(ask())), LINUX)
        self.assertEqual(self.successResultOf(policy.boot_spec(ask(OTHER))), BootSpec("/d"))
        self.assertIsNone(self.successResultOf(StaticPolicy({}).boot_spec(ask())))

    def test_rule_interface(self) -> None:
        rule = Rule("r", Match(), LINUX)
        verifyObject(IRule, rule)
        self.assertEqual(self.successResultOf(rule.decide(ask())), LINUX)
        self.assertIsNone(self.successResultOf(Rule("r", on(OTHER), LINUX).decide(ask())))
        self.assertIsInstance(succeed(None), Deferred)


class ContextTests(unittest.TestCase):
    def test_round_trip(self) -> None:
        signer = Signer(b"c" * 32)
        request = BootRequest(Machine(MAC, architecture(7)), "proxydhcp", interface="eth1",
                              relay="10.9.0.1", local_address="10.0.0.1")
        token = sign_context(signer, request)
        assert token is not None
        context = open_context(signer, token)
        assert context is not None
        self.assertEqual(context.network(),
                         {"interface": "eth1", "relay": "10.9.0.1", "local_address": "10.0.0.1"})
        self.assertEqual(context.mac, MAC)
        self.assertNotEqual(context.mac, OTHER)
        self.assertIsNone(open_context(Signer(b"d" * 32), token))
        self.assertIsNone(open_context(signer, None))
        self.assertIsNone(open_context(signer, signer.sign("context", "[1]")))
        # Even with nothing but the MAC: the signature makes its beacon a boot.
        bare = open_context(signer, sign_context(signer, ask()))
        assert bare is not None
        self.assertEqual(bare.network(),
                         {"interface": None, "relay": None, "local_address": None})

    def test_user_class(self) -> None:
        """
        The DHCP request's user class is signed in, even with no network
        context; a context signed without one (before pxed carried it)
        reads as iPXE's, and one signed with none stays without.
        """
        signer = Signer(b"c" * 32)
        machine = Machine(MAC, architecture(7), ipxe=True, user_class="netboot")
        self.assertEqual(open_context(signer, sign_context(signer, BootRequest(machine))),
                         ScriptContext(MAC, user_class="netboot"))
        none = sign_context(signer, BootRequest(Machine(MAC, architecture(7)), interface="e"))
        self.assertEqual(open_context(signer, none), ScriptContext(MAC, "e", user_class=None))
        old = signer.sign(CONTEXT_PURPOSE, json.dumps({"m": MAC, "i": "eth1", "r": None,
                                                       "l": None}))
        self.assertEqual(open_context(signer, old), ScriptContext(MAC, "eth1", user_class="iPXE"))
        for token in (None, "", old[:-1], signer.sign(CONTEXT_PURPOSE, '{"i":"eth1"}'),
                      signer.sign("once", json.dumps({"m": MAC}))):
            self.assertIsNone(open_context(signer, token), token)


class OnceTokenTests(unittest.TestCase):
    def test_for_its_machine_only(self) -> None:
        """
        A beacon's 'once' token ends its rule for the machine it was made
        for; for another machine, or signed with another key, it ends
        nothing and says why.
        """
        signer = Signer(b"k" * 32)
        token = once_token(signer, "52:54:00:00:00:01", "install")
        self.assertEqual(once_rule(signer, "52:54:00:00:00:01", token), ("install", None))
        self.assertEqual(once_rule(signer, "52:54:00:00:00:02", token),
                         (None, "a 'once' token made for 52:54:00:00:00:01"))
        self.assertEqual(once_rule(Signer(b"x" * 32), "52:54:00:00:00:01", token),
                         (None, "a forged 'once' token"))


class StampTests(unittest.TestCase):
    """
    The answer names the rule that chose it; a configured rule's stamped
    action is made once and handed out again, a rule giving a new action
    each time (an API) gets each one stamped.
    """

    def test_same_rule_same_answer(self) -> None:
        policy = RulePolicy([Rule("mine", on(MAC), LINUX), Rule("all", Match(), LocalBoot(),
                                                                once=True)])
        first = self.successResultOf(policy.boot_spec(ask()))
        again = self.successResultOf(policy.boot_spec(ask()))
        other = self.successResultOf(policy.boot_spec(ask("52:54:00:00:00:09")))
        self.assertIs(first, again)
        self.assertEqual((first.rule, first.once, first.kernel), ("mine", None, LINUX.kernel))
        self.assertEqual((other.rule, other.once), ("all", "all"))
        self.assertEqual(LINUX.rule, "")  # the configured action itself is left alone

    def test_new_actions_stamped_each(self) -> None:
        @implementer(IRule)
        class Fresh:
            name = "api"
            once = False

            def __init__(self) -> None:
                self.count = 0

            def decide(self, request: BootRequest) -> Deferred[IBootAction | None]:
                self.count += 1
                return succeed(Chain(f"/p{self.count}"))

        policy = RulePolicy([Fresh()])
        answers = [self.successResultOf(policy.boot_spec(ask())) for _ in range(2)]
        self.assertEqual([(a.rule, a.firmware_file()) for a in answers],
                         [("api", "/p1"), ("api", "/p2")])
