"""
Tests for L{pxed.http.app}: the Klein application served for real on
127.0.0.1 and fetched with treq, as iPXE would: scripts for each action,
signed file IDs, the beacon and 'once', the admin endpoint.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial import unittest

from pxed.http.app import BOOT_PURPOSE, BootHTTP
from pxed.http.files import FileCatalog
from pxed.machine import Machine, architecture
from pxed.policy import (
    BootRequest,
    BootSpec,
    Chain,
    Ignore,
    IPXEScript,
    LocalBoot,
    Rule,
    StaticPolicy,
)
from pxed.policy.match import InterfaceMatcher, MacMatcher, Match
from pxed.policy.request import sign_context
from pxed.signing import Signer
from pxed.state import MemoryBootLog
from pxed.testing.http import KEY, MAC, OTHER_MAC, HTTPTestCase


class ScriptTests(HTTPTestCase):
    @defer.inlineCallbacks
    def test_script(self) -> Any:
        text = yield self.script()
        lines = text.splitlines()
        self.assertEqual(lines[0], "#!ipxe")
        kernel = self.kernel_url(text)
        self.assertTrue(kernel.startswith(self.base + "/_/file/"), kernel)
        self.assertTrue(kernel.endswith("/vmlinuz"), kernel)
        self.assertIn(f"kernel {kernel} initrd=initrd.img initrd=fw.img console=ttyS0", lines)
        self.assertIn("initrd --name fw.img http://mirror.invalid/fw.img", lines)
        self.assertEqual(lines[-1], "boot")
        self.assertEqual([e.stage for e in self.boot_log.events(MAC)], ["script"])
        fields = self.boot_log.events(MAC)[0].fields
        self.assertEqual(fields["arch"], "x64-uefi")
        self.assertEqual(fields["peer"], "127.0.0.1")
        # What the script loads from pxed (not the mirror's file), by path.
        initrd = re.search(r"initrd --name initrd.img (\S+)", text)
        assert initrd is not None, text
        self.assertEqual(fields["files"], {urlsplit(kernel).path: "kernel",
                                           urlsplit(initrd.group(1)).path: "initrd"})

    @defer.inlineCallbacks
    def test_every_local_url_works(self) -> Any:
        """
        Every URL the script names on pxed is served, with the right bytes.
        """
        text = yield self.script(mac=MAC.upper(), arch=0)
        urls = re.findall(r"(http://127\.0\.0\.1:\d+/\S+)", text)
        self.assertEqual(len(urls), 3, urls)
        kernel, initrd, beacon = urls
        response, body = yield self.fetch(kernel)
        self.assertEqual((response.code, body), (200, self.kernel_bytes))
        response, body = yield self.fetch(initrd)
        self.assertEqual((response.code, body), (200, b"initrd contents"))
        self.assertIn("/_/booting?", beacon)
        response, body = yield self.fetch(beacon)
        self.assertEqual((response.code, body), (200, b"ok\n"))
        self.assertEqual([e.stage for e in self.boot_log.events(MAC)], ["script", "booting"])

    @defer.inlineCallbacks
    def test_urls_survive_restart(self) -> Any:
        """
        A file URL from one server instance works on another with the same
        key (a restart, or a second pxed sharing the store), and not on one
        with another key.
        """
        text = yield self.script()
        path = urlsplit(self.kernel_url(text)).path
        self.start(BootHTTP(self.policy, FileCatalog(Signer(KEY)), self.boot_log))
        response, body = yield self.fetch(path)
        self.assertEqual((response.code, body), (200, self.kernel_bytes))
        self.start(BootHTTP(self.policy, FileCatalog(Signer(b"x" * 32)), self.boot_log))
        response, body = yield self.fetch(path)
        self.assertEqual(response.code, 404)

    @defer.inlineCallbacks
    def test_unknown_mac_exits(self) -> Any:
        text = yield self.script(mac=OTHER_MAC)
        self.assertTrue(text.startswith("#!ipxe\n"))
        self.assertIn("exit", text)
        self.assertNotIn("kernel", text)
        self.assertNotIn("boot\n", text)
        self.assertEqual(self.boot_log.machines(), [])

    @defer.inlineCallbacks
    def test_default_entry(self) -> Any:
        self.policy.default = BootSpec(str(self.initrd))
        text = yield self.script(mac=OTHER_MAC)
        self.assertTrue(self.kernel_url(text).endswith("/initrd.img"))

    @defer.inlineCallbacks
    def test_configured_address(self) -> Any:
        self.start(BootHTTP(self.policy, self.catalog, self.boot_log, address="192.0.2.7"))
        text = yield self.script()
        port = self.base.rsplit(":", 1)[1]
        self.assertTrue(self.kernel_url(text).startswith(f"http://192.0.2.7:{port}/_/file/"))

    @defer.inlineCallbacks
    def test_mac_normalised(self) -> Any:
        """
        Upper case and dashes are the same machine, as in the configuration.
        """
        text = yield self.script(mac=MAC.upper().replace(":", "-"))
        self.assertIn("kernel ", text)
        self.assertEqual(self.boot_log.machines(), [MAC])

    @defer.inlineCallbacks
    def test_malformed_mac_refused(self) -> Any:
        """
        Only MAC addresses make machines: anything else is a 400 and leaves
        no trace in the boot log.
        """
        self.policy.default = BootSpec(str(self.initrd))
        for query in ("mac=not-a-mac&arch=7", "mac=52:54:00:ab:cd&arch=7", "arch=7",
                      "mac=52:54:00:ab:cd:12:34&arch=7", "mac=52:54:00:ab:cd:12%0Aboot&arch=7"):
            response, body = yield self.fetch(f"/_/ipxe?{query}")
            self.assertEqual(response.code, 400, query)
            self.assertIn(b"MAC address", body)
        self.assertEqual(self.boot_log.machines(), [])

    @defer.inlineCallbacks
    def test_post_not_allowed(self) -> Any:
        response, _ = yield self.fetch(f"/_/ipxe?mac={MAC}", method="POST")
        self.assertEqual(response.code, 405)


class ClockTests(unittest.TestCase):
    def test_log_budget_clock(self) -> None:
        """
        The app's log budget runs on the clock it is given (the service
        gives its reactor), so tests and embedders can drive it.
        """
        clock = Clock()
        app = BootHTTP(StaticPolicy({}), FileCatalog(Signer(KEY)), MemoryBootLog(), clock=clock)
        self.assertIs(app.budget.clock, clock)


class ActionScriptTests(HTTPTestCase):
    """
    Each action, as the script iPXE gets.
    """

    def everyone(self, action: Any, **kwargs: Any) -> None:
        self.rules(Rule("r", Match(), action, **kwargs))

    @defer.inlineCallbacks
    def test_template_cmdline(self) -> Any:
        self.app.hostnames = {MAC: "web1"}
        self.everyone(BootSpec(str(self.kernel), (), "host={{ hostname }} arch={{ arch }} "
                               "srv={{ server }} cfg={{ url('http://h/x.cfg') }}"))
        text = yield self.script()
        self.assertIn("host=web1 arch=x64-uefi srv=127.0.0.1 cfg=http://h/x.cfg", text)

    @defer.inlineCallbacks
    def test_ipxe_script_with_url(self) -> Any:
        """
        A script's C{url()} of a local file is a pxed URL that serves it.
        """
        self.everyone(IPXEScript("#!ipxe\nchain {{ url('" + str(self.initrd) + "') }}\n"
                                 "echo {{ mac }} {{ base_url }}\n"))
        text = yield self.script()
        url = text.splitlines()[1].split()[1]
        self.assertTrue(url.startswith(self.base + "/_/file/"), url)
        self.assertIn(f"echo {MAC} {self.base}", text)
        response, body = yield self.fetch(url)
        self.assertEqual((response.code, body), (200, b"initrd contents"))

    @defer.inlineCallbacks
    def test_ipxe_script_gets_shebang(self) -> Any:
        self.everyone(IPXEScript("echo hi", remote_only=True))
        text = yield self.script()
        self.assertEqual(text, "#!ipxe\necho hi\n")

    @defer.inlineCallbacks
    def test_remote_only_cannot_name_local_files(self) -> Any:
        """
        A script from the API may not turn a local path into a URL: the
        machine gets an exit script and nothing is signed.
        """
        self.everyone(IPXEScript("#!ipxe\nchain {{ url('/etc/passwd') }}\n", remote_only=True))
        text = yield self.script()
        self.assertNotIn("/_/file/", text)
        self.assertIn("exit 1", text)
        self.assertIn("only http(s) URLs", text)

    @defer.inlineCallbacks
    def test_template_error_is_an_exit(self) -> Any:
        self.everyone(BootSpec(str(self.kernel), (), "x={{ no_such_name }}"))
        text = yield self.script()
        self.assertIn("exit 1", text)
        self.assertNotIn("kernel", text)
        self.assertIn("no_such_name", text)
        # Where the boot stopped, on the machine's timeline.
        [event] = self.boot_log.events(MAC)
        self.assertEqual(event.stage, "script-error")
        self.assertIn("'no_such_name' is undefined", event.fields["error"])

    @defer.inlineCallbacks
    def test_chain(self) -> Any:
        self.everyone(Chain(str(self.initrd), "arg={{ mac }}"))
        text = yield self.script()
        lines = text.splitlines()
        chain = lines[-1].split()
        self.assertEqual(chain[:2], ["chain", "--autofree"])
        self.assertEqual(chain[3], f"arg={MAC}")
        self.assertNotIn("initrd=", text)
        self.assertLess(lines.index(next(x for x in lines if "pxed-beacon" in x)), len(lines) - 1)
        response, body = yield self.fetch(chain[2])
        self.assertEqual((response.code, body), (200, b"initrd contents"))

    @defer.inlineCallbacks
    def test_local(self) -> Any:
        self.everyone(LocalBoot())
        text = yield self.script()
        self.assertIn("exit 0", text)
        self.assertNotIn("kernel", text)

    @defer.inlineCallbacks
    def test_ignore(self) -> Any:
        self.everyone(Ignore())
        text = yield self.script()
        self.assertIn("exit 1", text)

    @defer.inlineCallbacks
    def test_export_function(self) -> Any:
        self.app.exports = {"seed": self.dir}
        self.everyone(BootSpec(str(self.kernel), (),
                               "ds=nocloud-net;s={{ export('seed') }}{{ mac }}/ "
                               "ks={{ export('seed', 'a b/ks.cfg') }}"))
        text = yield self.script()
        self.assertIn(f"s={self.base}/_/export/seed/{MAC}/ ks={self.base}/_/export/seed/a%20b/"
                      "ks.cfg", text)
        self.everyone(BootSpec(str(self.kernel), (), "{{ export('nope') }}"))
        text = yield self.script()
        self.assertIn("no export named 'nope'", text)

    @defer.inlineCallbacks
    def test_network_context_signed(self) -> Any:
        """
        A rule on the receiving interface applies to the script only with
        the context the DHCP side signed into its URL.
        """
        self.rules(Rule("eth1", Match((InterfaceMatcher(("eth1",)),)), LocalBoot()),
                   Rule("rest", Match(), self.spec))
        machine = Machine(MAC, architecture(7), ipxe=True)
        good = sign_context(self.signer, BootRequest(machine, "proxydhcp", interface="eth1"))
        forged = sign_context(Signer(b"z" * 32), BootRequest(machine, "x", interface="eth1"))
        text = yield self.script(extra=f"&ctx={good}")
        self.assertIn("exit 0", text)
        for token in (forged, "garbage"):
            text = yield self.script(extra=f"&ctx={token}")
            self.assertIn("kernel ", text, token)


class BeaconTests(HTTPTestCase):
    def boot(self, mac: str = MAC) -> str:
        return self.signer.sign(BOOT_PURPOSE, mac)

    @defer.inlineCallbacks
    def test_booting(self) -> Any:
        response, body = yield self.fetch(f"/_/booting?mac={quote(MAC.upper())}&boot={self.boot()}")
        self.assertEqual((response.code, body), (200, b"ok\n"))
        events = self.boot_log.events(MAC)
        self.assertEqual([e.stage for e in events], ["booting"])

    @defer.inlineCallbacks
    def test_unverified_beacons_are_counted_only(self) -> Any:
        """
        Without a boot token pxed signed for that MAC (a script fetched
        without a signed context, or a forgery), a beacon is answered and
        counted, but no machine becomes "booted" or enters the history.
        """
        forged = Signer(b"f" * 32).sign(BOOT_PURPOSE, MAC)
        for query in (f"mac={MAC}", f"mac={MAC}&boot={forged}", f"mac={MAC}&boot=x.y",
                      f"mac={MAC}&boot={self.boot(OTHER_MAC)}"):
            response, body = yield self.fetch(f"/_/booting?{query}")
            self.assertEqual((response.code, body), (200, b"ok\n"), query)
        self.assertEqual(self.boot_log.machines(), [])
        self.assertEqual(self.app.unverified_beacons, 4)

    @defer.inlineCallbacks
    def test_malformed_mac_refused(self) -> Any:
        for mac in ("anything", "52:54:00:ab:cd:1g", "52:54:00:ab:cd:12:00", "../../x"):
            response, body = yield self.fetch(f"/_/booting?mac={quote(mac)}")
            self.assertEqual(response.code, 400, mac)
            self.assertIn(b"MAC address", body)
        self.assertEqual(self.boot_log.machines(), [])
        response, _ = yield self.fetch(f"/_/booting?mac={MAC.upper().replace(':', '-')}"
                                       f"&boot={self.boot()}")
        self.assertEqual(response.code, 200)
        self.assertEqual(self.boot_log.machines(), [MAC])

    @defer.inlineCallbacks
    def test_head(self) -> Any:
        response, _ = yield self.fetch(f"/_/booting?mac={MAC}&boot={self.boot()}", method="HEAD")
        self.assertEqual(response.code, 200)
        self.assertEqual([e.stage for e in self.boot_log.events(MAC)], ["booting"])

    @defer.inlineCallbacks
    def test_no_mac(self) -> Any:
        response, body = yield self.fetch("/_/booting")
        self.assertEqual((response.code, body), (200, b"ok\n"))
        self.assertEqual(self.boot_log.machines(), [])


class OnceTests(HTTPTestCase):
    """
    A 'once' rule boots until the beacon reports it booted, then the next
    rule applies.
    """

    def setUp(self) -> None:
        super().setUp()
        self.rules(Rule("install", Match((MacMatcher((MAC,)),)), self.spec, once=True),
                   Rule("disk", Match(), LocalBoot()))

    @defer.inlineCallbacks
    def test_once_then_local(self) -> Any:
        text = yield self.script()
        self.assertIn("kernel ", text)
        beacon = self.beacon_url(text)
        self.assertIn("once=", beacon)
        # Booting again before the beacon (a failed install) installs again.
        text = yield self.script()
        self.assertIn("kernel ", text)
        response, _ = yield self.fetch(beacon)
        self.assertEqual(response.code, 200)
        done = yield self.store.once_done(MAC, "install")
        self.assertTrue(done)
        text = yield self.script()
        self.assertIn("exit 0", text)
        self.assertNotIn("kernel", text)

    @defer.inlineCallbacks
    def test_unsigned_script_cannot_end_the_rule(self) -> Any:
        """
        A script fetched without a signed context (by hand, or chained to
        from another iPXE) boots the same, but its beacon carries no token:
        fetching it leaves the victim's 'once' rule in force and records
        no boot.
        """
        text = yield self.script(signed=False)
        self.assertIn("kernel ", text)
        beacon = self.beacon_url(text)
        self.assertNotIn("once=", beacon)
        self.assertNotIn("boot=", beacon)
        response, _ = yield self.fetch(beacon)
        self.assertEqual(response.code, 200)
        done = yield self.store.once_done(MAC, "install")
        self.assertFalse(done)
        self.assertEqual(self.boot_log.machines(), [])
        text = yield self.script(signed=False)
        self.assertIn("kernel ", text)
        # A forged context is no context.
        text = yield self.script(extra="&ctx=" + Signer(b"z" * 32).sign("context", "{}"))
        self.assertNotIn("once=", self.beacon_url(text))

    @defer.inlineCallbacks
    def test_plain_rules_have_no_once_token(self) -> Any:
        text = yield self.script(mac=OTHER_MAC)
        self.assertIn("exit 0", text)
        self.rules(Rule("plain", Match(), self.spec))
        text = yield self.script()
        self.assertNotIn("once=", self.beacon_url(text))

    @defer.inlineCallbacks
    def test_forged_once_token(self) -> Any:
        text = yield self.script()
        beacon = self.beacon_url(text)
        query = parse_qs(urlsplit(beacon).query)
        token = query["once"][0]
        forged = Signer(b"f" * 32).sign("once", f"{MAC} install")
        for mac, once in ((MAC, forged), (OTHER_MAC, token), (MAC, token[:-2] + "AA")):
            yield self.fetch(f"/_/booting?mac={quote(mac)}&once={once}")
        done = yield self.store.once_done(MAC, "install")
        self.assertFalse(done)
        other = yield self.store.once_done(OTHER_MAC, "install")
        self.assertFalse(other)


class AdminTests(HTTPTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.calls: list[int] = []
        self.answer = (True, "reloaded x")

        def reload() -> tuple[bool, str]:
            self.calls.append(1)
            return self.answer

        self.app.reload = reload

    @defer.inlineCallbacks
    def test_off_by_default(self) -> Any:
        response, _ = yield self.fetch("/_/admin/reload", method="POST")
        self.assertEqual(response.code, 404)
        self.assertEqual(self.calls, [])

    @defer.inlineCallbacks
    def test_token(self) -> Any:
        self.app.admin_token = "s3cret-admin-token"
        for header in (None, "Bearer wrong", "s3cret-admin-token", "Bearer s3cret-admin-tökén"):
            headers = {b"Authorization": [header.encode()]} if header else {}
            response, _ = yield self.fetch("/_/admin/reload", method="POST", headers=headers)
            self.assertEqual(response.code, 403, header)
        self.assertEqual(self.calls, [])
        good = {b"Authorization": [b"Bearer s3cret-admin-token"]}
        response, body = yield self.fetch("/_/admin/reload", method="POST", headers=good)
        self.assertEqual((response.code, body), (200, b"reloaded x\n"))
        self.answer = (False, "bad configuration: x: y")
        response, body = yield self.fetch("/_/admin/reload", method="POST", headers=good)
        self.assertEqual((response.code, body), (409, b"bad configuration: x: y\n"))
        response, _ = yield self.fetch("/_/admin/reload", headers=good)
        self.assertEqual(response.code, 405)
        self.assertEqual(len(self.calls), 2)
