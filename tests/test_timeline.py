"""
Tests for L{pxed.timeline}: what a machine's events mean (its current
boot, how far it got, loops) and which files an iPXE script loads.
"""

from __future__ import annotations

from typing import Any

from twisted.trial import unittest

from pxed import ipxe, timeline
from pxed.policy import BootSpec
from pxed.state import BootEvent

MAC = "52:54:00:77:00:20"
BASE = "http://192.168.77.1"


def ev(stage: str, when: float, **fields: Any) -> BootEvent:
    return BootEvent(MAC, stage, when, fields)


KERNEL = "/_/file/AAAA.sig/vmlinuz"
INITRD = "/_/file/BBBB.sig/initrd.gz"


def uefi_boot(start: float = 100.0) -> list[BootEvent]:
    """
    The events of a whole UEFI boot as pxed records them (EDK2 probes the
    size of its program with an aborted transfer first).
    """
    return [
        ev("proxydhcp", start, arch="x64-uefi", bootfile="snponly.efi", kind="bootloader"),
        ev("bootserver", start + 1, arch="x64-uefi", bootfile="snponly.efi", kind="bootloader"),
        ev("tftp-start", start + 1.1, file="snponly.efi", peer="192.168.77.50"),
        ev("tftp-end", start + 1.2, file="snponly.efi", outcome="aborted", peer="192.168.77.50"),
        ev("tftp-start", start + 1.3, file="snponly.efi", peer="192.168.77.50"),
        ev("tftp-end", start + 2, file="snponly.efi", outcome="complete", peer="192.168.77.50"),
        ev("proxydhcp", start + 5, arch="x64-uefi", bootfile=f"{BASE}/_/ipxe?mac={MAC}",
           kind="ipxe-script"),
        ev("script", start + 6, arch="x64-uefi", peer="192.168.77.50", action="BootSpec",
           files={KERNEL: "kernel", INITRD: "initrd"}),
        ev("kernel", start + 8, path=KERNEL, file="vmlinuz", bytes=8_000_000),
        ev("initrd", start + 9, path=INITRD, file="initrd.gz", bytes=900_000),
        ev("booting", start + 9.5, peer="192.168.77.50"),
    ]


class MilestoneTests(unittest.TestCase):
    def test_dhcp_to_firmware_and_to_ipxe(self) -> None:
        """
        A ProxyDHCP offer is the start of a boot when it went to firmware,
        and the iPXE DHCP when it carried the script's URL.
        """
        boot = uefi_boot()
        self.assertEqual(timeline.milestone(boot[0]), "offer")
        self.assertEqual(timeline.milestone(boot[6]), "ipxe-dhcp")
        self.assertEqual(timeline.label(boot[0]), "ProxyDHCP offer")
        self.assertEqual(timeline.label(boot[6]), "iPXE DHCP")

    def test_only_complete_transfers_are_steps(self) -> None:
        boot = uefi_boot()
        self.assertIsNone(timeline.milestone(boot[3]))  # the tsize probe
        self.assertEqual(timeline.milestone(boot[5]), "program")
        self.assertIsNone(timeline.milestone(boot[2]))

    def test_files_and_beacon(self) -> None:
        boot = uefi_boot()
        self.assertEqual([timeline.milestone(e) for e in boot[7:]],
                         ["script", "file", "file", "booted"])
        self.assertEqual(timeline.label(boot[-1]), "beacon")
        self.assertEqual(timeline.label(ev("mystery", 1)), "mystery")


