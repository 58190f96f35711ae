# -*- test-case-name: tests.test_policy -*-
"""
Ordered rules, first match wins.

A L{RulePolicy} walks its L{IRule}s in order and returns the first answer.
'Once' rules are skipped for a machine that has already booted them
(their flag lives in an L{IStateStore}, set by the boot beacon), so a
machine installs once and then falls through to the next rule, typically
C{local}.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger, LogLevel
from zope.interface import implementer

from pxed.eager import Done, eager
from pxed.logs import wanted
from pxed.policy.actions import BootSpec
from pxed.policy.cache import AnswerKey, ICacheablePolicy, answer_key
from pxed.policy.interfaces import IBootAction, IBootPolicy, IRule
from pxed.policy.match import IMatcher, MacMatcher, Match
from pxed.policy.request import BootRequest
from pxed.store import IStateStore, MemoryStateStore, StateUnavailable

__all__ = ["Rule", "RulePolicy", "StaticPolicy", "boot_section_rules"]

log = Logger()


@implementer(IRule)
@dataclass(frozen=True)
class Rule:
    """
    A rule from the configuration: a match and a fixed action.
    """

    name: str
    match: IMatcher
    action: IBootAction
    once: bool = False

    def decide(self, request: BootRequest) -> Deferred[IBootAction | None]:
        return succeed(self.action if self.match.matches(request) else None)


@implementer(IBootPolicy, ICacheablePolicy)
class RulePolicy:
    """
    The first of C{rules} that answers decides; an C{ignore} answer, or no
    answer, means silence.
    """

    def __init__(self, rules: Sequence[IRule], store: IStateStore | None = None) -> None:
        self.rules = tuple(rules)
        self.store = store if store is not None else MemoryStateStore()
        # id(rule) -> (the rule, the action it gave last, that action
        # stamped); holding the rule keeps its id its own.
        self._stamps: dict[int, tuple[IRule, IBootAction, IBootAction]] = {}
        self._answer_key: tuple[object, AnswerKey | None] = (None, None)

    def answer_key(self) -> AnswerKey | None:
        # Worked out once for a set of rules (a reload makes another
        # policy; an embedding program may assign other rules).
        rules = self.rules
        if self._answer_key[0] is not rules:
            plain = [rule.match for rule in rules if isinstance(rule, Rule)]
            self._answer_key = (rules, answer_key(plain) if len(plain) == len(rules)
                                else None)
        return self._answer_key[1]

    def consults_state(self, request: BootRequest) -> bool:
        return any(rule.once and (not isinstance(rule, Rule) or rule.match.matches(request))
                   for rule in self.rules)

    def boot_spec(self, request: BootRequest) -> Deferred[IBootAction | None]:
        # In memory, the answer is known at once: a fired Deferred then,
        # without the coroutine driver ensureDeferred puts around it.
        started = eager(self._answer(request))
        return succeed(started.value) if isinstance(started, Done) else started

    async def _answer(self, request: BootRequest) -> IBootAction | None:
        try:
            return await self._decide(request)
        except StateUnavailable:
            # Logged once per outage by the store; counted there too.
            log.debug("{mac}: a 'once' rule matched and the state store cannot be asked: "
                      "no answer", mac=request.mac)
            return None
        except OnceClaimed as e:
            log.info("{mac}: once-rule {rule} was handed out by another pxed and that boot is "
                     "still under way: no answer", mac=request.mac, rule=str(e))
            return None

    async def _decide(self, request: BootRequest) -> IBootAction | None:
        for rule in self.rules:
            action = await rule.decide(request)
            if action is None:
                continue
            # Asked only of the machines the rule matches: a shared store
            # that is down then costs only those machines their answer.
            if rule.once and not await self._once_allowed(request, rule.name):
                continue
            if wanted(LogLevel.debug):
                log.debug("{mac}: {stage} matched rule {rule}", mac=request.mac,
                          stage=request.stage, rule=rule.name)
            if action.silent:
                return None
            return self._stamped(rule, action)
        return None

    def _stamped(self, rule: IRule, action: IBootAction) -> IBootAction:
        """
        C{action} naming the rule that chose it.  A rule from the
        configuration hands out the same (frozen) action every time, so
        its stamped copy is made once, not once per request.
        """
        made = self._stamps.get(id(rule))
        if made is not None and made[0] is rule and made[1] is action:
            return made[2]
        stamped: IBootAction = dataclasses.replace(  # type: ignore[type-var]
            action, rule=rule.name, once=rule.name if rule.once else None
        )
        self._stamps[id(rule)] = (rule, action, stamped)
        return stamped

    async def _once_allowed(self, request: BootRequest, rule: str) -> bool:
        """
        Whether the 'once' rule C{rule} still applies to the machine; when
        its script is handed out, the rule is claimed for it first, so two
        pxed sharing a store never hand out the same install.

        @raise StateUnavailable: the store cannot say (no answer then).
        """
        if await self.store.once_done(request.mac, rule):
            log.debug("{mac}: once-rule {rule} already booted; falling through",
                      mac=request.mac, rule=rule)
            return False
        if request.stage == "script" and not await self.store.claim_once(request.mac, rule):
            raise OnceClaimed(rule)
        return True


class OnceClaimed(Exception):
    """
    Another pxed handed this machine's 'once' install out and its boot is
    still under way: this one gives no answer.
    """


@implementer(IBootPolicy)
class StaticPolicy:
    """
    The configuration file's C{boot:} section on its own: per-MAC entries,
    then the default.  Kept for embedding programs and tests that need
    nothing more.
    """

    def __init__(
        self, machines: Mapping[str, BootSpec], default: BootSpec | None = None
    ) -> None:
        self.machines = dict(machines)
        self.default = default

    def boot_spec(self, request: BootRequest) -> Deferred[IBootAction | None]:
        return succeed(self.machines.get(request.mac, self.default))


def boot_section_rules(
    machines: Mapping[str, BootSpec], default: BootSpec | None
) -> tuple[list[Rule], list[Rule]]:
    """
    The C{boot:} section as rules: one per listed machine (to go before
    the policy's rules) and the default (to go after them).
    """
    first = [
        Rule(f"boot.machines.{mac}", Match((MacMatcher((mac,)),)), spec)
        for mac, spec in machines.items()
    ]
    last = [Rule("boot.default", Match(), default)] if default is not None else []
    return first, last
