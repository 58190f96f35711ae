"""
Tests for L{pxed.grub.source}: GRUB's configurations, files and beacon as
TFTP serves them (the policy asked per machine, signed file IDs, 'once',
the timeline), directly and through a real TFTP client (curl) on
127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from pxed.grub.source import GrubSource, config_files
from pxed.http.files import FileCatalog
from pxed.metrics import Metrics
from pxed.observe import BootRecorder
from pxed.peers import PeerMap
from pxed.policy import BootSpec, IPXEScript, LocalBoot, Rule, RulePolicy
from pxed.policy.match import ArchMatcher, MacMatcher, Match
from pxed.signing import Signer
from pxed.state import MemoryBootLog
from pxed.store import MemoryStateStore
from pxed.tftp.protocol import TFTPServerProtocol
from pxed.tftp.source import ChainSource, FileNotFound, IFileSource
from tests.fixtures import settle

MAC = "52:54:00:12:34:56"
PEER = ("192.168.77.50", 1234)
KEY = b"k" * 32
CONFIG = f"/_/grub/x86_64-efi/{MAC}.cfg"


def read(readable: Any) -> bytes:
    data = readable.read(0, 1 << 20)
    readable.close()
    return bytes(data)


class SourceTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).absolute()
        self.dir.mkdir()
        self.kernel = self.dir / "vmlinuz"
        self.kernel.write_bytes(os.urandom(5000))
        self.initrd = self.dir / "initrd.img"
        self.initrd.write_bytes(b"initrd contents")
        self.clock = Clock()
        self.clock.advance(1000)
        self.log = MemoryBootLog(clock=self.clock.seconds)
        self.recorder = BootRecorder(self.log, Metrics(), self.clock, PeerMap(neighbours=dict))
        # pxed knows the machine at PEER (its port-4011 request, or the
        # neighbour table): only then does its configuration carry 'once'.
        self.recorder.peers.learn(PEER[0], MAC)
        self.store = MemoryStateStore()
        self.signer = Signer(KEY)
        self.source = GrubSource(self.recorder, 80, "192.168.77.1",
                                 catalog=FileCatalog(self.signer), store=self.store,
                                 hostnames={MAC: "web1"})

    def rules(self, *rules: Rule) -> None:
        self.source.policy = RulePolicy(rules, self.store)

    def linux(self, **kw: Any) -> BootSpec:
        return BootSpec(str(self.kernel), (str(self.initrd),), "console=ttyS0 host={{ hostname }}",
                        **kw)

    def open(self, name: str, peer: tuple[str, int] = PEER) -> bytes:
        return read(self.successResultOf(self.source.open(name, peer)))

    def config(self, name: str = CONFIG) -> str:
        return self.open(name).decode()


class ConfigTests(SourceTestCase):
    def test_interface(self) -> None:
        self.assertTrue(verifyObject(IFileSource, self.source))

    def test_loader(self) -> None:
        for name in ("/grub/grub.cfg", "grub/grub.cfg", "\\grub\\grub.cfg"):
            self.assertIn(b"${net_default_mac}.cfg", self.open(name))

    def test_linux(self) -> None:
        self.rules(Rule("web", Match((MacMatcher((MAC,)),)), self.linux()))
        text = self.config()
        self.assertIn("'console=ttyS0' 'host=web1'; then", text)
        files = config_files(text)
        self.assertEqual(sorted(files.values()), ["initrd", "kernel"])
        # Each path the configuration names is the file, by TFTP.
        by_kind = {kind: path for path, kind in files.items()}
        self.assertEqual(self.open(by_kind["kernel"]), self.kernel.read_bytes())
        self.assertEqual(self.open(by_kind["initrd"]), b"initrd contents")
        event = self.log.events(MAC)[-1]
        self.assertEqual((event.stage, event.fields["loader"], event.fields["arch"]),
                         ("script", "grub", "x64-uefi"))
        self.assertEqual(event.fields["files"], files)
        self.assertEqual(event.fields["peer"], PEER[0])

    def test_platform_is_the_architecture(self) -> None:
        """
        Rules matching on the architecture decide for GRUB as for its
        firmware's DHCP request.
        """
        self.rules(Rule("arm", Match((ArchMatcher(codes=frozenset({11})),)), LocalBoot()),
                   Rule("x64", Match(), self.linux()))
        self.assertIn("booting from the local disk",
                      self.config(f"/_/grub/arm64-efi/{MAC}.cfg"))
        self.assertIn("if linux", self.config())

    def test_no_entry(self) -> None:
        self.rules()
        self.assertIn("no boot entry for this machine", self.config())
        self.assertEqual(self.log.events(MAC), [])

    def test_cannot_write(self) -> None:
        """
        A URL kernel (GRUB loads by TFTP) or a command line GRUB would
        change: the machine is told why, the log and timeline too.
        """
        self.rules(Rule("remote", Match(), BootSpec("http://mirror.invalid/vmlinuz")))
        text = self.config()
        self.assertIn("cannot write the boot configuration", text)
        self.assertNotIn("linux", text.replace("# Generated", ""))
        self.assertIn("GRUB loads files by TFTP", self.log.events(MAC)[-1].fields["error"])

    def test_ipxe_rule(self) -> None:
        self.rules(Rule("lab", Match(), IPXEScript("#!ipxe\nboot")))
        self.assertIn("rule lab is an iPXE script, which GRUB cannot run", self.config())
        self.assertEqual(self.log.events(MAC)[-1].fields["action"], "IPXEScript")

    def test_not_served(self) -> None:
        for name in ("/_/grub/x86_64-efi/nomac.cfg", "/_/file/forged.id/vmlinuz", "/_/other/x/y",
                     "/grub/x86_64-efi/command.lst", "/grub/../etc/passwd", "/_/file/x"):
            self.failureResultOf(self.source.open(name, PEER), FileNotFound)

    def test_file_ids_expire_with_the_catalog(self) -> None:
        """
        Under C{policy.signing.max_age} GRUB's file IDs expire as HTTP's do.
        """
        now = [1000.0]
        self.source.catalog = FileCatalog(self.signer, max_age=60, clock=lambda: now[0])
        self.rules(Rule("web", Match(), self.linux()))
        kernel = next(p for p, k in config_files(self.config()).items() if k == "kernel")
        self.assertEqual(self.open(kernel), self.kernel.read_bytes())
        now[0] += 61
        self.failureResultOf(self.source.open(kernel, PEER), FileNotFound)

    def test_file_ids_are_bound_to_their_name(self) -> None:
        self.rules(Rule("web", Match(), self.linux()))
        kernel = next(p for p, k in config_files(self.config()).items() if k == "kernel")
        self.failureResultOf(self.source.open(kernel.rsplit("/", 1)[0] + "/initrd.img", PEER),
                             FileNotFound)


class BeaconTests(SourceTestCase):
    def beacon(self, text: str) -> str:
        line = next(line for line in text.splitlines() if line.strip().startswith("source"))
        return line.split("'")[1]

    def test_recorded(self) -> None:
        self.rules(Rule("web", Match(), self.linux()))
        beacon = self.beacon(self.config())
        self.assertEqual(beacon, f"/_/booting/{MAC}")
        self.assertTrue(self.open(beacon).startswith(b"#"))
        self.assertEqual(self.log.events(MAC)[-1].stage, "booting")

    def test_once(self) -> None:
        self.rules(Rule("install", Match(), self.linux(), once=True),
                   Rule("disk", Match(), LocalBoot()))
        beacon = self.beacon(self.config())
        self.assertTrue(beacon.startswith(f"/_/booting/{MAC}/"))
        self.assertIn("if linux", self.config())  # not booted yet: still the install
        self.open(beacon)
        self.assertTrue(self.successResultOf(self.store.once_done(MAC, "install")))
        self.assertIn("booting from the local disk", self.config())

    def test_forged_once(self) -> None:
        self.rules(Rule("install", Match(), self.linux(), once=True))
        other = "52:54:00:99:99:99"
        token = self.beacon(self.config()).rsplit("/", 1)[1]
        self.open(f"/_/booting/{other}/{token}")  # another machine's token
        self.open(f"/_/booting/{MAC}/{token[:-2]}xx")
        self.assertFalse(self.successResultOf(self.store.once_done(MAC, "install")))
        self.assertFalse(self.successResultOf(self.store.once_done(other, "install")))

    def test_strangers_cannot_end_once_or_boot(self) -> None:
        """
        GRUB's configuration and beacon are TFTP files anyone can name: from
        an address pxed does not know the machine at, the configuration
        carries no 'once' token and the beacon is counted, not recorded.
        """
        self.rules(Rule("install", Match(), self.linux(), once=True),
                   Rule("disk", Match(), LocalBoot()))
        stranger = ("192.168.77.66", 4321)
        text = read(self.successResultOf(self.source.open(
            f"_/grub/x86_64-efi/{MAC}.cfg", stranger))).decode()
        beacon = self.beacon(text)
        self.assertEqual(beacon, f"/_/booting/{MAC}")
        self.assertIsNone(self.recorder.peers.mac(stranger[0]))  # it taught nothing
        token = self.beacon(self.config()).rsplit("/", 1)[1]  # the machine's own
        for name in (beacon, f"/_/booting/{MAC}/{token}"):
            read(self.successResultOf(self.source.open(name.lstrip("/"), stranger)))
        self.assertFalse(self.successResultOf(self.store.once_done(MAC, "install")))
        self.assertNotIn("booting", [e.stage for e in self.log.events(MAC)])
        self.assertEqual(self.source.unverified_beacons, 2)

    def test_not_a_mac(self) -> None:
        """
        Served all the same (a beacon never stops a boot), recorded nowhere.
        """
        self.assertTrue(self.open("/_/booting/nonsense").startswith(b"#"))
        self.assertEqual(self.log.machines(), [])


class TimelineTests(SourceTestCase):
    def test_tftp_files_are_the_kernel_and_initrd(self) -> None:
        from pxed.tftp.session import TransferResult

        self.rules(Rule("web", Match(), self.linux()))
        files = config_files(self.config())
        for path in files:
            result = TransferResult(outcome="complete", bytes_sent=10, blocks=1, retransmits=0,
                                    bytes_retransmitted=0, blksize=1024, windowsize=1, tsize=10,
                                    duration=0.1)
            self.recorder.tftp_ended(PEER, path, result)
        stages = [e.stage for e in self.log.events(MAC)]
        self.assertEqual(stages, ["script", "kernel", "initrd"])
        self.assertEqual({e.fields.get("path") for e in self.log.events(MAC)[1:]}, set(files))


LOCAL = "127.0.0.1"


class CurlTests(unittest.TestCase):
    """
    A real TFTP client fetches what GRUB fetches, in GRUB's order.
    """

    timeout = 60

    @defer.inlineCallbacks
    def test_boot_sequence(self) -> Any:
        for tool in ("curl", "timeout"):
            if shutil.which(tool) is None:
                raise AssertionError(f"missing {tool}: run scripts/setup")
        here = Path(self.mktemp()).absolute()
        here.mkdir()
        kernel = here / "vmlinuz"
        kernel.write_bytes(os.urandom(100_000))
        log = MemoryBootLog()
        recorder = BootRecorder(log, Metrics(), reactor, PeerMap(neighbours=dict))
        recorder.peers.learn(LOCAL, MAC)  # as its DHCP request would have taught
        store = MemoryStateStore()
        grub = GrubSource(recorder, 80, LOCAL, catalog=FileCatalog(Signer(KEY)), store=store,
                          policy=RulePolicy([Rule("web", Match(), BootSpec(str(kernel), (),
                                                                           "ro quiet"))], store))
        ends: list[Any] = []
        server = TFTPServerProtocol(ChainSource([grub]), reactor,
                                    on_transfer_start=recorder.tftp_started,
                                    on_transfer_end=lambda *a: (recorder.tftp_ended(*a),
                                                                ends.append(a)))
        port = reactor.listenUDP(0, server, interface=LOCAL)
        self.addCleanup(port.stopListening)

        def get(name: str) -> Any:
            return getProcessOutputAndValue(
                "timeout", ["20", "curl", "-s", "-S", "--tftp-blksize", "1024",
                            f"tftp://{LOCAL}:{port.getHost().port}/{name}"],
                env=dict(os.environ), reactor=reactor)

        out, err, code = yield get("grub/grub.cfg")
        self.assertEqual(code, 0, err)
        out, err, code = yield get(f"_/grub/x86_64-efi/{MAC}.cfg")
        self.assertEqual(code, 0, err)
        text = out.decode()
        self.assertIn("'ro' 'quiet'; then", text)
        path = next(iter(config_files(text)))
        out, err, code = yield get(path.lstrip("/"))
        self.assertEqual((code, out), (0, kernel.read_bytes()), err)
        out, err, code = yield get(f"_/booting/{MAC}")
        self.assertEqual(code, 0, err)
        yield settle(ends, 4)
        stages = [e.stage for e in log.events(MAC)]
        # grub.cfg (a TFTP transfer of a machine pxed knows), then its own.
        self.assertEqual(stages[0], "tftp-start")
        self.assertIn("script", stages)
        self.assertIn("kernel", stages)
        self.assertEqual(stages[-1], "booting")
