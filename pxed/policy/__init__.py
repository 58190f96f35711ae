# -*- test-case-name: tests.test_policy -*-
"""
The boot policy: which machine boots what.

The protocols only ever talk to L{IBootPolicy}, so a YAML rule list, an
HTTP API or an embedding program's own database can decide, and a slow
decision is a Deferred that delays only the client that asked.
"""

from pxed.policy.actions import BootSpec, Chain, Ignore, IPXEScript, LocalBoot, is_url
from pxed.policy.interfaces import IBootAction, IBootPolicy, IRule
from pxed.policy.request import BootRequest
from pxed.policy.rules import Rule, RulePolicy, StaticPolicy

__all__ = [
    "BootRequest", "BootSpec", "Chain", "IBootAction", "IBootPolicy", "IPXEScript", "IRule",
    "Ignore", "LocalBoot", "Rule", "RulePolicy", "StaticPolicy", "is_url",
]
