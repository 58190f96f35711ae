# -*- test-case-name: tests.test_policy_cache -*-
"""
What a policy's answers depend on, so that they can be kept.

In a boot storm a thousand machines ask the same question: the same kind
of firmware, through the same relay, of the same rules.  The ProxyDHCP
fast path (L{pxed.dhcp.fastpath}) keeps the answer the first one got and
gives it to the others, keyed by everything in the request that the
answer may depend on.  Everything about a request but the machine's
identity (its architecture, firmware, user class, interface, relay and
the addresses involved) is in the shape of its datagram, which the fast
path keys by anyway; what only the policy knows is whether, and how, its
answers depend on the machine's MAC and GUID.  That is the L{AnswerKey}.

A policy answers through L{ICacheablePolicy} only if its answers change
with nothing but a reload (which makes new parts, and so a new cache);
one that asks a remote API, or whose rules an embedding program swaps,
does not provide it and is asked every time.  'Once' rules consult the
state store, which changes without a reload (the beacon, C{pxed
reinstall}, another pxed sharing the store): an answer for a request a
once rule matches is never kept, whatever the rule's flag said.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass

from zope.interface import Interface

from pxed.policy.match import IMatcher, MacMatcher, Match, UUIDMatcher, _is_glob
from pxed.policy.request import BootRequest

__all__ = ["AnswerKey", "ICacheablePolicy", "answer_key", "NO_IDENTITY", "mac_classes"]

#: The fields of a request that its datagram's shape determines.
SHAPED = frozenset({"arch", "firmware", "ipxe", "user_class", "interface", "network", "relay"})


@dataclass(frozen=True)
class AnswerKey:
    """
    What of a machine's identity a policy's answers depend on.

    @ivar mac: a function of the MAC (lower-case colon form) giving what
        the answers depend on (equal values, equal answers), or C{None}
        when they do not depend on it at all.
    @ivar uuid: whether they depend on the GUID (option 97); if so it is
        kept whole in the key.
    """

    mac: Callable[[str], Hashable] | None = None
    uuid: bool = False


#: A policy whose answers depend on no machine's identity.
NO_IDENTITY = AnswerKey()


class ICacheablePolicy(Interface):
    """
    An L{pxed.policy.interfaces.IBootPolicy} whose answers may be kept
    until the next reload.
    """

    def answer_key() -> AnswerKey | None:
        """
        What of a machine's identity the answers depend on; C{None}: the
        answers may change at any moment, keep none.
        """

    def consults_state(request: BootRequest) -> bool:
        """
        Whether the answer to C{request} depends on state outside the
        configuration (a 'once' flag): such an answer is never kept.
        """


def mac_classes(patterns: Iterable[str]) -> Callable[[str], Hashable]:
    """
    A function of a MAC that is equal for two MACs exactly when every
    L{MacMatcher} made of C{patterns} matches both or neither: the MAC
    itself if it is listed, and its OUI if that is listed (globs: the MAC
    itself, whatever it is).
    """
    patterns = tuple(patterns)
    if any(_is_glob(p) for p in patterns):
        return _itself
    exact = frozenset(p for p in patterns if p.count(":") != 2)
    ouis = frozenset(p for p in patterns if p.count(":") == 2)

    def classes(mac: str) -> Hashable:
        mac = mac.lower()
        return (mac if mac in exact else None, mac[:8] if mac[:8] in ouis else None)

    return classes


def _itself(mac: str) -> Hashable:
    return mac.lower()


def _matchers(matcher: IMatcher) -> Iterable[IMatcher]:
    if isinstance(matcher, Match):
        for inner in matcher.matchers:
            yield from _matchers(inner)
    else:
        yield matcher


def answer_key(matches: Iterable[IMatcher]) -> AnswerKey | None:
    """
    The L{AnswerKey} of rules with these C{matches}: C{None} if one reads
    a field this module does not know (an embedding program's matcher).
    """
    mac_patterns: list[str] = []
    uuid = False
    for top in matches:
        for matcher in _matchers(top):
            reads = getattr(matcher, "reads", None)
            if not isinstance(reads, frozenset) or not reads <= SHAPED | {"mac", "uuid"}:
                return None
            if "mac" in reads:
                if not isinstance(matcher, MacMatcher):
                    return None
                mac_patterns.extend(matcher.patterns)
            if "uuid" in reads:
                if not isinstance(matcher, UUIDMatcher):
                    return None
                uuid = True
    if not mac_patterns and not uuid:
        return NO_IDENTITY
    return AnswerKey(mac_classes(mac_patterns) if mac_patterns else None, uuid)
