"""
Every architecture code, end to end through the ProxyDHCP protocol: served
when a program is configured for it (HTTP Boot codes through their PXE
twin), ignored with one warning naming the code when none is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet.testing import FakeDatagramTransport
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial import unittest

from pxed.config import ConfigError, parse_config
from pxed.dhcp.packet import DHCPPacket, Option, decode, encode
from pxed.dhcp.protocol import ProxyDHCPProtocol
from pxed.dhcp.responder import BootResponder
from pxed.machine import ARCHITECTURES, Firmware
from pxed.policy import BootSpec, StaticPolicy
from pxed.state import MemoryBootLog

SERVER = "10.0.0.1"


def discover(code: int, xid: int = 1) -> bytes:
    vendor = b"HTTPClient" if ARCHITECTURES.get(code) and ARCHITECTURES[code].http else b"PXEClient"
    return encode(DHCPPacket(xid=xid, chaddr=bytes.fromhex("525400000001") + b"\0" * 10, options={
        Option.MESSAGE_TYPE: b"\x01", Option.VENDOR_CLASS: vendor + b":Arch:%05d" % code,
        Option.CLIENT_ARCH: code.to_bytes(2, "big")}))


class ArchitectureServiceTests(unittest.TestCase):
    def setUp(self) -> None:
        self.base = Path(self.mktemp()).absolute()
        self.base.mkdir()
        (self.base / "vmlinuz").write_bytes(b"k")
        self.policy = StaticPolicy({}, default=BootSpec(kernel=str(self.base / "vmlinuz")))
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def proxy(self, loaders: dict[str, Path]) -> tuple[ProxyDHCPProtocol, FakeDatagramTransport]:
        responder = BootResponder(self.policy, loaders, 80, MemoryBootLog())
        proxy = ProxyDHCPProtocol(responder, SERVER)
        transport = FakeDatagramTransport()
        proxy.makeConnection(transport)
        return proxy, transport

    def test_every_code_served_when_configured(self) -> None:
        loaders = {}
        for arch in ARCHITECTURES.values():
            path = self.base / f"{arch.slug}.bin"
            path.write_bytes(b"x")
            if not arch.http:  # HTTP codes must find their PXE twin's
                loaders[arch.slug] = path
        proxy, transport = self.proxy(loaders)
        for code, arch in sorted(ARCHITECTURES.items()):
            transport.written.clear()
            proxy.datagramReceived(discover(code), ("0.0.0.0", 68))
            if arch.http and arch.pxe_slug is None:
                self.assertEqual(transport.written, [], code)
                continue
            [(data, _)] = transport.written
            reply = decode(data)
            slug = arch.pxe_slug or arch.slug
            if arch.http:
                self.assertEqual(reply.options[Option.VENDOR_CLASS], b"HTTPClient", code)
                self.assertEqual(reply.file, f"http://{SERVER}/_/boot/{slug}.bin".encode())
            else:
                self.assertEqual(reply.options[Option.VENDOR_CLASS], b"PXEClient", code)
                self.assertEqual(reply.file, f"{slug}.bin".encode())
            bios = arch.firmware is Firmware.BIOS and not arch.http
            self.assertEqual(Option.VENDOR_SPECIFIC in reply.options, bios, code)

    def test_unserved_codes_warned_once_each(self) -> None:
        proxy, transport = self.proxy({})
        for code in (0, 11, 11, 27, 300, 300):
            proxy.datagramReceived(discover(code), ("0.0.0.0", 68))
        self.assertEqual(transport.written, [])
        warnings = [e for e in self.events if e.get("log_level") == LogLevel.warn]
        self.assertEqual([e["code"] for e in warnings], [0, 11, 27, 300])
        self.assertEqual(warnings[1]["arch"], "arm64-uefi")
        self.assertEqual(warnings[3]["arch"], "unknown-300")

    def test_unregistered_code_served_by_the_key_the_warning_names(self) -> None:
        """
        The warning for a code the registry lacks names a key that the
        configuration accepts, and that key serves the code.
        """
        path = self.base / "odd.efi"
        path.write_bytes(b"x")
        config = parse_config({"bootloaders": {"unknown-300": str(path)}}, "site.yaml")
        proxy, transport = self.proxy({"unknown-300": config.bootloaders["unknown-300"]})
        proxy.datagramReceived(discover(300), ("0.0.0.0", 68))
        [(data, _)] = transport.written
        self.assertEqual(decode(data).file, b"odd.efi")
        for bad in ("unknown-65536", "unknown-01", "unknown-x"):
            error = self.assertRaises(ConfigError, parse_config,
                                      {"bootloaders": {bad: str(path)}}, "site.yaml")
            self.assertEqual(error.key, f"bootloaders.{bad}")

    def test_http_code_warning_names_its_pxe_twin(self) -> None:
        proxy, transport = self.proxy({})
        proxy.datagramReceived(discover(19), ("0.0.0.0", 68))
        [warning] = [e for e in self.events if e.get("log_level") == LogLevel.warn]
        text = formatEvent(warning)
        self.assertIn("bootloaders.arm64-uefi-http, or bootloaders.arm64-uefi for both", text)
