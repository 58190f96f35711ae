"""
Tests for L{pxed.service} (how makeBootService wires the protocols),
L{pxed.parts} (the one reference to the reloadable parts) and
L{pxed.ports}.
"""

from __future__ import annotations

import inspect
import re
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from pxed.config import load_config
from pxed.dhcp.responder import BootResponder
from pxed.http.app import BootHTTP
from pxed.machine import Machine, architecture
from pxed.parts import BootParts, LiveParts
from pxed.policy import LocalBoot, StaticPolicy
from pxed.policy.request import open_context
from pxed.ports import TCPService
from pxed.service import makeBootService
from pxed.state import MemoryBootLog
from pxed.tftp.source import ChainSource, FileNotFound

MAC = "52:54:00:12:34:56"
README = Path(__file__).parents[1] / "README.rst"


class WiringTests(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).absolute()
        self.dir.mkdir()
        for name in ("undionly.kpxe", "snponly.efi", "vmlinuz"):
            (self.dir / name).write_bytes(name.encode())
        self.path = self.dir / "pxed.yaml"
        self.path.write_text(textwrap.dedent(f"""\
            server: {{address: 192.0.2.1, ports: {{dhcp: 0, pxe: 0, tftp: 0, http: 8080}}}}
            bootloaders: {{x86-bios: {self.dir}/undionly.kpxe, x64-uefi: {self.dir}/snponly.efi}}
            boot: {{machines: {{"{MAC}": {{kernel: {self.dir}/vmlinuz}}}}}}
            """))
        self.top: Any = makeBootService(load_config(self.path), reactor=MemoryReactorClock())
        self.runtime = self.top.getServiceNamed("policy")

    def responder(self, name: str = "proxydhcp") -> BootResponder:
        responder: BootResponder = self.top.getServiceNamed(name).protocol.responder
        return responder

    def test_children(self) -> None:
        """
        One service per port, and the runtime last (its name is what
        C{twistd} and embedders look up to reload).
        """
        self.assertEqual([child.name for child in self.top],
                         ["proxydhcp", "bootserver", "tftp", "http", "policy"])

    def test_one_reference(self) -> None:
        """
        Both DHCP ports and the web app read the runtime's one
        L{LiveParts}: changing it once changes what all of them see.
        """
        parts = self.runtime.parts
        self.assertIsInstance(parts, LiveParts)
        self.assertIs(self.responder("proxydhcp").parts, parts)
        self.assertIs(self.responder("bootserver").parts, parts)
        policy = StaticPolicy({}, default=LocalBoot())
        parts.current = replace(parts.current, policy=policy)
        self.assertIs(self.responder("bootserver").policy, policy)

    def test_parts_from_the_configuration(self) -> None:
        current: BootParts = self.runtime.parts.current
        self.assertEqual(dict(current.bootloaders), {
            "x86-bios": self.dir / "undionly.kpxe", "x64-uefi": self.dir / "snponly.efi"})
        self.assertEqual(set(current.programs), {"undionly.kpxe", "snponly.efi"})
        self.assertIs(current.signer, current.catalog.signer)
        self.assertIs(current.store, self.runtime.store)

    def test_script_url_signed(self) -> None:
        """
        The responder built by the service signs the network context into
        iPXE script URLs with the key the web app checks it with.
        """
        machine = Machine(MAC, architecture(7), ipxe=True)
        answer = self.successResultOf(ensureDeferred(
            self.responder().answer(machine, "192.0.2.1", "proxydhcp", interface="eth0")))
        assert answer is not None
        url = urlsplit(answer.bootfile)
        self.assertEqual((url.netloc, url.path), ("192.0.2.1:8080", "/_/ipxe"))
        token = parse_qs(url.query)["ctx"][0]
        context = open_context(self.runtime.parts.current.catalog.signer, token)
        assert context is not None
        self.assertEqual((context.mac, context.network()["interface"]), (MAC, "eth0"))

    def test_tftp_reads_the_current_parts(self) -> None:
        transfers = self.top.getServiceNamed("tftp").protocol
        opened = self.successResultOf(transfers.source.open("undionly.kpxe", ("h", 1)))
        opened.close()
        parts = self.runtime.parts
        parts.current = replace(parts.current, tftp=ChainSource([]))
        self.failureResultOf(transfers.source.open("undionly.kpxe", ("h", 1)), FileNotFound)


