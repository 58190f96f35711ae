"""
Tests for L{pxed.dhcp.responder}: what each kind of machine is told.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from twisted.internet.defer import ensureDeferred, fail
from twisted.trial import unittest
from zope.interface import implementer
from zope.interface.verify import verifyObject

from pxed.dhcp.reply import BootAnswer
from pxed.dhcp.responder import BootResponder, http_base, script_url
from pxed.machine import Machine, architecture
from pxed.policy import BootSpec, IBootPolicy, StaticPolicy
from pxed.state import IBootLog, MemoryBootLog
from pxed.testing.policy import SlowPolicy
from tests.fixtures import write_bootloaders

MAC = "52:54:00:77:00:10"
OTHER_MAC = "52:54:00:77:00:99"
SERVER = "192.168.77.1"
GUID = "12345678-9abc-def0-1122-334455667788"


@implementer(IBootPolicy)
class ResponderTestCase(unittest.TestCase):
    def setUp(self) -> None:
        base = Path(self.mktemp()).absolute()
        base.mkdir()
        self.kernel = base / "vmlinuz"
        self.kernel.write_bytes(b"kernel")
        self.bootloaders = write_bootloaders(base)
        self.spec = BootSpec(kernel=str(self.kernel))
        self.policy = StaticPolicy({MAC: self.spec})
        self.boot_log = MemoryBootLog()
        self.responder = BootResponder(self.policy, self.bootloaders, 8080, self.boot_log)

    def answer(self, machine: Machine, stage: str = "proxydhcp") -> BootAnswer | None:
        d = ensureDeferred(self.responder.answer(machine, SERVER, stage))
        return self.successResultOf(d)


class AnswerTests(ResponderTestCase):
    def test_bios(self) -> None:
        answer = self.answer(Machine(MAC, architecture(0)))
        self.assertEqual(answer, BootAnswer(SERVER, "undionly.kpxe", discovery_control=True))

    def test_uefi(self) -> None:
        for code in (7, 9):
            answer = self.answer(Machine(MAC, architecture(code)))
            self.assertEqual(answer, BootAnswer(SERVER, "snponly.efi", discovery_control=False))

    def test_ipxe_gets_script_url(self) -> None:
        answer = self.answer(Machine(MAC, architecture(7), uuid=GUID, ipxe=True))
        assert answer is not None
        url = urlsplit(answer.bootfile)
        self.assertEqual((url.scheme, url.netloc, url.path),
                         ("http", "192.168.77.1:8080", "/_/ipxe"))
        self.assertEqual(parse_qs(url.query), {"mac": [MAC], "arch": ["7"], "uuid": [GUID]})
        self.assertEqual(answer.server, SERVER)
        self.assertFalse(answer.discovery_control)

    def test_ipxe_bios_rom(self) -> None:
        """
        iPXE on BIOS gets the script (never iPXE again) and option 43.
        """
        answer = self.answer(Machine(MAC, architecture(0), ipxe=True))
        assert answer is not None
        self.assertTrue(answer.bootfile.startswith("http://192.168.77.1:8080/_/ipxe?"))
        self.assertNotIn("uuid", answer.bootfile)
        self.assertTrue(answer.discovery_control)

    def test_ipxe_without_bootloader(self) -> None:
        """
        iPXE on an architecture pxed has no bootloader for is still iPXE:
        it gets its script.
        """
        answer = self.answer(Machine(MAC, architecture(11), ipxe=True))
        assert answer is not None
        self.assertIn("arch=11", answer.bootfile)

    def test_no_bootloader_for_arch(self) -> None:
        self.assertIsNone(self.answer(Machine(MAC, architecture(11))))
        self.assertIsNone(self.answer(Machine(MAC, architecture(200))))
        self.assertEqual(self.boot_log.events(MAC), [])

    def test_unknown_machine(self) -> None:
        self.assertIsNone(self.answer(Machine(OTHER_MAC, architecture(7))))
        self.assertIsNone(self.answer(Machine(OTHER_MAC, architecture(7), ipxe=True)))
        self.assertEqual(self.boot_log.machines(), [])

    def test_default_entry(self) -> None:
        self.responder.policy = StaticPolicy({}, default=self.spec)
        answer = self.answer(Machine(OTHER_MAC, architecture(7)))
        self.assertEqual(answer, BootAnswer(SERVER, "snponly.efi"))

    def test_http_boot(self) -> None:
        """
        A UEFI HTTP Boot client is told the URL of its PXE twin's program
        on pxed's HTTP server, with option 60 HTTPClient.
        """
        answer = self.answer(Machine(MAC, architecture(16), http_boot=True))
        self.assertEqual(answer, BootAnswer(SERVER, "http://192.168.77.1:8080/_/boot/snponly.efi",
                                            vendor_class=b"HTTPClient"))
        self.assertEqual(self.boot_log.events(MAC)[0].fields["bootfile"], answer.bootfile)

    def test_http_boot_own_program(self) -> None:
        own = self.kernel.with_name("ipxe.efi")
        own.write_bytes(b"efi")
        self.responder.bootloaders["x64-uefi-http"] = own
        answer = self.answer(Machine(MAC, architecture(16), http_boot=True))
        assert answer is not None
        self.assertEqual(answer.bootfile, "http://192.168.77.1:8080/_/boot/ipxe.efi")

    def test_http_boot_unserved(self) -> None:
        self.assertIsNone(self.answer(Machine(MAC, architecture(19), http_boot=True)))
        self.assertIsNone(self.answer(Machine(MAC, architecture(20), http_boot=True)))
        self.assertEqual(self.boot_log.events(MAC), [])

    def test_records_boot_log(self) -> None:
        self.answer(Machine(MAC, architecture(7)), stage="proxydhcp")
        self.answer(Machine(MAC, architecture(7)), stage="bootserver")
        events = self.boot_log.events(MAC)
        self.assertEqual([e.stage for e in events], ["proxydhcp", "bootserver"])
        self.assertEqual(events[0].fields, {"arch": "x64-uefi", "bootfile": "snponly.efi",
                                            "kind": "bootloader"})

    def test_slow_policy(self) -> None:
        policy = SlowPolicy()
        self.responder.policy = policy
        d = ensureDeferred(self.responder.answer(Machine(MAC, architecture(0)), SERVER, "x"))
        self.assertNoResult(d)
        policy.asked[0][1].callback(self.spec)
        self.assertEqual(self.successResultOf(d).bootfile, "undionly.kpxe")

    def test_policy_failure_propagates(self) -> None:
        self.responder.policy.boot_spec = lambda machine: fail(KeyError("db down"))
        d = ensureDeferred(self.responder.answer(Machine(MAC, architecture(0)), SERVER, "x"))
        self.failureResultOf(d, KeyError)

    def test_bootloaders_copied(self) -> None:
        self.bootloaders.clear()
        self.assertIsNotNone(self.answer(Machine(MAC, architecture(0))))

    def test_interfaces(self) -> None:
        verifyObject(IBootPolicy, self.policy)
        verifyObject(IBootLog, self.boot_log)


class URLTests(unittest.TestCase):
    def test_http_base(self) -> None:
        self.assertEqual(http_base("10.0.0.1", 80), "http://10.0.0.1")
        self.assertEqual(http_base("10.0.0.1", 8080), "http://10.0.0.1:8080")

    def test_script_url(self) -> None:
        url = script_url("http://h", Machine(MAC, architecture(9)))
        self.assertEqual(url, "http://h/_/ipxe?mac=52:54:00:77:00:10&arch=9")

    def test_script_url_quotes(self) -> None:
        url = script_url("http://h", Machine("a&b=c d", architecture(9), uuid="x/y"))
        self.assertEqual(parse_qs(urlsplit(url).query),
                         {"mac": ["a&b=c d"], "arch": ["9"], "uuid": ["x/y"]})
