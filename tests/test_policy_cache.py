"""
Tests for L{pxed.policy.cache}: what a policy's answers depend on.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial import unittest
from zope.interface import implementer

from pxed.machine import Machine, architecture
from pxed.policy import BootRequest, BootSpec, Rule, RulePolicy
from pxed.policy.cache import NO_IDENTITY, answer_key, mac_classes
from pxed.policy.match import (
    ArchMatcher,
    IMatcher,
    InterfaceMatcher,
    MacMatcher,
    Match,
    RelayMatcher,
    UUIDMatcher,
)

SPEC = BootSpec(kernel="/k")
MACS = ["52:54:00:00:00:01", "52:54:00:00:00:02", "52:54:01:00:00:01", "aa:bb:cc:00:00:01"]
PATTERNS = ["52:54:00:00:00:01", "52:54:00", "aa:bb:cc", "52:54:0?:*", "52:54:00:00:00:02"]


@implementer(IMatcher)
class Custom:
    """An embedding program's matcher: pxed cannot tell what it reads."""

    def matches(self, request: BootRequest) -> bool:
        return True


def request(mac: str) -> BootRequest:
    return BootRequest(Machine(mac, architecture(0)), "proxydhcp")


class AnswerKeyTests(unittest.TestCase):
    def test_no_identity(self) -> None:
        """
        Rules that read only what the datagram's shape holds give answers
        that depend on no machine's identity.
        """
        key = answer_key([Match((ArchMatcher(frozenset({"x64-uefi"})),)),
                          Match((InterfaceMatcher(("eth*",)), RelayMatcher(()))), Match()])
        self.assertIs(key, NO_IDENTITY)

    def test_mac_and_uuid(self) -> None:
        """
        MAC rules make the MAC's class part of the key; GUID rules the
        whole GUID.
        """
        key = answer_key([Match((MacMatcher(("52:54:00",)),)), Match()])
        assert key is not None and key.mac is not None
        self.assertFalse(key.uuid)
        self.assertEqual(key.mac(MACS[0]), key.mac(MACS[1]))
        self.assertNotEqual(key.mac(MACS[0]), key.mac(MACS[3]))
        key = answer_key([Match((UUIDMatcher(frozenset({"x"})),))])
        assert key is not None
        self.assertTrue(key.uuid)
        self.assertIsNone(key.mac)

    def test_unknown_matcher(self) -> None:
        """
        A matcher that does not say what it reads makes the answers
        unkeepable, however deep it is nested.
        """
        self.assertIsNone(answer_key([Match((Match((Custom(),)),))]))

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=5, unique=True),
           st.sampled_from(MACS), st.sampled_from(MACS))
    def test_mac_classes(self, patterns: list[str], a: str, b: str) -> None:
        """
        Two MACs of the same class are matched alike by every MAC matcher
        made of any of the patterns.
        """
        classes = mac_classes(patterns)
        if classes(a) != classes(b):
            return
        for pattern in patterns:
            matcher = MacMatcher((pattern,))
            self.assertEqual(matcher.matches(request(a)), matcher.matches(request(b)),
                             (pattern, a, b))


class RulePolicyKeyTests(unittest.TestCase):
    def test_answer_key(self) -> None:
        policy = RulePolicy([Rule("a", Match((MacMatcher((MACS[0],)),)), SPEC),
                             Rule("b", Match(), SPEC)])
        key = policy.answer_key()
        assert key is not None and key.mac is not None
        self.assertIs(policy.answer_key(), key)
        policy.rules = (Rule("c", Match(), SPEC),)
        self.assertIs(policy.answer_key(), NO_IDENTITY)

    def test_consults_state(self) -> None:
        """
        Only a request a 'once' rule matches consults the store.
        """
        policy = RulePolicy([Rule("install", Match((MacMatcher((MACS[0],)),)), SPEC, once=True),
                             Rule("b", Match(), SPEC)])
        self.assertTrue(policy.consults_state(request(MACS[0])))
        self.assertFalse(policy.consults_state(request(MACS[1])))

    def test_custom_rule(self) -> None:
        """
        A rule that is not a configuration L{Rule} makes the answers
        unkeepable.
        """
        class Other:
            name = "other"
            once = False

            def decide(self, request: BootRequest) -> None:
                return None

        self.assertIsNone(RulePolicy([Other()]).answer_key())  # type: ignore[list-item]
