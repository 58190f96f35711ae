"""
Tests for L{pxed.templates}: the variables and functions templates see,
the sandbox, and the errors.
"""

from __future__ import annotations

from twisted.trial import unittest

from pxed.machine import Machine, architecture
from pxed.policy import BootRequest
from pxed.templates import RenderError, ScriptEnv, check_template, render

MAC = "52:54:00:12:34:56"
GUID = "12345678-9abc-def0-1122-334455667788"


def make_env(**kwargs: object) -> ScriptEnv:
    request = BootRequest(Machine(MAC, architecture(0), uuid=GUID, user_class="iPXE"),
                          "script")
    defaults: dict[str, object] = dict(
        request=request, server="10.0.0.1", base_url="http://10.0.0.1:8080",
        beacon_url="http://10.0.0.1:8080/_/booting?mac=x",
        file_url=lambda loc: f"<{loc}>", export_url=lambda n, p: f"[{n}|{p}]",
        hostname="web1")
    defaults.update(kwargs)
    return ScriptEnv(**defaults)  # type: ignore[arg-type]


class RenderTests(unittest.TestCase):
    def test_variables(self) -> None:
        text = make_env().render(
            "{{ mac }} {{ arch }} {{ arch_code }} {{ firmware }} {{ uuid }} {{ user_class }} "
            "{{ hostname }} {{ server }} {{ base_url }}")
        self.assertEqual(text, f"{MAC} x86-bios 0 bios {GUID} iPXE web1 10.0.0.1 "
                               "http://10.0.0.1:8080")

    def test_pixiecore_server_host(self) -> None:
        """
        Pixiecore's C{ServerHost} is pxed's address, as C{server} is.
        """
        self.assertEqual(make_env(server="192.0.2.9").render("srv={{ ServerHost }}"),
                         "srv=192.0.2.9")

    def test_filters(self) -> None:
        self.assertEqual(make_env().render("{{ mac | replace(':', '-') | upper }}"),
                         "52-54-00-12-34-56")

    def test_url(self) -> None:
        e = make_env()
        self.assertEqual(e.render("{{ url('/srv/k') }}"), "</srv/k>")
        self.assertEqual(e.render("{{ url('https://h/x?a=1') }}"), "<https://h/x?a=1>")
        for bad in ("relative/path", "ftp://h/x", "http://h/a b", ""):
            self.assertRaises(RenderError, e.render, "{{ url('" + bad + "') }}")

    def test_url_remote_only(self) -> None:
        e = make_env(allow_local=False)
        self.assertEqual(e.render("{{ url('http://h/x') }}"), "<http://h/x>")
        error = self.assertRaises(RenderError, e.render, "{{ url('/etc/shadow') }}")
        self.assertIn("only http(s) URLs", str(error))

    def test_export_and_beacon(self) -> None:
        e = make_env()
        self.assertEqual(e.render("{{ export('seed') }}{{ export('seed', 'a/b') }}"),
                         "[seed|][seed|a/b]")
        self.assertEqual(e.render("{{ beacon }}"),
                         "imgfetch --name pxed-beacon http://10.0.0.1:8080/_/booting?mac=x "
                         "&& imgfree pxed-beacon ||")

    def test_undefined_is_an_error(self) -> None:
        error = self.assertRaises(RenderError, make_env().render, "{{ hostnme }}")
        self.assertIn("hostnme", str(error))

    def test_plain_text_untouched(self) -> None:
        self.assertEqual(render("console=ttyS0 }", {}), "console=ttyS0 }")

    def test_sandboxed(self) -> None:
        """
        A template cannot reach Python internals or change what it is given.
        """
        for text in ("{{ url.__globals__ }}", "{{ ''.__class__.__mro__[1].__subclasses__() }}",
                     "{{ mac.__class__ }}", "{% set x = [] %}{{ x.append(1) }}"):
            self.assertRaises(RenderError, make_env().render, text)


class CheckTests(unittest.TestCase):
    def test_syntax(self) -> None:
        self.assertIsNone(check_template("{{ mac }} {% if uuid %}u{% endif %}"))
        problem = check_template("line one\n{{ mac ")
        assert problem is not None
        self.assertIn("line 2", problem)
        self.assertIsNotNone(check_template("{% if x %}"))


class BoundTests(unittest.TestCase):
    """
    A template cannot build more than MAX_OUTPUT characters, nor run longer
    than MAX_SECONDS: each of these fails with a RenderError (the script
    then says so) instead of stalling the reactor or eating memory.
    """

    def assertRefused(self, text: str, why: str) -> None:
        error = self.assertRaises(RenderError, render, text, {})
        self.assertIn(why, str(error))

    def test_size(self) -> None:
        big = "limited to"
        for text in (
            "{{ 'a' * 50000000 }}",
            "{{ 50000000 * 'a' }}",
            "{% set s = 'ab' %}" + "{% set s = s ~ s %}" * 40 + "{{ s }}",
            "{% set ns = namespace(s='ab') %}{% for i in range(40) %}"
            "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
            "{% set s = 'ab' %}" + "{% set s = s + s %}" * 40 + "{{ s }}",
            "{% macro d(s, n) %}{{ d(s ~ s, n - 1) if n else s }}{% endmacro %}{{ d('ab', 40) }}",
            "{{ 'x' | center(100000000) }}",
            "{{ 'x'.ljust(100000000) }}",
            "{{ '{:>99999999}'.format(1) }}",
            "{{ '%99999999s' % 1 }}",
            "{{ ('a' * 1000000).replace('a', 'bb') }}",
            "{{ ('a' * 1000000) | replace('a', 'bb') }}",
            "{{ range(100000) | join('x' * 1000) }}",
            "{{ ('a\n' * 1000) | indent(100000) }}",
            "{{ 2 ** 100000000 }}",
        ):
            self.assertRefused(text, big)
        self.assertRefused("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}",
                           "output over")

    def test_time(self) -> None:
        self.assertRefused("{% for i in range(100000) %}{% for j in range(100000) %}"
                           "{% endfor %}{% endfor %}", "took more than")

    def test_ordinary_templates_unchanged(self) -> None:
        self.assertEqual(render("{{ 'ab' * 3 }} {{ 'x' | center(5) }} {{ [1, 2] | join(',') }} "
                                "{{ '%s-%d' | format('a', 3) }} {{ 'a' ~ 'b' }} {{ 2 ** 10 }} "
                                "{{ 3000000000 | filesizeformat }}", {}),
                         "ababab   x   1,2 a-3 ab 1024 3.0 GB")
