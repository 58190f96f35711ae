"""
Tests for the signed context of script URLs as L{pxed.http.app} reads it:
the machine it was made for, and the DHCP request's user class, so that
C{user_class} rules decide the script as they decided the offer.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlsplit

from twisted.internet import defer

from pxed.dhcp.responder import BootResponder
from pxed.machine import Machine, architecture
from pxed.policy import BootRequest, BootSpec, LocalBoot, Rule
from pxed.policy.match import Match, UserClassMatcher
from pxed.policy.request import CONTEXT_PURPOSE, sign_context
from pxed.state import MemoryBootLog
from pxed.testing.http import MAC, OTHER_MAC, HTTPTestCase


class ScriptContextTests(HTTPTestCase):
    @defer.inlineCallbacks
    def test_context_of_another_machine_refused(self) -> Any:
        """
        A genuine context is good only with the MAC it was signed for
        (in any spelling): copied onto another MAC it is a 400.
        """
        self.policy.default = BootSpec(str(self.initrd))
        other = sign_context(self.signer, BootRequest(Machine(OTHER_MAC, architecture(7)), "x",
                                                      interface="eth1"))
        response, body = yield self.fetch(f"/_/ipxe?mac={quote(MAC)}&arch=7&ctx={other}")
        self.assertEqual((response.code, body), (400, b"bad request: ctx was made for another "
                                                      b"machine\n"))
        self.assertEqual(self.boot_log.machines(), [])
        text = yield self.script(mac=OTHER_MAC.upper(), extra=f"&ctx={other}")
        self.assertIn("kernel ", text)

    def user_class_rules(self) -> None:
        self.rules(Rule("netboot", Match((UserClassMatcher(("netboot",)),)), LocalBoot()),
                   Rule("ipxe", Match((UserClassMatcher(("iPXE",)),)), self.spec))

    @defer.inlineCallbacks
    def test_user_class_signed(self) -> Any:
        """
        The user class of the DHCP request decides the script too; without
        a context, or with one signed before it carried a user class, the
        script request is iPXE's.
        """
        self.user_class_rules()
        machine = Machine(MAC, architecture(7), ipxe=True, user_class="netboot")
        ctx = sign_context(self.signer, BootRequest(machine, "proxydhcp", interface="eth1"))
        text = yield self.script(extra=f"&ctx={ctx}")
        self.assertIn("exit 0", text)
        self.assertNotIn("kernel", text)
        text = yield self.script()
        self.assertIn("kernel ", text)
        old = self.signer.sign(CONTEXT_PURPOSE, json.dumps(
            {"m": MAC, "i": "eth1", "r": None, "l": "10.0.0.1"}, separators=(",", ":")))
        text = yield self.script(extra=f"&ctx={old}")
        self.assertIn("kernel ", text)

    @defer.inlineCallbacks
    def test_user_class_rule_at_both_stages(self) -> Any:
        """
        A rule on a custom iPXE's user class matches the DHCP request, and
        again when that iPXE fetches the script URL the offer named.
        """
        self.user_class_rules()
        policy = self.app.policy
        responder = BootResponder(policy, {}, 80, MemoryBootLog(), signer=self.signer)
        machine = Machine(MAC, architecture(7), ipxe=True, user_class="netboot")
        request = BootRequest(machine, "proxydhcp", interface="eth1", local_address="127.0.0.1")
        self.assertEqual((yield policy.boot_spec(request)), LocalBoot(rule="netboot"))
        answer = yield defer.ensureDeferred(responder.answer(machine, "127.0.0.1", "proxydhcp"))
        url = urlsplit(answer.bootfile)
        self.assertEqual(url.path, "/_/ipxe")
        text = yield self.script(extra="&" + url.query)
        self.assertIn("exit 0", text)
        self.assertNotIn("kernel", text)
