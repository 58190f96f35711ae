"""
Tests for reloading (L{pxed.runtime}, SIGHUP in L{pxed.tap}): a new
configuration replaces the policy-dependent parts at once, a bad one is
rejected while the old one keeps serving, and open transfers go on.
"""

from __future__ import annotations

import json
import os
import signal
import textwrap
from pathlib import Path
from typing import Any

from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage
from twisted.trial import unittest

from pxed.config import ConfigError, load_config
from pxed.machine import Machine, architecture
from pxed.policy import BootRequest, BootSpec, Chain, LocalBoot
from pxed.policy.actions import firmware_name
from pxed.runtime import make_store
from pxed.service import makeBootService, makePolicy
from pxed.store import StateFileError
from pxed.tap import ReloadOnSignal
from pxed.tftp.source import FileNotFound

MAC = "52:54:00:12:34:56"
OTHER = "52:54:00:00:00:99"


class ReloadTests(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).absolute()
        self.dir.mkdir()
        for name in ("undionly.kpxe", "snponly.efi", "vmlinuz", "grubx64.efi"):
            (self.dir / name).write_bytes(name.encode() * 100)
        self.path = self.dir / "pxed.yaml"
        self.write("local: true")
        self.top = makeBootService(load_config(self.path), reactor=MemoryReactorClock())
        self.runtime: Any = self.top.getServiceNamed("policy")
        # What the DHCP protocols ask, and the parts the web app reads.
        proxydhcp: Any = self.top.getServiceNamed("proxydhcp")
        self.responder = proxydhcp.protocol.responder

    @property
    def web(self) -> Any:
        return self.runtime.parts.current

    def write(self, action: str, extra: str = "") -> None:
        self.path.write_text(textwrap.dedent(f"""\
            server: {{ports: {{dhcp: 0, pxe: 0, tftp: 0, http: 0}}}}
            bootloaders:
              x86-bios: {self.dir}/undionly.kpxe
              x64-uefi: {self.dir}/snponly.efi
            policy:
              rules:
                - match: {{mac: "{MAC}"}}
                  {action}
            {extra}"""))

    def decide(self, policy: Any, mac: str = MAC) -> Any:
        request = BootRequest(Machine(mac, architecture(7)), "proxydhcp")
        return self.successResultOf(policy.boot_spec(request))

    def test_reload_switches_everything(self) -> None:
        grub = str(self.dir / "grubx64.efi")
        self.assertEqual(self.decide(self.responder.policy), LocalBoot())
        self.failureResultOf(self.runtime.tftp.open(firmware_name(grub), ("h", 1)), FileNotFound)
        self.write(f"chain: {grub}", "  exports: {seed: " + str(self.dir) + "}")
        ok, message = self.runtime.reload()
        self.assertTrue(ok, message)
        self.assertIn(str(self.path), message)
        self.assertEqual(self.decide(self.responder.policy), Chain(grub))
        self.assertIs(self.web.policy, self.responder.policy)
        self.assertEqual(self.web.exports, {"seed": self.dir})
        readable = self.successResultOf(self.runtime.tftp.open(firmware_name(grub), ("h", 1)))
        self.assertEqual(readable.read(0, 11), b"grubx64.efi")
        readable.close()

    def test_bad_config_keeps_the_old(self) -> None:
        before = self.responder.policy
        for broken in ("local: maybe", "chain: /nonexistent/grub.efi"):
            self.write(broken)
            ok, message = self.runtime.reload()
            self.assertFalse(ok)
            self.assertIn(f"bad configuration: {self.path}: policy.rules[0]", message)
            self.assertIs(self.responder.policy, before)
            self.assertEqual(self.decide(self.responder.policy), LocalBoot())
        self.path.write_text("server: [unclosed")
        ok, message = self.runtime.reload()
        self.assertFalse(ok)
        self.assertIn("invalid YAML", message)
        self.path.unlink()
        ok, message = self.runtime.reload()
        self.assertFalse(ok)
        self.assertIn("cannot read", message)
        self.assertIs(self.responder.policy, before)

    def test_open_transfers_survive(self) -> None:
        """
        A file TFTP opened before a reload reads to the end after it, even
        though the new configuration no longer names it.
        """
        grub = str(self.dir / "grubx64.efi")
        self.write(f"chain: {grub}")
        self.assertTrue(self.runtime.reload()[0])
        readable = self.successResultOf(self.runtime.tftp.open(firmware_name(grub), ("h", 1)))
        self.write("local: true")
        self.assertTrue(self.runtime.reload()[0])
        self.failureResultOf(self.runtime.tftp.open(firmware_name(grub), ("h", 1)), FileNotFound)
        self.assertEqual(readable.read(0, 2000), b"grubx64.efi" * 100)
        readable.close()
        self.assertEqual(self.successResultOf(
            self.runtime.tftp.open("undionly.kpxe", ("h", 1))).size, 1300)

    def test_signing_key_kept(self) -> None:
        url = self.web.catalog.url("http://h", str(self.dir / "vmlinuz"))
        self.assertTrue(self.runtime.reload()[0])
        token, name = url.split("/")[-2:]
        self.assertEqual(self.web.catalog.resolve(token, name), str(self.dir / "vmlinuz"))

    def test_restart_only_settings_noted(self) -> None:
        text = self.path.read_text().replace("http: 0", "http: 8080")
        self.path.write_text(text)
        ok, message = self.runtime.reload()
        self.assertTrue(ok)
        self.assertIn("server changes need a restart", message)

    def test_status_needs_a_restart(self) -> None:
        """
        The status page and metrics are wired once: a change is noted.
        """
        self.path.write_text(self.path.read_text() + "status: {page: /ops/boots}\n")
        ok, message = self.runtime.reload()
        self.assertTrue(ok)
        self.assertIn("(status changes need a restart)", message)

    def test_state_needs_a_restart(self) -> None:
        """
        The shared state's database is connected once: a change is noted
        (only the syntax of the URL is checked here, nothing connects).
        """
        self.path.write_text(self.path.read_text() + "state: {instance: rack-2}\n")
        ok, message = self.runtime.reload()
        self.assertTrue(ok)
        self.assertIn("(state changes need a restart)", message)

    def test_http_needs_a_restart(self) -> None:
        """
        The HTTP limits are given to the listening site once, at start-up:
        a change is noted.
        """
        self.path.write_text(self.path.read_text() + "http: {request_timeout: 5s}\n")
        ok, message = self.runtime.reload()
        self.assertTrue(ok)
        self.assertIn("(http changes need a restart)", message)

    def test_order_of_sections(self) -> None:
        """
        C{boot.machines}, then C{policy.rules}, then C{boot.default}.
        """
        kernel = self.dir / "vmlinuz"
        self.path.write_text(textwrap.dedent(f"""\
            bootloaders: {{x86-bios: {self.dir}/undionly.kpxe, x64-uefi: {self.dir}/snponly.efi}}
            boot:
              default: {{kernel: {kernel}, cmdline: default}}
              machines: {{"{MAC}": {{kernel: {kernel}, cmdline: machine}}}}
            policy:
              rules: [{{match: {{mac: "52:54:00:00:00:*"}}, local: true}}]
            """))
        policy = makePolicy(load_config(self.path))
        self.assertEqual(self.decide(policy).cmdline, "machine")
        self.assertEqual(self.decide(policy, OTHER), LocalBoot())
        self.assertEqual(self.decide(policy, "52:54:00:11:11:11"),
                         BootSpec(str(kernel), (), "default"))


