"""
The C{pxed} command's own surface: C{--version}, and help texts an
operator reads (no epytext markup such as C{C{...}} leaking from
docstrings), for C{pxed}, each subcommand and C{twistd pxed}.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from twisted.trial import unittest

from pxed import __version__
from pxed.cli import main

REPO = Path(__file__).resolve().parents[1]
#: Epytext markup: C{code}, L{link}, I{italic}, B{bold}, U{url}.
MARKUP = re.compile(r"\b[CLIBU]\{")


def run_main(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            code = main(list(argv), out, out)
        except SystemExit as e:
            code = int(e.code or 0)
    return code, out.getvalue()


class VersionTests(unittest.TestCase):
    def test_version(self) -> None:
        code, text = run_main("--version")
        self.assertEqual((code, text), (0, f"pxed {version('pxed')}\n"))
        self.assertEqual(__version__, version("pxed"))


class HelpTests(unittest.TestCase):
    def test_pxed_help_is_plain_text(self) -> None:
        for argv in (["--help"], *([name, "--help"] for name in
                                   ("check", "explain", "doctor", "reinstall"))):
            code, text = run_main(*argv)
            self.assertEqual(code, 0, argv)
            self.assertIn("usage: pxed", text)
            self.assertIsNone(MARKUP.search(text), f"{argv}: {text}")
        _, text = run_main("--help")
        for name in ("check", "explain", "doctor", "reinstall", "--version"):
            self.assertIn(name, text)

    def test_twistd_help_is_plain_text(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        for plugin in ("pxed", "pxed-tftp"):
            done = subprocess.run(
                [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
                 plugin, "--help"], capture_output=True, text=True, timeout=60, env=env)
            self.assertEqual(done.returncode, 0, done.stderr)
            self.assertIn("--config" if plugin == "pxed" else "--root", done.stdout)
            self.assertIsNone(MARKUP.search(done.stdout), done.stdout)
