"""
The systemd unit in C{etc/pxed.service}: rated by C{systemd-analyze
security} (offline, from the file itself) at 3.0 or better, running
programs a virtualenv install has, and secrets from C{LoadCredential=}
that the configuration names with C{%d/}.
"""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from twisted.trial import unittest

from pxed.config import ConfigError, parse_config

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "etc" / "pxed.service"
#: Where the README installs pxed; the unit runs its programs.
VENV = "/opt/pxed/.venv"


def unit_lines(key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in UNIT.read_text().splitlines()
            if line.startswith(f"{key}=")]


class SecurityTests(unittest.TestCase):
    def test_exposure_at_most_3(self) -> None:
        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            raise AssertionError("systemd-analyze is missing: run scripts/setup")
        # A copy in a folder of its own: --offline reads the unit file only.
        folder = Path(self.mktemp())
        folder.mkdir()
        shutil.copy(UNIT, folder / "pxed.service")
        done = subprocess.run([analyze, "security", "--offline=true", "--no-pager",
                               str(folder / "pxed.service")],
                              capture_output=True, text=True, timeout=60)
        match = re.search(r"Overall exposure level for pxed\.service: (\d+\.\d+)", done.stdout)
        assert match is not None, done.stdout + done.stderr
        exposure = float(match.group(1))
        print(f"systemd-analyze security: {exposure}")
        self.assertLessEqual(exposure, 3.0, done.stdout)
        # The settings the issue asked for are there, not only the figure.
        for setting in ("SystemCallFilter", "RestrictAddressFamilies", "ProtectKernelTunables",
                        "ProtectKernelModules", "PrivateDevices", "LoadCredential"):
            self.assertTrue(unit_lines(setting), setting)

    def test_parses_as_ini(self) -> None:
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.read_string(UNIT.read_text())
        self.assertEqual(set(parser.sections()), {"Unit", "Service", "Install"})


class ExecStartTests(unittest.TestCase):
    def test_programs_of_a_virtualenv_install(self) -> None:
        """
        The unit runs C{twistd} and C{pxed} from the documented virtualenv;
        a virtualenv with pxed installed (this checkout's C{.venv}) has
        both, and the README names the same path.
        """
        here = Path(sys.executable).parent.parent
        for line in unit_lines("ExecStart") + unit_lines("ExecStartPre"):
            program = line.split()[0]
            self.assertTrue(program.startswith(f"{VENV}/bin/"), program)
            local = here / Path(program).relative_to(VENV)
            self.assertTrue(os.access(local, os.X_OK), f"{local} is not in a virtualenv install")
        readme = (REPO / "README.rst").read_text()
        self.assertTrue(f"python3 -m venv {VENV}" in readme, "README names another path")

    def test_twistd_plugin_and_check_run(self) -> None:
        """
        What ExecStartPre runs, from this virtualenv, on a good file.
        """
        base = Path(self.mktemp()).absolute()
        base.mkdir()
        for name in ("undionly.kpxe", "snponly.efi"):
            (base / name).write_bytes(b"x")
        config = base / "pxed.yaml"
        config.write_text(f"bootloaders: {{x86-bios: {base}/undionly.kpxe, "
                          f"x64-uefi: {base}/snponly.efi}}\n")
        pxed = Path(sys.executable).with_name("pxed")
        done = subprocess.run([str(pxed), "check", "--config", str(config)], capture_output=True,
                              text=True, timeout=60)
        self.assertEqual((done.returncode, done.stdout), (0, f"pxed: {config} is valid\n"),
                         done.stderr)


class CredentialTests(unittest.TestCase):
    def setUp(self) -> None:
        self.credentials = Path(self.mktemp()).absolute()
        self.credentials.mkdir()
        (self.credentials / "pxed-admin-token").write_text("a-token-from-systemd-credentials\n")
        (self.credentials / "pxed-signing-key").write_bytes(b"k" * 32)
        for credential in self.credentials.iterdir():
            credential.chmod(0o400)  # as systemd makes them: the service user's alone
        self.saved = os.environ.get("CREDENTIALS_DIRECTORY")
        self.addCleanup(self.restore)

    def restore(self) -> None:
        if self.saved is None:
            os.environ.pop("CREDENTIALS_DIRECTORY", None)
        else:
            os.environ["CREDENTIALS_DIRECTORY"] = self.saved

    def policy(self, admin: str, signing: str) -> object:
        return parse_config({"policy": {"admin": {"token_file": admin},
                                        "signing": {"key_file": signing}}}, "pxed.yaml").policy

    def test_percent_d_and_variable(self) -> None:
        os.environ["CREDENTIALS_DIRECTORY"] = str(self.credentials)
        for admin, signing in (("%d/pxed-admin-token", "%d/pxed-signing-key"),
                               ("$CREDENTIALS_DIRECTORY/pxed-admin-token",
                                "${CREDENTIALS_DIRECTORY}/pxed-signing-key")):
            policy = self.policy(admin, signing)
            self.assertEqual(policy.admin_token, "a-token-from-systemd-credentials")  # type: ignore
            self.assertEqual(policy.signing_key, b"k" * 32)  # type: ignore[attr-defined]

    def test_outside_systemd(self) -> None:
        os.environ.pop("CREDENTIALS_DIRECTORY", None)
        error = self.assertRaises(ConfigError, self.policy, "%d/pxed-admin-token",
                                  str(self.credentials / "pxed-signing-key"))
        self.assertEqual(error.key, "policy.admin.token_file")
        self.assertIn("needs $CREDENTIALS_DIRECTORY, which systemd sets for a unit with "
                      "LoadCredential=", str(error))

    def test_missing_credential(self) -> None:
        os.environ["CREDENTIALS_DIRECTORY"] = str(self.credentials)
        error = self.assertRaises(ConfigError, self.policy, "%d/nope", "%d/pxed-signing-key")
        self.assertIn(f"file {self.credentials}/nope does not exist", str(error))
