# -*- test-case-name: tests.test_policy -*-
"""
The question asked of the policy: which machine, at which stage, and from
where on the network.

Where a request came from (the receiving interface, a relay) is known only
to the DHCP side; the machine itself is what the client says about itself.
Keeping the two apart lets L{pxed.machine.Machine} stay a pure description
of the client while rules can still match on the network.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pxed.machine import Architecture, Firmware, Machine

if TYPE_CHECKING:
    from pxed.signing import Signer

__all__ = ["BootRequest", "ScriptContext", "sign_context", "open_context", "once_token",
           "once_rule"]


@dataclass(frozen=True, slots=True)
class BootRequest:
    """
    @ivar stage: C{"proxydhcp"}, C{"bootserver"} or C{"script"} (the iPXE
        script fetched over HTTP).
    @ivar interface: the name of the interface the DHCP request arrived on.
    @ivar relay: the relay agent's address (giaddr) when the request was
        relayed.
    @ivar local_address: pxed's address on the receiving interface.
    @ivar client_address: the client's own address, once it has one (HTTP).
    """

    machine: Machine
    stage: str = ""
    interface: str | None = None
    relay: str | None = None
    local_address: str | None = None
    client_address: str | None = None

    @property
    def mac(self) -> str:
        return self.machine.mac

    @property
    def arch(self) -> Architecture:
        return self.machine.arch

    @property
    def uuid(self) -> str | None:
        return self.machine.uuid

    @property
    def firmware(self) -> Firmware:
        return self.machine.firmware

    @property
    def ipxe(self) -> bool:
        return self.machine.ipxe

    @property
    def user_class(self) -> str | None:
        return self.machine.user_class

    @property
    def network_address(self) -> str | None:
        """
        An address on the client's network: its own once it has one, else
        the relay's (a relay's giaddr is its address on the client's
        subnet), else pxed's address on the interface the request came in on.
        """
        return self.client_address or self.relay or self.local_address


#: The purpose signed into a script URL's network context.
CONTEXT_PURPOSE = "context"

#: The user class of a script request whose context does not carry one
#: (URLs signed before pxed put it there, or no context): what iPXE sends.
IPXE_USER_CLASS = "iPXE"


@dataclass(frozen=True)
class ScriptContext:
    """
    What the DHCP side signed into a script URL: the machine it was made
    for, where its request came from, and the user class it sent.
    """

    mac: str
    interface: str | None = None
    relay: str | None = None
    local_address: str | None = None
    user_class: str | None = IPXE_USER_CLASS

    def network(self) -> dict[str, str | None]:
        """
        The L{BootRequest} fields it carries.
        """
        return {"interface": self.interface, "relay": self.relay,
                "local_address": self.local_address}


def sign_context(signer: Signer, request: BootRequest) -> str:
    """
    The network side of C{request} (interface, relay, pxed's address) and
    the machine's user class, signed for the script URL.

    Only the DHCP side knows where a request came from and what user
    class it sent (iPXE's own is C{iPXE}, a custom build's may be another);
    iPXE fetches its script over HTTP, and rules that match on either must
    decide the same way then.  Signed, so a client cannot claim another
    network.
    """
    fields = {"m": request.mac, "i": request.interface, "r": request.relay,
              "l": request.local_address, "u": request.user_class}
    # Always, even with nothing but the MAC: the signature is also what
    # lets the script's beacon count as a boot (pxed.http.app).
    return signer.sign(CONTEXT_PURPOSE, json.dumps(fields, separators=(",", ":")))


def _text(fields: dict[str, object], short: str) -> str | None:
    value = fields.get(short)
    return value if isinstance(value, str) else None


def open_context(signer: Signer, token: str | None) -> ScriptContext | None:
    """
    The context signed into C{token}, for whichever machine it was made;
    C{None} if the token is missing or not one this key signed.  A
    context without a user class (signed before pxed carried it) has
    iPXE's.
    """
    if not token:
        return None
    text = signer.verify(CONTEXT_PURPOSE, token)
    if text is None:
        return None
    try:
        fields = json.loads(text)
    except ValueError:
        return None
    if not isinstance(fields, dict) or not isinstance(fields.get("m"), str):
        return None
    user_class = _text(fields, "u") if "u" in fields else IPXE_USER_CLASS
    return ScriptContext(fields["m"], _text(fields, "i"), _text(fields, "r"), _text(fields, "l"),
                         user_class)


#: The purpose signed into a beacon's 'once' token.
ONCE_PURPOSE = "once"


def once_token(signer: Signer, mac: str, rule: str) -> str:
    """
    What a boot's beacon carries when a 'once' rule gave it: the beacon
    (over HTTP from iPXE, over TFTP from GRUB) then ends C{rule} for
    C{mac}, and for no other machine.
    """
    return signer.sign(ONCE_PURPOSE, f"{mac} {rule}")


def once_rule(signer: Signer, mac: str, token: str) -> tuple[str | None, str | None]:
    """
    The 'once' rule C{token} ends for C{mac}, or C{None} and why not (a
    token this key did not sign, or one made for another machine).
    """
    signed = signer.verify(ONCE_PURPOSE, token)
    if signed is None:
        return None, "a forged 'once' token"
    owner, _, rule = signed.partition(" ")
    if owner != mac:
        return None, f"a 'once' token made for {owner}"
    return rule, None
