"""
What a client says about itself (UUID, user class) reaches a script or a
kernel command line only as one safe word: tested through the real server
on 127.0.0.1, over HTTP and over DHCP (port 4011), and on the pieces
(L{pxed.clienttext}, L{pxed.dhcp.classify}, L{pxed.templates}).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import treq
from twisted.internet import defer, reactor
from twisted.trial import unittest
from twisted.web.client import HTTPConnectionPool

from pxed.clienttext import client_uuid, client_word, is_hostname
from pxed.dhcp.classify import classify
from pxed.dhcp.packet import DHCPPacket, MessageType, Option, decode, encode
from pxed.machine import Machine, architecture
from pxed.policy import BootRequest
from pxed.templates import ScriptEnv
from tests.server import RunningPxed, udp_client

MAC = "52:54:00:5a:fe:01"
LINUX_MAC = "52:54:00:5a:fe:02"
SLOW_MAC = "52:54:00:5a:fe:03"
UUID = "8a6c1d52-3f0e-4b9e-9d7f-0123456789ab"

POLICY = f"""\
    policy:
      rules:
        - match: {{mac: "{LINUX_MAC}"}}
          linux: {{kernel: KERNEL, cmdline: "uuid={{{{ uuid }}}} class={{{{ user_class }}}} quiet"}}
        - match: {{mac: "{SLOW_MAC}"}}
          ipxe: |
            #!ipxe
            {{% if mac == "{SLOW_MAC}" %}}{{% for i in range(100000) %}}
            {{%- for j in range(100000) %}}{{% endfor %}}{{% endfor %}}{{% endif %}}
            {{{{ beacon }}}}
        - match: {{mac: "52:54:00:*"}}
          ipxe: |
            #!ipxe
            echo uuid={{{{ uuid }}}} class={{{{ user_class }}}}
            {{{{ beacon }}}}
            boot
    """


class ClientTextTests(unittest.TestCase):
    def test_uuid(self) -> None:
        self.assertEqual(client_uuid(UUID.upper()), UUID)
        for bad in ("x", f"{UUID}\nshell", f"{UUID} init=/bin/sh", "", None, UUID[:-1]):
            self.assertIsNone(client_uuid(bad), bad)

    def test_word(self) -> None:
        for good in ("iPXE", "gPXE", "netboot", "my-build_2.0", "rack:a+b@c"):
            self.assertEqual(client_word(good), good)
        for bad in ("iPXE\nshell", "a b", "x||shell", "${net0/mac}", "a;b", "", "x" * 65,
                    "caf\u00e9", None):
            self.assertIsNone(client_word(bad), bad)

    def test_hostname(self) -> None:
        self.assertTrue(is_hostname("web1.example.org"))
        for bad in ("web1 init=/bin/sh", "a\nb", "-x", "x" * 64, ""):
            self.assertFalse(is_hostname(bad), bad)

    def test_dhcp_user_class(self) -> None:
        def user_class(raw: bytes) -> str | None:
            packet = DHCPPacket(chaddr=bytes(6) + bytes(10), options={
                Option.MESSAGE_TYPE: bytes((MessageType.DISCOVER,)),
                Option.VENDOR_CLASS: b"PXEClient:Arch:00000", Option.USER_CLASS: raw})
            return classify(packet).user_class

        self.assertEqual(user_class(b"iPXE"), "iPXE")
        self.assertEqual(user_class(b"\x07netboot"), "netboot")
        self.assertIsNone(user_class(b"iPXE\nchain http://192.0.2.1/x"))
        self.assertIsNone(user_class(b"\x0bnet\nboot x y"))

    def test_templates_see_only_safe_words(self) -> None:
        """
        Even a BootRequest built by an embedding program with raw strings.
        """
        machine = Machine(MAC, architecture(7), uuid="x\ninit=/bin/sh",
                          user_class="iPXE\nshell")
        env = ScriptEnv(BootRequest(machine, "script"), "10.0.0.1", "http://10.0.0.1",
                        "http://10.0.0.1/_/booting", str, lambda n, p: n,
                        hostname="h init=/bin/sh")
        self.assertEqual(env.render("{{ uuid }}|{{ user_class }}|{{ hostname }}"), "||")


class ServerTests(unittest.TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).absolute()
        self.dir.mkdir()
        kernel = self.dir / "vmlinuz"
        kernel.write_bytes(b"kernel")
        self.pxed = RunningPxed(self.dir, POLICY.replace("KERNEL", str(kernel)))
        self.addCleanup(self.pxed.stop)
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(self.pool.closeCachedConnections)

    @defer.inlineCallbacks
    def script(self, url: str) -> Any:
        response = yield treq.get(url, timeout=10, pool=self.pool)
        body = yield treq.content(response)
        self.assertEqual(response.code, 200)
        return body.decode()

    @defer.inlineCallbacks
    def test_http_query(self) -> None:
        base = self.pxed.http_base
        text = yield self.script(f"{base}/_/ipxe?mac={MAC}&arch=7&uuid={quote(UUID)}")
        self.assertIn(f"echo uuid={UUID} class=iPXE", text.splitlines())
        for uuid in ("x\ninit=/bin/sh", "x\r\nshell", f"{UUID}\nchain http://192.0.2.1/x"):
            text = yield self.script(f"{base}/_/ipxe?mac={MAC}&arch=7&uuid={quote(uuid)}")
            lines = text.splitlines()
            self.assertEqual(lines[:2], ["#!ipxe", "echo uuid= class=iPXE"], text)
            self.assertEqual(len(lines), 4, text)
        text = yield self.script(
            f"{base}/_/ipxe?mac={LINUX_MAC}&arch=7&uuid={quote('x init=/bin/sh')}")
        kernel = next(line for line in text.splitlines() if line.startswith("kernel "))
        self.assertTrue(kernel.endswith(" uuid= class=iPXE quiet"), kernel)
        self.assertNotIn("init=/bin/sh", text)

    @defer.inlineCallbacks
    def test_dhcp_user_class(self) -> None:
        """
        An iPXE client asks port 4011 with a user class holding a newline:
        the script its answer names has no line of the client's.
        """
        client = udp_client(self)
        chaddr = bytes.fromhex(MAC.replace(":", "")) + bytes(10)
        packet = DHCPPacket(xid=0x5AFE, chaddr=chaddr, ciaddr="127.0.0.1", options={
            Option.MESSAGE_TYPE: bytes((MessageType.REQUEST,)),
            Option.VENDOR_CLASS: b"PXEClient:Arch:00007:UNDI:003016",
            Option.CLIENT_ARCH: b"\x00\x07",
            Option.USER_CLASS: b"iPXE\nchain http://192.0.2.1/evil",
            Option.IPXE_ENCAPSULATED: b"\x13\x01\x01",
        })
        waiting = client.next_reply()
        client.transport.write(encode(packet), ("127.0.0.1", self.pxed.port("bootserver")))
        reply = decode((yield waiting))
        url = (reply.options.get(Option.BOOTFILE_NAME) or reply.file).rstrip(b"\0").decode()
        parts = urlsplit(url)
        self.assertEqual(parts.path, "/_/ipxe", url)
        # The configuration's HTTP port is 0 (any): ask where it listens.
        text = yield self.script(f"{self.pxed.http_base}{parts.path}?{parts.query}")
        self.assertIn("echo uuid= class=", text.splitlines())
        self.assertNotIn("192.0.2.1", text)
        self.assertEqual(len(text.splitlines()), 4, text)

    @defer.inlineCallbacks
    def test_endless_template(self) -> None:
        """
        A template that would loop 10^10 times (for this machine only, so
        the check at load passes, as an API's template would) ends in an
        error script, and the server answers the next request.
        """
        base = self.pxed.http_base
        text = yield self.script(f"{base}/_/ipxe?mac={SLOW_MAC}&arch=7")
        self.assertIn("took more than", text)
        self.assertTrue(text.startswith("#!ipxe\necho pxed: cannot render"), text)
        text = yield self.script(f"{base}/_/ipxe?mac={MAC}&arch=7")
        self.assertIn("echo uuid= class=iPXE", text.splitlines())
