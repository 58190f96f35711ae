"""
Tests for L{pxed.config.policy}: the C{policy:} section parses into rules
and settings, and each mistake names its key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pxed.config import parse_config
from pxed.machine import Machine, architecture
from pxed.policy import BootRequest, BootSpec, Chain, Ignore, IPXEScript, LocalBoot
from pxed.policy.match import Match
from tests.fixtures import ConfigTestCase

MAC = "52:54:00:12:34:56"


def ask(mac: str = MAC, code: int = 7, **kwargs: Any) -> BootRequest:
    return BootRequest(Machine(mac, architecture(code)), "proxydhcp", **kwargs)


class PolicySectionTests(ConfigTestCase):
    def policy(self, **section: Any) -> Any:
        return parse_config({"policy": section}, "site.yaml").policy

    def rule(self, **entry: Any) -> Any:
        return self.policy(rules=[entry]).rules[0]

    def test_empty(self) -> None:
        policy = self.policy()
        self.assertEqual((policy.rules, policy.api, dict(policy.exports)), ((), None, {}))
        self.assertFalse(policy.remote.proxy)
        self.assertIsNone(policy.state_file)
        self.assertIsNone(policy.admin_token)

    def test_actions(self) -> None:
        script = self.dir / "menu.ipxe"
        script.write_text("#!ipxe\necho {{ mac }}\n")
        rules = self.policy(rules=[
            {"linux": {"kernel": str(self.kernel), "cmdline": "x={{ mac }}",
                       "initrd_args": False}},
            {"ipxe": "#!ipxe\nexit"},
            {"ipxe": {"file": str(script)}},
            {"chain": str(self.kernel)},
            {"chain": {"target": "http://boot.example/netboot.xyz.efi", "args": "a"}},
            {"local": True},
            {"ignore": True},
        ]).rules
        self.assertEqual([r.action for r in rules], [
            BootSpec(str(self.kernel), (), "x={{ mac }}", initrd_args=False),
            IPXEScript("#!ipxe\nexit"), IPXEScript("#!ipxe\necho {{ mac }}\n"),
            Chain(str(self.kernel)), Chain("http://boot.example/netboot.xyz.efi", "a"),
            LocalBoot(), Ignore()])
        self.assertEqual([r.name for r in rules][:2], ["policy.rules[0]", "policy.rules[1]"])
        self.assertEqual(rules[0].match, Match())

    def test_match_keys(self) -> None:
        rule = self.rule(match={
            "mac": ["52:54:00:*", "AA-BB-CC"], "arch": ["x64-uefi", 0], "firmware": "uefi",
            "uuid": "12345678-9ABC-def0-1122-334455667788", "user_class": "iPXE",
            "interface": "eth*", "subnet": "10.1.0.0/16", "relay": "10.1.9.1"},
            local=True)
        ok = BootRequest(Machine(MAC, architecture(7), uuid="12345678-9abc-def0-1122-"
                                 "334455667788", user_class="iPXE"), "proxydhcp",
                         interface="eth1", relay="10.1.9.1", local_address="192.168.0.1")
        self.assertTrue(rule.match.matches(ok))
        self.assertEqual(len(rule.match.matchers), 8)
        self.assertFalse(rule.match.matches(ask()))

    def test_once_needs_name(self) -> None:
        self.assertError({"policy": {"rules": [{"chain": "http://x/y.efi", "once": True}]}},
                         "policy.rules[0]", "needs a 'name'")
        rule = self.rule(name="install", chain="http://x/y.efi", once=True)
        self.assertEqual((rule.name, rule.once), ("install", True))

    def test_once_needs_a_boot_that_reports(self) -> None:
        """
        'once' ends at the beacon: rules whose boots never fetch it would
        apply for ever, so they are refused.
        """
        for action in ({"local": True}, {"ignore": True}, {"ipxe": "#!ipxe\nexit\n"}):
            self.assertError({"policy": {"rules": [{"name": "a", "once": True, **action}]}},
                             "policy.rules[0].once")
        rule = self.rule(name="a", once=True, ipxe="#!ipxe\n{{ beacon }}\nexit\n")
        self.assertTrue(rule.once)

    def test_rule_errors(self) -> None:
        cases = [
            ({"match": {}}, "policy.rules[0]", "exactly one action"),
            ({"local": True, "ignore": True}, "policy.rules[0]", "exactly one action"),
            ({"local": "yes"}, "policy.rules[0].local", "must be true"),
            ({"local": True, "match": {"mac": "zz"}}, "policy.rules[0].match.mac",
             "not a MAC address"),
            ({"local": True, "match": {"arch": "vax"}}, "policy.rules[0].match.arch",
             "not an architecture"),
            ({"local": True, "match": {"firmware": "coreboot"}},
             "policy.rules[0].match.firmware", "bios, uefi"),
            ({"local": True, "match": {"uuid": "nope"}}, "policy.rules[0].match.uuid",
             "not a UUID"),
            ({"local": True, "match": {"subnet": "10.0.0.0/33"}},
             "policy.rules[0].match.subnet", "not an IPv4"),
            ({"local": True, "match": {"colour": "red"}}, "policy.rules[0].match.colour",
             "unknown key"),
            ({"ipxe": "echo no shebang"}, "policy.rules[0].ipxe.script", "#!ipxe"),
            ({"ipxe": "#!ipxe\n{{ mac "}, "policy.rules[0].ipxe.script", "template error"),
            ({"ipxe": {"file": "/nonexistent.ipxe"}}, "policy.rules[0].ipxe.file",
             "does not exist"),
            ({"chain": "relative.efi"}, "policy.rules[0].chain.target", "absolute path"),
            ({"linux": {"kernel": "http://h/k", "cmdline": "{% if %}"}},
             "policy.rules[0].linux.cmdline", "template error"),
            ({"name": "a b", "local": True}, "policy.rules[0].name", "letters"),
            ({"local": True, "once": "yes", "name": "x"}, "policy.rules[0].once",
             "true or false"),
        ]
        for entry, key, problem in cases:
            self.assertError({"policy": {"rules": [entry]}}, key, problem)
        self.assertError({"policy": {"rules": [{"name": "a", "local": True},
                                               {"name": "a", "local": True}]}},
                         "policy.rules[1].name", "already named")
        self.assertError({"policy": {"rules": {"local": True}}}, "policy.rules", "list")

    def test_api(self) -> None:
        api = self.policy(api={"url": "http://127.0.0.1:8000/", "timeout": "1500ms",
                               "cache": "2m"}).api
        self.assertEqual((api.url, api.timeout, api.cache), ("http://127.0.0.1:8000", 1.5, 120))
        self.assertEqual(self.policy(api="http://h").api.timeout, 5)
        self.assertEqual(self.policy(api={"url": "http://h", "cache": 0}).api.cache, 0)
        self.assertError({"policy": {"api": {"url": "ftp://h"}}}, "policy.api.url", "http(s)")
        self.assertError({"policy": {"api": {"url": "http://h", "timeout": "soon"}}},
                         "policy.api.timeout", "duration")
        self.assertError({"policy": {"api": {"url": "http://h", "timeout": 0}}},
                         "policy.api.timeout", "more than 0")
        self.assertEqual(self.policy(api="http://h").api.files, ())
        files = self.policy(api={"url": "http://h", "files": [str(self.dir)]}).api.files
        self.assertEqual(files, (self.dir.resolve(),))
        self.assertError({"policy": {"api": {"url": "http://h", "files": [str(self.kernel)]}}},
                         "policy.api.files[0]", "does not exist")
        self.assertError({"policy": {"api": {"url": "http://h", "files": "srv"}}},
                         "policy.api.files", "absolute path")

    def test_exports_hostnames_remote(self) -> None:
        policy = self.policy(exports={"seed": str(self.dir)},
                             hostnames={"52-54-00-12-34-56": "web1"},
                             remote={"mode": "proxy", "connect_timeout": "3s",
                                     "idle_timeout": 60})
        self.assertEqual(dict(policy.exports), {"seed": self.dir.resolve()})
        self.assertEqual(dict(policy.hostnames), {MAC: "web1"})
        self.assertEqual((policy.remote.proxy, policy.remote.connect_timeout,
                          policy.remote.idle_timeout), (True, 3, 60))
        self.assertError({"policy": {"exports": {"seed": str(self.kernel)}}},
                         "policy.exports.seed", "does not exist")
        self.assertError({"policy": {"exports": {"../x": str(self.dir)}}},
                         "policy.exports.../x", "export name")
        self.assertError({"policy": {"remote": {"mode": "tunnel"}}}, "policy.remote.mode",
                         "'direct' or 'proxy'")
        self.assertError({"policy": {"hostnames": {"nope": "x"}}}, "policy.hostnames.nope",
                         "MAC")

    def test_secrets(self) -> None:
        keyfile = self.dir / "key"
        keyfile.write_text("0123456789abcdefXYZ\n")
        keyfile.chmod(0o600)
        self.assertEqual(self.policy(signing={"key_file": str(keyfile)}).signing_key,
                         b"0123456789abcdefXYZ")
        self.assertEqual(self.policy(signing={"key": "k" * 20}).signing_key, b"k" * 20)
        timed = self.policy(signing={"key": "k" * 20, "max_age": "2h"})
        self.assertEqual((timed.signing_key, timed.signing_max_age), (b"k" * 20, 7200.0))
        self.assertEqual(self.policy(signing={"max_age": 60}).signing_max_age, 60.0)
        self.assertIsNone(self.policy().signing_max_age)
        self.assertError({"policy": {"signing": {"max_age": "soon"}}},
                         "policy.signing.max_age", "duration")
        self.assertEqual(self.policy(admin={"token": "t" * 16}).admin_token, "t" * 16)
        self.assertError({"policy": {"signing": {"key": "short"}}}, "policy.signing.key",
                         "at least 16")
        self.assertError({"policy": {"signing": {"key": "k" * 16, "key_file": str(keyfile)}}},
                         "policy.signing", "not both")
        self.assertError({"policy": {"admin": {"token_file": "/nonexistent"}}},
                         "policy.admin.token_file", "does not exist")
        # Key and token files others could read or write are refused.
        tokenfile = self.dir / "token"
        tokenfile.write_text("s3cret-admin-token-0123\n")
        for mode, words in ((0o644, "readable by every user"), (0o620, "writable by other")):
            keyfile.chmod(mode)
            tokenfile.chmod(mode)
            self.assertError({"policy": {"signing": {"key_file": str(keyfile)}}},
                             "policy.signing.key_file", words)
            self.assertError({"policy": {"admin": {"token_file": str(tokenfile)}}},
                             "policy.admin.token_file", words)
        tokenfile.chmod(0o640)
        self.assertEqual(self.policy(admin={"token_file": str(tokenfile)}).admin_token,
                         "s3cret-admin-token-0123")
        # An Authorization header is Latin-1 on the wire: such a token
        # could never match, so it is refused at load.
        self.assertError({"policy": {"admin": {"token": "s3cret-tökén-0123456"}}},
                         "policy.admin", "printable ASCII")
        self.assertError({"policy": {"admin": {"token": "s3cret token 0123456"}}},
                         "policy.admin", "printable ASCII")

    def test_state_file(self) -> None:
        self.assertEqual(self.policy(state_file=str(self.dir / "s.json")).state_file,
                         self.dir / "s.json")
        self.assertError({"policy": {"state_file": "rel.json"}}, "policy.state_file",
                         "absolute")
        self.assertError({"policy": {"state_file": "/nonexistent/dir/s.json"}},
                         "policy.state_file", "does not exist")

    def test_boot_section_still_works(self) -> None:
        loaded = self.load(f"""
            boot:
              default: {{kernel: {self.kernel}, cmdline: "host={{{{ hostname }}}}"}}
              machines:
                "{MAC}": {{kernel: {self.kernel}}}
        """)
        self.assertEqual(loaded.default.cmdline, "host={{ hostname }}")
        self.assertIn(MAC, loaded.machines)
        self.assertError({"boot": {"default": {"kernel": str(self.kernel),
                                               "cmdline": "{{ x"}}},
                         "boot.default.cmdline", "template error")



class ReadmeExampleTests(ConfigTestCase):
    """
    The README's complete example loads (with its files made up under a
    temporary root) and decides as its comments say.
    """

    def test_loads(self) -> None:
        import re

        from pxed.service import makePolicy

        readme = (Path(__file__).parents[1] / "README.rst").read_text()
        section = readme[readme.index("\nBoot policy\n"):]
        lines = section[section.index(".. code-block:: yaml\n"):].splitlines()[2:]
        block = []
        for line in lines:
            if line and not line.startswith("    "):
                break
            block.append(line[4:])
        text = "\n".join(block)
        root = self.dir / "srv"
        for name in ("rescue/vmlinuz", "rescue/initrd.img", "lab/vmlinuz", "lab/initrd.img",
                     "grub/core.0"):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(b"x")
        (root / "seed").mkdir()
        text = text.replace("/srv/pxe", str(root)).replace("/var/lib/pxed", str(self.dir))
        loaders = f"bootloaders: {{x86-bios: {self.undionly}, x64-uefi: {self.snponly}}}\n"
        loaded = self.load(loaders + text)
        names = [rule.name for rule in loaded.policy.rules]
        self.assertEqual(names, ["install-web", "web-disk", "lab", "grub-on-old-rack",
                                 "netbootxyz", "printers"])
        self.assertEqual(loaded.policy.api.url, "http://127.0.0.1:8000")
        policy = makePolicy(loaded)
        web = self.successResultOf(policy.boot_spec(ask()))
        self.assertEqual((web.rule, web.once), ("install-web", "install-web"))
        printer = self.successResultOf(policy.boot_spec(ask("00:1b:a9:01:02:03")))
        self.assertIsNone(printer)
        rescue = self.successResultOf(policy.boot_spec(ask("00:11:22:33:44:55", code=0)))
        self.assertEqual(rescue.rule, "boot.default")
        self.assertTrue(re.search(r"rescue/vmlinuz$", rescue.kernel))