class StateFileReloadTests(unittest.TestCase):
    """
    A reload re-reads the state file, so deleting a machine's entry and
    reloading installs it again; a broken state file is a one-line error.
    """

    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).absolute()
        self.dir.mkdir()
        for name in ("undionly.kpxe", "snponly.efi"):
            (self.dir / name).write_bytes(b"x")
        self.state = self.dir / "state.json"
        self.path = self.dir / "pxed.yaml"
        self.path.write_text(textwrap.dedent(f"""\
            server: {{ports: {{dhcp: 0, pxe: 0, tftp: 0, http: 0}}}}
            bootloaders: {{x86-bios: {self.dir}/undionly.kpxe, x64-uefi: {self.dir}/snponly.efi}}
            policy:
              state_file: {self.state}
              rules:
                - {{name: install, match: {{mac: "52:54:00:*"}}, once: true, chain: "http://192.0.2.9/installer.efi"}}
            """))

    def start(self) -> Any:
        top = makeBootService(load_config(self.path), reactor=MemoryReactorClock())
        return top.getServiceNamed("policy")

    def done(self, runtime: Any, mac: str) -> bool:
        return bool(self.successResultOf(runtime.store.once_done(mac, "install")))

    def test_deleted_entry_installs_again(self) -> None:
        runtime = self.start()
        for mac in (MAC, OTHER):
            self.successResultOf(runtime.store.mark_once(mac, "install"))
        data = json.loads(self.state.read_text())
        del data["once"][MAC]
        self.state.write_text(json.dumps(data))
        ok, message = runtime.reload()
        self.assertTrue(ok, message)
        self.assertFalse(self.done(runtime, MAC))
        self.assertTrue(self.done(runtime, OTHER))
        # The next beacon (another machine's) must not write the entry back.
        self.successResultOf(runtime.store.mark_once("52:54:00:00:00:42", "install"))
        self.assertNotIn(MAC, json.loads(self.state.read_text())["once"])

    def test_bad_state_file_rejects_the_reload(self) -> None:
        runtime = self.start()
        self.successResultOf(runtime.store.mark_once(MAC, "install"))
        policy = runtime.parts.current.policy
        self.state.write_text("{not json")
        ok, message = runtime.reload()
        self.assertFalse(ok)
        self.assertIn(f"bad configuration: {self.path}: policy.state_file: {self.state}: ",
                      message)
        self.assertIs(runtime.parts.current.policy, policy)
        self.assertTrue(self.done(runtime, MAC))

    def test_state_file_broken_after_the_check(self) -> None:
        """
        If the store cannot re-read the file even so (it changed after the
        configuration was loaded), the new configuration applies, the old
        flags stay, and the answer and the log say so.
        """
        runtime = self.start()
        self.successResultOf(runtime.store.mark_once(MAC, "install"))

        def broken() -> None:
            raise StateFileError(f"{self.state}: cannot read: gone bad")

        self.patch(runtime.store, "reload", broken)
        ok, message = runtime.reload()
        self.assertTrue(ok)
        self.assertIn(f"state file not re-read: {self.state}: cannot read: gone bad; kept the "
                      "state from before", message)
        self.assertTrue(self.done(runtime, MAC))

    def test_corrupt_state_file_at_start(self) -> None:
        """
        Loading the configuration names the broken state file in one line,
        which C{twistd pxed} prints instead of a traceback.
        """
        from pxed.tap import Options

        self.state.write_text('{"version": 1, "once": 3}')
        error = self.assertRaises(ConfigError, load_config, self.path)
        self.assertEqual(error.key, "policy.state_file")
        self.assertIn(str(self.state), str(error))
        usage_error = self.assertRaises(usage.UsageError, Options().parseOptions,
                                        ["--config", str(self.path)])
        self.assertTrue(str(usage_error).startswith(f"bad configuration: {self.path}: "
                                                    f"policy.state_file: {self.state}: "))
        self.assertNotIn("\n", str(usage_error))

    def test_make_store_reports_a_config_error(self) -> None:
        """
        A state file broken after the configuration was loaded is still a
        configuration error for makeBootService's callers.
        """
        config = load_config(self.path)
        self.state.write_text("[]")
        error = self.assertRaises(ConfigError, make_store, config)
        self.assertIn(f"policy.state_file: {self.state}: not a pxed state file", str(error))


