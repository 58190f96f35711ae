# -*- test-case-name: tests.test_explain -*-
"""
What C{pxed explain} is made of, apart from reading captures and printing:
the datagrams and explanations, and the server's responder as explain
builds it: from the same L{pxed.runtime.build_parts} as the server, with
the same signing key (read, never created: explain must not write the
state), so the script URLs it shows carry the signed context the server's
carry.  L{pxed.explainfull} (full DHCP mode) uses these too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zope.interface import implementer

from pxed.config import Config
from pxed.dhcp.packet import DHCPPacket
from pxed.dhcp.reply import BootAnswer
from pxed.dhcp.responder import BootResponder
from pxed.machine import Machine
from pxed.parts import LiveParts
from pxed.policy import IBootPolicy
from pxed.runtime import build_parts, image_cache, make_store, policy_from_config
from pxed.state import MemoryBootLog
from pxed.store import IStateStore, MemoryStateStore, read_state_file

__all__ = ["Datagram", "Explanation", "Recording", "entry_name", "server_responder"]


@dataclass(frozen=True)
class Datagram:
    """
    One UDP datagram to explain; C{frame} counts from 1 like Wireshark.
    """

    frame: int
    src: tuple[str, int]
    dst: tuple[str, int]
    payload: bytes


@dataclass
class Explanation:
    """
    What pxed makes of one datagram.

    @ivar stage: the port's role (C{proxydhcp}, C{bootserver}), or C{None}
        for a datagram to a port pxed does not answer on (a reply to a
        client, for instance).
    @ivar ignored: why there is no reply, when there is none.
    @ivar entry: the policy entry that matched, if any.
    """

    datagram: Datagram
    stage: str | None
    packet: DHCPPacket | None = None
    machine: Machine | None = None
    server: str | None = None
    entry: str | None = None
    answer: BootAnswer | None = None
    reply: DHCPPacket | None = None
    reply_bytes: bytes = b""
    destination: tuple[str, int] | None = None
    ignored: str | None = None
    notes: list[str] = field(default_factory=list)


@implementer(IBootPolicy)
class Recording:
    """
    Wraps the configured policy to see what it decided, so the report
    can name the entry that matched.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.decided: list[Any] = []

    def boot_spec(self, *args: Any, **kwargs: Any) -> Any:
        d = self.inner.boot_spec(*args, **kwargs)
        d.addCallback(self._record)
        return d

    def _record(self, result: Any) -> Any:
        self.decided.append(result)
        return result


def entry_name(config: Config, machine: Machine, decided: Any) -> str:
    """
    A name for the policy entry that produced C{decided}: the rule name
    when the policy gives one, else the configuration key it came from.
    """
    if decided is None:
        return "none: no entry for this machine (pxed stays silent)"
    rule = getattr(decided, "rule", None)
    if rule:
        return str(rule)
    machines = getattr(config, "machines", {}) or {}
    if machine.mac in machines and machines[machine.mac] == decided:
        return f'boot.machines."{machine.mac}"'
    if getattr(config, "default", None) == decided:
        return "boot.default"
    return "the policy's answer"


def _signing_key(config: Config, store: IStateStore) -> tuple[bytes | None, str | None]:
    """
    The key the server signs with, read without creating one: a server
    that has not started yet has none, and explain must never write the
    state.  Returns the key, or C{None} and why it is not known.
    """
    if config.policy.signing_key is not None:
        return config.policy.signing_key, None
    if config.state.url is not None:
        try:
            import psycopg

            with psycopg.connect(config.state.url, connect_timeout=5) as conn:
                row = conn.execute("SELECT key FROM pxed_signing_key WHERE id = 1").fetchone()
        except Exception as e:
            return None, f"cannot read the signing key from state.url ({type(e).__name__})"
        return (bytes(row[0]), None) if row else (None, "state.url holds no signing key yet")
    if config.policy.state_file is not None:
        key = read_state_file(Path(config.policy.state_file))[1]
        return (key, None) if key else (None, "the state file holds no signing key yet")
    return None, ("the server makes a new signing key each start (set policy.signing_key or "
                  "policy.state_file to keep one)")


def server_responder(config: Config) -> tuple[BootResponder, Recording, list[str]]:
    """
    A responder built from C{config} as the server builds its own
    (L{build_parts}), with the policy wrapped to see what it decided, the
    'once' flags of the state file, and the server's signing key, so script
    URLs carry the same signed context.  The notes say what differs when
    that key cannot be known.
    """
    store: IStateStore = MemoryStateStore()
    if config.policy.state_file is not None and config.state.url is None:
        store = make_store(config)  # read only: explain never changes the flags or key
    key, why = _signing_key(config, store)
    notes = []
    if key is None:
        key = os.urandom(32)
        notes.append(f"ctx= in the script URL is signed with a key of explain's own: {why}; "
                     "the server's URL has the same length but other ctx= characters")
    policy = Recording(policy_from_config(config, store))
    from twisted.internet import reactor

    parts = build_parts(config, store, reactor, override=policy, signing_key=key,
                        images=image_cache(config.arm64, eager=False))
    responder = BootResponder(parts=LiveParts(parts), http_port=config.server.ports.http,
                              boot_log=MemoryBootLog())
    return responder, policy, notes