class InterfaceWarningTests(unittest.TestCase):
    def test_missing_interface_named(self) -> None:
        """
        A name in server.interfaces that this host lacks is warned about
        once at start (it may appear later); one it has is not.
        """
        base = Path(self.mktemp()).absolute()
        base.mkdir()
        (base / "vmlinuz").write_bytes(b"k")
        path = base / "pxed.yaml"
        path.write_text(f"server: {{address: 192.0.2.1, interfaces: [lo, pxnone0]}}\n"
                        f"boot: {{default: {{kernel: {base}/vmlinuz}}}}\n")
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        try:
            makeBootService(load_config(path), reactor=MemoryReactorClock())
        finally:
            globalLogPublisher.removeObserver(events.append)
        named = [e.get("interface") for e in events if "server.interfaces names" in
                 e.get("log_format", "")]
        self.assertEqual(named, ["pxnone0"])


class BareConsumerTests(unittest.TestCase):
    """
    Built without C{parts}, the responder and the web app make a fixed
    set of their own; mixing both forms is refused.
    """

    def test_responder(self) -> None:
        policy = StaticPolicy({})
        responder = BootResponder(policy, {}, 80, MemoryBootLog())
        self.assertIs(responder.policy, policy)
        self.assertIsNone(responder.signer)
        other = StaticPolicy({})
        responder.policy = other
        self.assertIs(responder.parts.current.policy, other)
        self.assertRaises(TypeError, BootResponder, policy, parts=responder.parts,
                          boot_log=MemoryBootLog())
        self.assertRaises(TypeError, BootResponder, boot_log=MemoryBootLog())

    def test_web(self) -> None:
        parts = LiveParts(BootParts(StaticPolicy({})))
        web = BootHTTP(boot_log=MemoryBootLog(), parts=parts)
        self.assertIs(web.catalog, parts.current.catalog)
        self.assertRaises(TypeError, BootHTTP, StaticPolicy({}), boot_log=MemoryBootLog(),
                          parts=parts)
        self.assertRaises(TypeError, BootHTTP, StaticPolicy({}), None, MemoryBootLog())


class SignatureTests(unittest.TestCase):
    def test_readme_signature(self) -> None:
        """
        The README's Embedding section shows makeBootService's signature
        as the code has it.
        """
        text = " ".join(README.read_text().split())
        found = re.search(r"``pxed\.service\.makeBootService\(([^`]*)\)``", text)
        assert found is not None, "README has no makeBootService signature"
        documented = found.group(1).replace(" ", "")
        actual = ",".join(
            name if p.default is inspect.Parameter.empty else f"{name}={p.default!r}"
            for name, p in inspect.signature(makeBootService).parameters.items())
        self.assertEqual(documented, actual)


class PortServiceTests(unittest.TestCase):
    def test_listens_while_running(self) -> None:
        service = TCPService(0, Factory.forProtocol(Protocol), "127.0.0.1", reactor=reactor)
        service.startService()
        assert service.port is not None
        self.assertEqual(service.port.getHost().host, "127.0.0.1")
        d = service.stopService()
        self.assertIsNone(service.port)
        return d


class HeaderTests(unittest.TestCase):
    def test_test_case_names_exist(self) -> None:
        """
        Every module of pxed names, in its C{test-case-name} header, test
        modules that exist (C{trial --testmodule} and editors follow it).
        """
        root = Path(__file__).parents[1]
        problems = []
        for path in sorted((root / "pxed").rglob("*.py")):
            text = path.read_text()
            if not text.strip():
                continue
            found = re.match(r"# -\*- test-case-name: ([\w., ]+) -\*-\n", text)
            if found is None:
                problems.append(f"{path.relative_to(root)}: no test-case-name header")
                continue
            for name in found.group(1).split(","):
                module = root / (name.strip().replace(".", "/") + ".py")
                if not module.is_file():
                    problems.append(f"{path.relative_to(root)}: {name.strip()} does not exist")
        self.assertEqual(problems, [])


def _imports(root: Path) -> dict[str, set[str]]:
    """
    Each pxed module's pxed imports, those only for type checking too.
    """
    import ast

    modules = {}
    for path in (root / "pxed").rglob("*.py"):
        name = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pxed"):
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    found.add(full if full in modules else str(node.module))
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("pxed"))
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


class LayerTests(unittest.TestCase):
    def test_no_cycle_below_the_protocols(self) -> None:
        """
        Script text (C{pxed.ipxe}, C{pxed.grub.config}), the policy, the
        templates and the parts import one another in one direction only,
        type-checking imports included.
        """
        graph = _imports(Path(__file__).parents[1])
        layer = {name for name in graph if name.startswith("pxed.policy")} | {
            "pxed.ipxe", "pxed.grub.config", "pxed.templates", "pxed.parts"}
        for start in sorted(layer):
            seen, todo = set(), [start]
            while todo:
                for nxt in graph[todo.pop()]:
                    if nxt == start:
                        self.fail(f"{start} imports itself through {sorted(seen)}")
                    if nxt not in seen:
                        seen.add(nxt)
                        todo.append(nxt)
