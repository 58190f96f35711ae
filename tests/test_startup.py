"""
Start-up and reload errors are one line naming the file and the key (or
the port and the process holding it): duplicate YAML keys, templates that
cannot render, an interface the host lacks, a port in use, a low port
without permission.  The twistd cases start a real C{twistd pxed}.
"""

from __future__ import annotations

import errno
import io
import os
import socket
import subprocess
import sys
from pathlib import Path

from twisted.trial import unittest

from pxed.cli import main
from pxed.config import ConfigError, load_config
from pxed.ports import (
    OneLineStartup,
    PortError,
    TCPService,
    UDPService,
    explain_listen_error,
    port_holders,
)

REPO = Path(__file__).resolve().parent.parent


def _config(case: unittest.TestCase, text: str) -> Path:
    base = Path(case.mktemp()).absolute()
    base.mkdir()
    for name in ("undionly.kpxe", "snponly.efi", "vmlinuz"):
        (base / name).write_bytes(b"x")
    path = base / "pxed.yaml"
    path.write_text(f"bootloaders: {{x86-bios: {base}/undionly.kpxe, "
                    f"x64-uefi: {base}/snponly.efi}}\n" + text.replace("BASE", str(base)))
    return path


class DuplicateKeyTests(unittest.TestCase):
    def test_top_level_section_twice(self) -> None:
        path = _config(self, "policy:\n  rules: []\nserver: {}\npolicy:\n  rules: []\n")
        error = self.assertRaises(ConfigError, load_config, path)
        self.assertEqual(error.key, "policy")
        self.assertIn("given twice (line 2 and line 5)", str(error))
        self.assertNotIn("\n", str(error))

    def test_nested_key_twice(self) -> None:
        path = _config(self, 'boot:\n  machines:\n'
                             '    "52:54:00:12:34:56": {kernel: BASE/vmlinuz}\n'
                             '    "52:54:00:12:34:56": {kernel: BASE/vmlinuz, cmdline: x}\n')
        error = self.assertRaises(ConfigError, load_config, path)
        self.assertEqual(error.key, "boot.machines.52:54:00:12:34:56")

    def test_key_twice_inside_a_list(self) -> None:
        path = _config(self, "policy:\n  rules:\n  - match: {mac: '52:54:00:*'}\n"
                             "    local: true\n    local: true\n")
        error = self.assertRaises(ConfigError, load_config, path)
        self.assertEqual(error.key, "policy.rules[0].local")

    def test_same_key_in_different_mappings_is_fine(self) -> None:
        path = _config(self, "boot:\n  default: {kernel: BASE/vmlinuz, cmdline: a}\n"
                             "  machines:\n    '52:54:00:12:34:56': {kernel: BASE/vmlinuz, "
                             "cmdline: a}\n")
        self.assertEqual(load_config(path).default.cmdline, "a")  # type: ignore[union-attr]

    def test_merge_keys_and_aliases_still_work(self) -> None:
        path = _config(self, "boot:\n  default: &d {kernel: BASE/vmlinuz, cmdline: a}\n"
                             "  machines:\n    '52:54:00:12:34:56': {<<: *d, cmdline: b}\n")
        config = load_config(path)
        self.assertEqual(config.machines["52:54:00:12:34:56"].cmdline, "b")


class TemplateTests(unittest.TestCase):
    """
    Every template is rendered for sample machines at load time.
    """

    def check(self, text: str) -> tuple[int, str]:
        err = io.StringIO()
        code = main(["check", "--config", str(_config(self, text))], io.StringIO(), err)
        return code, err.getvalue()

    def test_undefined_name(self) -> None:
        code, err = self.check("boot:\n  default: {kernel: BASE/vmlinuz, "
                               "cmdline: 'a={{ nosuchvar }}'}\n")
        self.assertEqual(code, 1)
        self.assertIn("boot.default.cmdline: template error: 'nosuchvar' is undefined", err)
        self.assertEqual(err.count("\n"), 1)

    def test_url_of_a_missing_file(self) -> None:
        code, err = self.check("policy:\n  rules:\n  - match: {firmware: ipxe}\n"
                               "    ipxe: \"#!ipxe\\nchain {{ url('/missing/file') }}\\n\"\n")
        self.assertEqual(code, 1)
        self.assertIn("policy.rules[0].ipxe.script: url(): file /missing/file does not exist",
                      err)

    def test_unknown_export(self) -> None:
        code, err = self.check("policy:\n  rules:\n  - match: {firmware: ipxe}\n"
                               "    chain: {target: BASE/vmlinuz, "
                               "args: \"{{ export('nope') }}\"}\n")
        self.assertEqual(code, 1)
        self.assertIn("policy.rules[0].chain.args: export(): no export named 'nope'", err)

    def test_only_one_branch_is_bad(self) -> None:
        """
        Both a BIOS and a UEFI sample are tried, so a mistake in the UEFI
        branch is found too.
        """
        code, err = self.check(
            "boot:\n  default:\n    kernel: BASE/vmlinuz\n    cmdline: \"{% if firmware == 'uefi' "
            "%}{{ efi_typo }}{% endif %}\"\n")
        self.assertEqual(code, 1)
        self.assertIn("'efi_typo' is undefined (tried with sample values for x64-uefi)", err)

    def test_good_templates_pass(self) -> None:
        code, err = self.check(
            "policy:\n  exports: {iso: BASE}\n  rules:\n  - match: {firmware: ipxe}\n"
            "    linux: {kernel: BASE/vmlinuz, cmdline: \"k={{ url('BASE/vmlinuz') }} "
            "e={{ export('iso', mac) }} h={{ hostname }} {{ arch }} {{ ServerHost }}\"}\n")
        self.assertEqual((code, err), (0, ""))

    def test_reload_refuses_it(self) -> None:
        """
        A reload loads the file as start-up does: the same one-line error,
        and the running configuration stays.
        """
        from pxed.service import makeBootService

        path = _config(self, "")
        top = makeBootService(load_config(path))
        runtime = top.getServiceNamed("policy")  # type: ignore[attr-defined]
        path.write_text(path.read_text() + "boot:\n  default: {kernel: /bin/sh, "
                                           "message: '{{ nosuchvar }}'}\n")
        ok, message = runtime.reload()
        self.assertFalse(ok)
        self.assertIn(f"{path}: boot.default.message: template error: 'nosuchvar' is undefined",
                      message)
        self.assertNotIn("\n", message)
        self.assertIsNone(runtime.config.default)


