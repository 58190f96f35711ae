# -*- test-case-name: tests.test_policy -*-
"""
The interfaces of the boot policy.

Three small contracts keep the decision apart from the protocols that act
on it: an L{IBootPolicy} answers "what does this machine boot?", the
L{IRule}s it is built from each answer "does this rule apply, and with
what?", and every answer is an L{IBootAction} that knows how to express
itself to iPXE and to PXE firmware.  The protocols never look inside an
action, so adding one touches no protocol code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from pxed.grub.config import GrubEnv
    from pxed.policy.request import BootRequest

__all__ = ["IBootAction", "IBootPolicy", "IRule", "ScriptEnvironment"]


class ScriptEnvironment(Protocol):
    """
    What an action may use of the machine's script environment
    (L{pxed.templates.ScriptEnv} is the one pxed passes).  Declared here
    so that the policy does not import the templates, which import the
    policy.
    """

    @property
    def beacon_url(self) -> str: ...

    def url(self, location: str) -> str:
        """
        The URL the client fetches C{location} (a path or URL) from.
        """

    def render(self, text: str) -> str:
        """
        C{text} rendered as a template for this machine.
        """


class IBootAction(Interface):
    """
    What a machine is told to boot.
    """

    silent = Attribute(
        "True for the action that means 'no answer at all' (ignore): the "
        "protocols then stay silent, so another server or the disk can win."
    )
    rule = Attribute("The name of the rule that chose this action, for logs.")
    once = Attribute(
        "The name of the 'once' rule whose flag the boot beacon sets, or None."
    )
    remote_only = Attribute(
        "True when the action came from outside the configuration (the HTTP "
        "API): its templates may then name remote URLs only, never local files."
    )
    local_files = Attribute(
        "The local files a remote_only action may name all the same (a set of "
        "paths): the API's file:// URLs below policy.api.files."
    )

    def ipxe_script(env: ScriptEnvironment) -> str:
        """
        The iPXE script that carries out this action for the machine that
        C{env} describes.
        """

    def grub_config(env: GrubEnv) -> str:
        """
        The GRUB configuration that carries out this action (see
        L{pxed.grub.config}): GRUB clients (the Secure Boot chain, ARM64)
        read it by TFTP instead of an iPXE script.
        """

    def firmware_file() -> str | None:
        """
        A local file that PXE firmware (not iPXE) should fetch by TFTP and
        run instead of iPXE, or C{None} to chain into iPXE as usual.
        """


class IBootPolicy(Interface):
    """
    Decides what a network-booting machine boots.
    """

    def boot_spec(request: BootRequest) -> Deferred[IBootAction | None]:
        """
        What the machine asking in C{request} should boot, or C{None} to
        leave it alone (pxed then stays silent).
        """


class IRule(Interface):
    """
    One entry of an ordered rule list: the first rule that answers wins.
    """

    name = Attribute("A stable name: logs show it, and 'once' flags are kept under it.")
    once = Attribute(
        "True when the rule applies only until the machine has booted it once."
    )

    def decide(request: BootRequest) -> Deferred[IBootAction | None]:
        """
        The rule's action for C{request}, or C{None} when the rule does not
        apply (the next rule is asked).
        """
