"""
Tests for L{pxed.observe}: the recorder every boot stage goes through
(timelines, stage timing, finished boots, loops, and the TFTP and HTTP
hooks that find a client's MAC from its address).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from pxed.machine import Machine, architecture
from pxed.metrics import Metrics
from pxed.observe import BootRecorder
from pxed.peers import PeerMap
from pxed.state import IBootLog, MemoryBootLog
from pxed.tftp.session import TransferResult

MAC = "52:54:00:77:00:20"
CLIENT = "192.168.77.50"
KERNEL = "/_/file/T1/vmlinuz"


def result(outcome: str = "complete", **kw: Any) -> TransferResult:
    values: dict[str, Any] = dict(outcome=outcome, bytes_sent=1000, blocks=1, retransmits=0,
                                  bytes_retransmitted=0, blksize=1468, windowsize=4, tsize=1000,
                                  duration=0.5)
    values.update(kw)
    return TransferResult(**values)


@dataclass
class Packet:
    message_type: int = 1
    relayed: bool = False


class RecorderTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.store = MemoryBootLog(clock=self.clock.seconds)
        self.metrics = Metrics()
        self.neighbours: dict[str, str] = {}
        self.peers = PeerMap(neighbours=lambda: self.neighbours)
        self.recorder = BootRecorder(self.store, self.metrics, self.clock, self.peers,
                                     loop_after=3, loop_window=600)
        self.logged: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)

    def sample(self, name: str, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value(name, labels)

    def stages(self) -> list[str]:
        return [e.stage for e in self.store.events(MAC)]


class BootLogTests(RecorderTestCase):
    def test_interface(self) -> None:
        self.assertTrue(verifyObject(IBootLog, self.recorder))

    def test_forwards(self) -> None:
        self.recorder.record(MAC, "proxydhcp", arch="x64-uefi", peer=("10.0.0.1", 68))
        self.assertEqual(self.recorder.events(MAC), self.store.events(MAC))
        self.assertEqual(self.recorder.machines(), [MAC])
        self.assertEqual(self.recorder.last(MAC), self.store.events(MAC)[-1])
        self.assertEqual(self.recorder.version(), self.store.version())
        # Fields are stored as JSON can carry them, for shared stores.
        self.assertEqual(self.store.events(MAC)[0].fields,
                         {"arch": "x64-uefi", "peer": ["10.0.0.1", 68]})

    def test_stage_timing(self) -> None:
        """
        Each stage is timed from the one before, within one boot.
        """
        self.recorder.record(MAC, "proxydhcp", kind="bootloader")
        self.assertIsNone(self.sample("pxed_boot_stage_seconds_count", stage="proxydhcp"))
        self.clock.advance(1.5)
        self.recorder.record(MAC, "bootserver", kind="bootloader")
        self.clock.advance(4)
        self.recorder.record(MAC, "proxydhcp", kind="ipxe-script")
        self.assertEqual(self.sample("pxed_boot_stage_seconds_sum", stage="bootserver"), 1.5)
        self.assertEqual(self.sample("pxed_boot_stage_seconds_sum", stage="ipxe-dhcp"), 4.0)
        self.assertIsNone(self.sample("pxed_boot_stage_seconds_count", stage="proxydhcp"))

    def test_no_timing_across_boots(self) -> None:
        self.recorder.record(MAC, "booting")
        self.clock.advance(3)
        self.recorder.record(MAC, "proxydhcp", kind="bootloader")
        self.clock.advance(3600)
        self.recorder.record(MAC, "proxydhcp", kind="bootloader")
        self.assertIsNone(self.sample("pxed_boot_stage_seconds_count", stage="proxydhcp"))

    def test_finished_boot(self) -> None:
        self.recorder.record(MAC, "proxydhcp", kind="ipxe-script")
        self.clock.advance(12)
        self.recorder.record(MAC, "script", files={})
        self.clock.advance(30)
        self.recorder.record(MAC, "booting")
        self.assertEqual(self.sample("pxed_machines_booted_total"), 1.0)
        self.assertEqual(self.sample("pxed_boot_seconds_sum"), 42.0)
        self.assertEqual(self.sample("pxed_boot_seconds_count"), 1.0)

    def test_beacon_alone(self) -> None:
        """
        A beacon with nothing before it counts as a boot, with no duration.
        """
        self.recorder.record(MAC, "booting")
        self.assertEqual(self.sample("pxed_machines_booted_total"), 1.0)
        self.assertEqual(self.sample("pxed_boot_seconds_count"), 0.0)


class LoopTests(RecorderTestCase):
    def cycle(self) -> None:
        self.recorder.record(MAC, "proxydhcp", kind="bootloader")
        self.recorder.tftp_ended((CLIENT, 1000), "snponly.efi", result("aborted"))
        self.recorder.tftp_ended((CLIENT, 1001), "snponly.efi", result())
        self.clock.advance(20)

    def test_reported_at_each_multiple(self) -> None:
        self.peers.learn(CLIENT, MAC)
        for _ in range(2):
            self.cycle()
        self.assertNotIn("loop", self.stages())
        self.cycle()
        loops = [e for e in self.store.events(MAC) if e.stage == "loop"]
        self.assertEqual([e.fields for e in loops], [{"fetched": "tftp:snponly.efi", "count": 3}])
        self.assertEqual(self.sample("pxed_boot_loops_total"), 1.0)
        warnings = [e for e in self.logged if e.get("stage") == "loop"]
        self.assertEqual(len(warnings), 1)
        self.assertEqual((warnings[0]["mac"], warnings[0]["log_level"].name), (MAC, "warn"))
        for _ in range(3):
            self.cycle()
        self.assertEqual(self.stages().count("loop"), 2)
        self.assertEqual(self.sample("pxed_boot_loops_total"), 2.0)

    def test_a_finished_boot_is_no_loop(self) -> None:
        self.peers.learn(CLIENT, MAC)
        for _ in range(2):
            self.cycle()
            self.recorder.record(MAC, "booting")
        self.cycle()
        self.assertNotIn("loop", self.stages())
        self.assertEqual(self.sample("pxed_boot_loops_total"), 0.0)


    def test_uploads_are_no_loop(self) -> None:
        """
        An installer uploading the same log again and again, after or
        between boots, is no boot program fetched in circles.
        """
        self.peers.learn(CLIENT, MAC)
        self.recorder.record(MAC, "booting")
        for port in range(1000, 1005):
            self.recorder.tftp_ended((CLIENT, port), "install.log", result(upload=True))
        self.assertNotIn("loop", self.stages())
        self.assertEqual(self.stages()[1:], ["tftp-upload"] * 5)
        self.assertEqual(self.sample("pxed_boot_loops_total"), 0.0)


class TFTPHookTests(RecorderTestCase):
    def test_known_peer(self) -> None:
        self.neighbours[CLIENT] = MAC
        self.recorder.tftp_started((CLIENT, 1001), "snponly.efi", {"blksize": "1468"})
        self.recorder.tftp_ended((CLIENT, 1001), "snponly.efi",
                                 result(bytes_sent=1234, retransmits=2, duration=0.25))
        start, end = self.store.events(MAC)
        self.assertEqual(start.stage, "tftp-start")
        self.assertEqual(start.fields, {"file": "snponly.efi", "peer": CLIENT,
                                        "options": {"blksize": "1468"}})
        self.assertEqual(end.stage, "tftp-end")
        self.assertEqual({k: end.fields[k] for k in ("file", "outcome", "bytes", "seconds",
                                                       "blksize", "windowsize", "retransmits")},
                         {"file": "snponly.efi", "outcome": "complete", "bytes": 1234,
                          "seconds": 0.25, "blksize": 1468, "windowsize": 4, "retransmits": 2})

    def test_unknown_peer_still_counts(self) -> None:
        self.recorder.tftp_started((CLIENT, 1001), "snponly.efi", {})
        self.recorder.tftp_ended((CLIENT, 1001), "snponly.efi",
                                 result("timeout", bytes_sent=512, retransmits=5))
        self.assertEqual(self.store.machines(), [])
        self.assertEqual(self.sample("pxed_tftp_transfers_total", outcome="timeout"), 1.0)
        self.assertEqual(self.sample("pxed_tftp_bytes_total"), 512.0)
        self.assertEqual(self.sample("pxed_tftp_retransmits_total"), 5.0)


class NotFoundTests(RecorderTestCase):
    def test_not_found_line_metric_and_event(self) -> None:
        self.neighbours[CLIENT] = MAC
        self.recorder.tftp_not_found((CLIENT, 1001), "grubx64.efi")
        [event] = self.store.events(MAC)
        self.assertEqual((event.stage, event.fields), ("tftp-not-found",
                                                       {"file": "grubx64.efi", "peer": CLIENT}))
        self.assertEqual(self.sample("pxed_tftp_not_found_total"), 1.0)
        [line] = [e for e in self.logged if e.get("stage") == "tftp-not-found"]
        self.assertEqual(line["log_level"].name, "info")
        self.assertEqual(line["who"], MAC)

    def test_optional_probes_are_quiet(self) -> None:
        """
        What shim and GRUB ask for on every boot and do well without is
        counted, but is no step of the boot and no info line.
        """
        self.neighbours[CLIENT] = MAC
        for name in ("revocations_sbat.efi", "shim_certificate_0.efi",
                     "/grub/x86_64-efi/command.lst"):
            self.recorder.tftp_not_found((CLIENT, 1001), name)
        self.assertEqual(self.store.events(MAC), [])
        self.assertEqual(self.sample("pxed_tftp_not_found_total"), 3.0)
        self.assertEqual([e["log_level"].name for e in self.logged
                          if "optional probe" in e.get("log_format", "")], ["debug"] * 3)

    def test_within_the_log_budget(self) -> None:
        """
        A client asking for missing files in a loop gets the budget's lines
        at info level, the rest at debug, and the next line says how many
        were left out; every one is counted.
        """
        for _ in range(200):
            self.recorder.tftp_not_found((CLIENT, 1001), "nothere")
        levels = [e["log_level"].name for e in self.logged if e.get("stage") == "tftp-not-found"]
        self.assertEqual(levels.count("info"), self.recorder.budget.burst)
        self.assertEqual(levels.count("debug"), 200 - self.recorder.budget.burst)
        self.assertEqual(self.sample("pxed_tftp_not_found_total"), 200.0)
        self.clock.advance(10)
        self.recorder.tftp_not_found((CLIENT, 1001), "nothere")
        self.assertEqual(self.logged[-1]["left_out"], 200 - self.recorder.budget.burst)
        self.assertEqual(self.store.machines(), [])  # no MAC known: no timeline

    def test_script_error_counted(self) -> None:
        self.recorder.record(MAC, "script-error", rule="r", error="template error: x")
        self.assertEqual(self.sample("pxed_template_errors_total"), 1.0)


class HTTPHookTests(RecorderTestCase):
    def script(self) -> None:
        self.recorder.record(MAC, "script", peer=CLIENT, action="BootSpec",
                             files={KERNEL: "kernel", "/_/file/T2/initrd.gz": "initrd"})

    def test_files_named_by_the_script(self) -> None:
        """
        The script's request taught pxed the client's address; its
        downloads are that machine's kernel and initrd.
        """
        self.script()
        self.recorder.http_served("file", CLIENT, "GET", KERNEL, 200, 8000, 1.25)
        self.recorder.http_served("file", CLIENT, "GET", "/_/file/T2/initrd.gz", 200, 900, 0.5)
        self.recorder.http_served("file", CLIENT, "GET", "/_/file/T3/other", 200, 10, 0.1)
        self.assertEqual(self.stages(), ["script", "kernel", "initrd", "file"])
        kernel = self.store.events(MAC)[1]
        self.assertEqual(kernel.fields, {"path": KERNEL, "file": "vmlinuz", "peer": CLIENT,
                                         "bytes": 8000, "seconds": 1.25, "code": 200})
        lines = [e for e in self.logged if e.get("stage") == "kernel"]
        self.assertEqual(len(lines), 1)
        self.assertEqual(lines[0]["log_level"].name, "info")
        self.assertEqual(self.sample("pxed_http_bytes_total", kind="file"), 8910.0)
        self.assertEqual(self.sample("pxed_http_requests_total", kind="file", code="200"), 3.0)

    def test_not_stages(self) -> None:
        """
        Failed downloads, HEAD requests, other kinds and strangers are
        counted but are no stage of anyone's boot.
        """
        self.script()
        self.recorder.http_served("file", CLIENT, "HEAD", KERNEL, 200, 0, 0.1)
        self.recorder.http_served("file", CLIENT, "GET", KERNEL, 404, 10, 0.1)
        self.recorder.http_served("status", CLIENT, "GET", "/_/status/", 200, 100, 0.1)
        self.recorder.http_served("file", "10.9.9.9", "GET", KERNEL, 200, 10, 0.1)
        self.recorder.http_served("file", None, "GET", KERNEL, 200, 10, 0.1)
        self.assertEqual(self.stages(), ["script"])
        # The stranger's download still has its line, without a MAC.
        [line] = [e for e in self.logged if e.get("peer") == "10.9.9.9"]
        self.assertEqual((line["log_level"].name, line["bytes"]), ("info", 10))
        self.assertNotIn("mac", line)
        self.assertEqual(self.sample("pxed_http_requests_total", kind="file", code="404"), 1.0)
        self.assertEqual(self.sample("pxed_http_requests_total", kind="status", code="200"), 1.0)

    def test_program_and_export(self) -> None:
        self.neighbours[CLIENT] = MAC
        self.recorder.http_served("program", CLIENT, "GET", "/_/boot/ipxe.efi", 200, 5, 0.1)
        self.recorder.http_served("export", CLIENT, "GET", "/_/export/seed/a.cfg", 200, 5, 0.1)
        self.recorder.http_served("file", CLIENT, "GET", KERNEL, 200, 5, 0.1)
        self.assertEqual(self.stages(), ["program", "export", "file"])


class DHCPHookTests(RecorderTestCase):
    machine = Machine(MAC, architecture(7))

    def test_answered(self) -> None:
        started = self.recorder.dhcp_received("bootserver")
        self.clock.advance(0.004)
        answer = object()
        self.assertIs(self.recorder.dhcp_answered(answer, "bootserver", Packet(3),
                                                  self.machine, (CLIENT, 4011), started), answer)
        self.assertEqual(self.sample("pxed_dhcp_requests_total", port="bootserver",
                                     type="request", arch="x64-uefi", outcome="acked"), 1.0)
        self.assertEqual(self.sample("pxed_dhcp_replies_total", port="bootserver", type="ack"),
                         1.0)
        self.assertAlmostEqual(self.sample("pxed_dhcp_reply_seconds_sum", port="bootserver")
                               or 0.0, 0.004)
        self.assertEqual(self.peers.mac(CLIENT), MAC)

    def test_relayed_teaches_nothing(self) -> None:
        self.recorder.dhcp_answered(object(), "proxydhcp", Packet(1, relayed=True),
                                    self.machine, ("10.20.0.1", 67), 1000.0)
        self.assertIsNone(self.peers.mac("10.20.0.1"))
        self.assertEqual(self.sample("pxed_dhcp_requests_total", port="proxydhcp",
                                     type="discover", arch="x64-uefi", outcome="offered"), 1.0)

    def test_ignored_and_error(self) -> None:
        self.assertIsNone(self.recorder.dhcp_answered(None, "proxydhcp", Packet(1),
                                                      self.machine, ("0.0.0.0", 68), 1000.0))
        failure = Failure(RuntimeError("policy broke"))
        self.assertIs(self.recorder.dhcp_answered(failure, "proxydhcp", Packet(1),
                                                  self.machine, ("0.0.0.0", 68), 1000.0),
                      failure)
        for outcome in ("ignored", "error"):
            self.assertEqual(self.sample("pxed_dhcp_requests_total", port="proxydhcp",
                                         type="discover", arch="x64-uefi", outcome=outcome), 1.0)
        self.assertIsNone(self.sample("pxed_dhcp_replies_total", port="proxydhcp", type="offer"))

    def test_unknown_architecture_is_one_label(self) -> None:
        for code in (4711, 4712):
            self.recorder.dhcp_answered(None, "proxydhcp", Packet(1),
                                        Machine(MAC, architecture(code)), ("0.0.0.0", 68), 0)
        self.assertEqual(self.sample("pxed_dhcp_requests_total", port="proxydhcp",
                                     type="discover", arch="unknown", outcome="ignored"), 2.0)