class CurrentBootTests(unittest.TestCase):
    def test_one_boot_is_all_of_it(self) -> None:
        boot = uefi_boot()
        self.assertEqual(timeline.current_boot(boot), boot)

    def test_dhcp_after_the_beacon_starts_a_new_boot(self) -> None:
        first, second = uefi_boot(100), uefi_boot(1000)
        self.assertEqual(timeline.current_boot(first + second[:3]), second[:3])

    def test_silence_starts_a_new_boot(self) -> None:
        """
        A boot that stopped halfway is over once the machine asks again
        after a long silence; a short one (EDK2's retries) is the same boot.
        """
        stopped = uefi_boot(100)[:6]
        later = uefi_boot(100 + 2 + timeline.NEW_BOOT_AFTER + 1)[:2]
        self.assertEqual(timeline.current_boot(stopped + later), later)
        soon = uefi_boot(100 + 2 + 30)[:2]
        self.assertEqual(timeline.current_boot(stopped + soon), stopped + soon)

    def test_downloads_after_the_beacon_stay_with_their_boot(self) -> None:
        """
        Only a DHCP request starts a boot: an installer fetching its seed
        from an export after the beacon is still part of that boot.
        """
        boot = [*uefi_boot(), ev("export", 200, path="/_/export/seed/preseed.cfg")]
        self.assertEqual(timeline.current_boot(boot), boot)

    def test_empty(self) -> None:
        self.assertEqual(timeline.current_boot([]), [])


class RepeatsTests(unittest.TestCase):
    WINDOW = 600.0

    def cycle(self, start: float) -> list[BootEvent]:
        # EDK2 fetches iPXE, which fails to get further and reboots.
        return uefi_boot(start)[:6]

    def test_the_same_program_again_and_again(self) -> None:
        events: list[BootEvent] = []
        counts = []
        for n in range(4):
            events += self.cycle(100 + 10 * n)
            counts.append(timeline.repeats(events, self.WINDOW))
        self.assertEqual(counts, [1, 2, 3, 4])

    def test_a_finished_boot_resets(self) -> None:
        events = [*self.cycle(100), *self.cycle(110), *uefi_boot(120)]
        events += self.cycle(200)
        self.assertEqual(timeline.repeats(events, self.WINDOW), 1)

    def test_only_within_the_window(self) -> None:
        events = [*self.cycle(100), *self.cycle(110), *self.cycle(900)]
        self.assertEqual(timeline.repeats(events, self.WINDOW), 1)
        self.assertEqual(timeline.repeats(events, 1000.0), 3)

    def test_other_files_are_not_repeats(self) -> None:
        events = [*self.cycle(100), ev("tftp-end", 105, file="grubx64.efi", outcome="complete")]
        self.assertEqual(timeline.repeats(events, self.WINDOW), 1)

    def test_scripts(self) -> None:
        """
        A script fetched again and again without a beacon (its kernel
        cannot be loaded) is a loop of its own.
        """
        boot = uefi_boot()
        events = boot[6:8] + boot[6:8] + boot[6:8]
        self.assertEqual(timeline.repeats(events, self.WINDOW), 3)

    def test_not_a_fetch(self) -> None:
        self.assertEqual(timeline.repeats(uefi_boot(), self.WINDOW), 0)
        self.assertEqual(timeline.repeats([], self.WINDOW), 0)

    def test_keys(self) -> None:
        self.assertEqual(timeline.fetch_key(ev("program", 1, file="ipxe.efi")), "http:ipxe.efi")
        self.assertEqual(timeline.fetch_key(uefi_boot()[5]), "tftp:snponly.efi")
        self.assertIsNone(timeline.fetch_key(uefi_boot()[3]))