class ReloadErrorTests(unittest.TestCase):
    def test_unexpected_error_is_one_line(self) -> None:
        """
        Whatever goes wrong in a reload is one error line; its traceback
        is logged at debug level only.
        """
        from twisted.logger import globalLogPublisher

        from pxed.service import makeBootService

        path = _config(self, "")
        runtime = makeBootService(load_config(path)).getServiceNamed("policy")  # type: ignore

        def broken(source: str) -> object:
            raise RuntimeError("disk on fire")

        runtime.load = broken
        events: list[dict[str, object]] = []
        globalLogPublisher.addObserver(events.append)
        try:
            ok, message = runtime.reload()
        finally:
            globalLogPublisher.removeObserver(events.append)
        self.assertFalse(ok)
        self.assertEqual(message, "reload failed: RuntimeError: disk on fire; kept the running "
                                  "configuration")
        levels = [e["log_level"].name for e in events  # type: ignore[union-attr]
                  if e.get("log_namespace") == "pxed.runtime"]
        self.assertEqual(sorted(levels), ["debug", "error"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class InterfaceTests(unittest.TestCase):
    def test_check_names_the_missing_interface(self) -> None:
        path = _config(self, "server: {interface: nosuch0}\n")
        err = io.StringIO()
        self.assertEqual(main(["check", "--config", str(path)], io.StringIO(), err), 1)
        self.assertEqual(err.getvalue(), f"pxed: bad configuration: {path}: server.interface: "
                                         "no network interface named 'nosuch0' on this host\n")

    def test_existing_interface(self) -> None:
        path = _config(self, "server: {interface: lo}\n")
        self.assertEqual(main(["check", "--config", str(path)], io.StringIO(), io.StringIO()), 0)


class PortHolderTests(unittest.TestCase):
    def test_udp_holder_is_this_process(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            holders = port_holders("udp", port)
        self.assertEqual([h.pid for h in holders], [os.getpid()])
        self.assertEqual(port_holders("udp", port), [])

    def test_tcp_listener_only(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            self.assertEqual(port_holders("tcp", port), [])  # bound, not listening
            s.listen()
            self.assertEqual([h.pid for h in port_holders("tcp", port)], [os.getpid()])

    def test_service_raises_one_line(self) -> None:
        from twisted.internet import reactor
        from twisted.internet.protocol import DatagramProtocol, Factory

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("", 0))
            port = s.getsockname()[1]
            service = UDPService(port, DatagramProtocol(), reactor=reactor)
            service.setName("tftp")
            error = self.assertRaises(PortError, service.startService)
        self.assertEqual(str(error), f"server.ports.tftp: cannot listen on UDP port {port}: "
                                     f"in use by {_comm()} (pid {os.getpid()})")
        self.assertFalse(service.running)
        with socket.socket() as s:
            s.bind(("", 0))
            s.listen()
            port = s.getsockname()[1]
            tcp = TCPService(port, Factory(), reactor=reactor)
            tcp.setName("http")
            error = self.assertRaises(PortError, tcp.startService)
        self.assertIn(f"server.ports.http: cannot listen on TCP port {port}: in use by", str(error))

    def test_other_errors(self) -> None:
        denied = OSError(errno.EACCES, "Permission denied")
        self.assertIn("CAP_NET_BIND_SERVICE", explain_listen_error("udp", 67, None, denied))
        nodev = OSError(errno.ENODEV, "No such device")
        self.assertEqual(explain_listen_error("udp", 67, "eth9", nodev),
                         "no network interface named 'eth9' on this host")

    def test_startup_exits_with_one_line(self) -> None:
        """
        L{OneLineStartup} turns a L{PortError} into an error event and exit
        status 1.
        """
        from twisted.application.service import Service
        from twisted.logger import globalLogPublisher

        class Taken(Service):
            def startService(self) -> None:
                raise PortError("udp", 67, "server.ports.dhcp", "in use by dnsmasq (pid 1)")

        events: list[dict[str, object]] = []
        exits: list[int] = []
        startup = OneLineStartup("/etc/pxed/pxed.yaml", exit=exits.append)
        Taken().setServiceParent(startup)
        globalLogPublisher.addObserver(events.append)
        try:
            startup.startService()
        finally:
            globalLogPublisher.removeObserver(events.append)
        self.assertEqual(exits, [1])
        self.assertEqual(len(self.flushLoggedErrors(PortError)), 1)  # the debug traceback
        errors = [e for e in events if e.get("log_namespace") == "pxed.ports"
                  and e["log_level"].name == "error"]  # type: ignore[union-attr]
        self.assertEqual(len(errors), 1)
        self.assertEqual(errors[0]["error"], "server.ports.dhcp: cannot listen on UDP port 67: "
                                             "in use by dnsmasq (pid 1)")


def _comm(pid: int | None = None) -> str:
    return Path(f"/proc/{pid or os.getpid()}/comm").read_text().strip()


class TwistdTests(unittest.TestCase):
    """
    A real C{twistd -n pxed} on loopback: what an operator sees.
    """

    timeout = 60

    def twistd(self, config: Path, *extra: str, user: bool = False) -> tuple[int, list[str]]:
        argv = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
                "--nodaemon", "--pidfile=", "pxed", "--config", str(config), *extra]
        if user:
            argv = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                    "--inh-caps=-all", "--bounding-set=-all", *argv]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              cwd=config.parent, env=env, timeout=40)
        return done.returncode, done.stdout.decode(errors="replace").splitlines()

    def loopback(self, ports: dict[str, int], extra: str = "") -> Path:
        return _config(self, "server:\n  address: 127.0.0.1\n  interface: lo\n"
                             f"  ports: {{dhcp: {ports.get('dhcp', 0)}, pxe: 0, "
                             f"tftp: {ports.get('tftp', 0)}, http: 0}}\n" + extra)

    def test_port_in_use(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            path = self.loopback({"tftp": port})
            code, lines = self.twistd(path)
        self.assertEqual(code, 1, lines)
        errors = [line for line in lines if "#error]" in line]
        self.assertEqual(len(errors), 1, lines)
        self.assertTrue(errors[0].endswith(
            f"pxed cannot start: {path}: server.ports.tftp: cannot listen on "
            f"UDP port {port}: in use by {_comm()} (pid {os.getpid()})"), errors)
        self.assertFalse(any("Traceback" in line for line in lines), lines)

    def test_port_in_use_traceback_at_debug(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            code, lines = self.twistd(self.loopback({"dhcp": port}), "--log-level", "debug")
        self.assertEqual(code, 1)
        self.assertTrue(any("Traceback" in line for line in lines), lines)

    def test_missing_interface(self) -> None:
        path = _config(self, "server:\n  interface: nosuch0\n")
        code, lines = self.twistd(path)
        self.assertEqual(code, 1)
        self.assertIn(f"bad configuration: {path}: server.interface: no network interface "
                      "named 'nosuch0' on this host", "\n".join(lines))
        self.assertFalse(any("Traceback" in line for line in lines), lines)

    def test_permission_denied(self) -> None:
        """
        As an unprivileged user, a port below 1024 (on loopback) is refused
        and the message names the capability.
        """
        path = self.loopback({"dhcp": 1000})
        os.chmod(path.parent, 0o755)
        for parent in Path(path.parent).parents:
            if parent == Path("/"):
                break
            os.chmod(parent, os.stat(parent).st_mode | 0o005)
        code, lines = self.twistd(path, user=True)
        self.assertEqual(code, 1, lines)
        errors = [line for line in lines if "#error]" in line]
        self.assertEqual(len(errors), 1, lines)
        self.assertIn("server.ports.dhcp: cannot listen on UDP port 1000: permission denied "
                      "(ports below 1024 need root or CAP_NET_BIND_SERVICE", errors[0])

    def test_pxed_tftp_port_in_use(self) -> None:
        """
        C{twistd pxed-tftp} says the same in one line.
        """
        root = Path(self.mktemp()).absolute()
        root.mkdir()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            argv = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
                    "--nodaemon", "--pidfile=", "pxed-tftp", "--root", str(root),
                    "--port", str(port), "--interface", "127.0.0.1"]
            done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  cwd=root, env={**os.environ, "PYTHONPATH": str(REPO)},
                                  timeout=40)
        lines = done.stdout.decode(errors="replace").splitlines()
        self.assertEqual(done.returncode, 1, lines)
        errors = [line for line in lines if "#error]" in line]
        self.assertEqual(len(errors), 1, lines)
        self.assertTrue(errors[0].endswith(
            f"pxed cannot start: cannot listen on UDP port {port}: in use by {_comm()} "
            f"(pid {os.getpid()})"), errors)
        self.assertFalse(any("Traceback" in line for line in lines), lines)