class SignalTests(unittest.TestCase):
    def test_sighup_reloads_on_the_reactor(self) -> None:
        calls: list[str] = []

        class Reactor:
            def callFromThread(self, f: Any, *args: Any) -> None:
                calls.append("scheduled")
                f(*args)

        previous = signal.getsignal(signal.SIGHUP)
        service = ReloadOnSignal(lambda: calls.append("reload"), reactor=Reactor())
        service.startService()
        try:
            os.kill(os.getpid(), signal.SIGHUP)
            self.assertEqual(calls, ["scheduled", "reload"])
        finally:
            service.stopService()
        self.assertEqual(signal.getsignal(signal.SIGHUP), previous)

    def test_twistd_service_has_it(self) -> None:
        from pxed.tap import Options, makeService

        base = Path(self.mktemp()).absolute()
        base.mkdir()
        for name in ("undionly.kpxe", "snponly.efi"):
            (base / name).write_bytes(b"x")
        config = base / "pxed.yaml"
        config.write_text(f"bootloaders: {{x86-bios: {base}/undionly.kpxe, "
                          f"x64-uefi: {base}/snponly.efi}}\n")
        options = Options()
        options.parseOptions(["--config", str(config)])
        top: Any = makeService(options).getServiceNamed("pxed")
        kinds = [type(s).__name__ for s in top]
        self.assertIn("ReloadOnSignal", kinds)
        self.assertIn("PolicyRuntime", kinds)