class ScriptFilesTests(unittest.TestCase):
    def test_linux_script(self) -> None:
        """
        What pxed's own Linux script loads from pxed: the kernel and its
        initrds by path; neither the beacon nor another server's files.
        """
        spec = BootSpec("/srv/vmlinuz", ("/srv/initrd.gz", "http://mirror.example/fw.img"),
                        "console=ttyS0")

        def url(location: str) -> str:
            if "://" in location:
                return location
            return f"{BASE}/_/file/TOKEN{len(location)}/{location.rsplit('/', 1)[-1]}"

        text = ipxe.linux_script(spec, url, f"{BASE}/_/booting?mac={MAC}")
        self.assertEqual(timeline.script_files(text, BASE), {
            "/_/file/TOKEN12/vmlinuz": "kernel",
            "/_/file/TOKEN14/initrd.gz": "initrd",
        })

    def test_chain_and_handwritten(self) -> None:
        text = "\n".join([
            "#!ipxe",
            f"chain --autofree {BASE}/_/file/T1/grubx64.efi",
            f"module {BASE}:8080/_/file/T2/other-port",
            f"imgfetch --name seed {BASE}/_/export/seed/x",
            f"initrd --name=\"quoted name {BASE}/_/file/T3/broken",
            f"kernel {BASE.replace('http', 'https')}/_/file/T4/tls",
            "echo http://nothing",
        ])
        self.assertEqual(timeline.script_files(text, BASE), {
            "/_/file/T1/grubx64.efi": "chain",
            "/_/export/seed/x": "file",
        })

    def test_long_lines(self) -> None:
        """
        Lines of a megabyte (a huge command line from the API) are read in
        one pass each (shlex took 14 s for one).
        """
        text = (f"kernel {BASE}/_/file/T/vmlinuz " + "a=b " * 250_000 + "\n"
                + "echo " + "'x" * 500_000 + "\n")
        self.assertEqual(timeline.script_files(text, BASE), {"/_/file/T/vmlinuz": "kernel"})

    def test_base_with_port(self) -> None:
        text = "kernel http://10.0.0.1:8080/_/file/T/vmlinuz quiet\n"
        self.assertEqual(timeline.script_files(text, "http://10.0.0.1:8080"),
                         {"/_/file/T/vmlinuz": "kernel"})
        self.assertEqual(timeline.script_files(text, "http://10.0.0.1"), {})


class ViewTests(unittest.TestCase):
    def test_booted(self) -> None:
        boot = uefi_boot()
        view = timeline.view(MAC, boot, now=boot[-1].when + 5000)
        assert view is not None
        self.assertEqual(view.status, "booted")  # however long ago
        self.assertEqual(view.progress, 1.0)
        self.assertEqual((view.files_expected, view.files_served), (2, 2))
        self.assertEqual((view.arch, view.address), ("x64-uefi", "192.168.77.50"))
        self.assertEqual((view.started, view.last_seen), (100.0, 109.5))
        self.assertEqual((view.stage, view.label), ("booting", "beacon"))
        self.assertEqual(view.events, tuple(boot))

    def test_progress_grows_stage_by_stage(self) -> None:
        boot = uefi_boot()
        progress = []
        for n in range(1, len(boot) + 1):
            view = timeline.view(MAC, boot[:n], now=boot[n - 1].when)
            assert view is not None
            self.assertEqual(view.status, "booted" if n == len(boot) else "booting")
            progress.append(view.progress)
        self.assertEqual(progress, sorted(progress))
        self.assertGreater(progress[8], progress[7])  # the kernel, one file of two
        self.assertGreater(progress[9], progress[8])
        self.assertLess(progress[9], 1.0)
        self.assertEqual(len(set(progress)), 8)

    def test_stalled(self) -> None:
        boot = uefi_boot()[:8]
        last = boot[-1].when
        view = timeline.view(MAC, boot, now=last + timeline.STALLED_AFTER - 1)
        assert view is not None
        self.assertEqual(view.status, "booting")
        view = timeline.view(MAC, boot, now=last + timeline.STALLED_AFTER + 1)
        assert view is not None
        self.assertEqual((view.status, view.label), ("stalled", "iPXE script"))

    def test_looping(self) -> None:
        boot = uefi_boot()[:6]
        events = [*boot, ev("loop", 102.5, fetched="tftp:snponly.efi", count=3)]
        view = timeline.view(MAC, events, now=103)
        assert view is not None
        self.assertEqual((view.status, view.loops), ("looping", 1))
        self.assertEqual(view.stage, "tftp-end")  # where it keeps getting to

    def test_local(self) -> None:
        boot = uefi_boot()[:7] + [ev("script", 106, action="LocalBoot", files={})]
        view = timeline.view(MAC, boot, now=10_000)
        assert view is not None
        self.assertEqual((view.status, view.progress), ("local", 1.0))

    def test_script_without_files(self) -> None:
        boot = uefi_boot()[6:8]
        boot[1] = ev("script", 106, action="Chain", files={})
        boot.append(ev("booting", 107))
        view = timeline.view(MAC, boot, now=107)
        assert view is not None
        self.assertEqual((view.files_expected, view.files_served, view.progress), (0, 0, 1.0))

    def test_nothing(self) -> None:
        self.assertIsNone(timeline.view(MAC, [], now=0))
