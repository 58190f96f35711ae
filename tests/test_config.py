"""
Tests for L{pxed.config}: the example loads, and every mistake is one
L{ConfigError} naming the file, the key and the problem.
"""

from __future__ import annotations

from pxed import config
from pxed.config import ConfigError, Ports, load_config, parse_config
from pxed.policy import BootSpec
from tests.fixtures import EXAMPLE, ConfigTestCase

MAC = "52:54:00:12:34:56"
#: As shipped, before any test patches them.
DEBIAN_DEFAULTS = dict(config.DEFAULT_BOOTLOADERS)


class ExampleTests(ConfigTestCase):
    def test_example_loads(self) -> None:
        loaded = load_config(EXAMPLE)
        self.assertEqual(loaded.source, str(EXAMPLE))
        self.assertEqual(loaded.server.ports, Ports(dhcp=67, pxe=4011, tftp=69, http=80))
        self.assertIsNone(loaded.server.address)
        self.assertIsNone(loaded.server.interface)
        self.assertIsNone(loaded.default)
        self.assertEqual(dict(loaded.machines), {})
        self.assertEqual(dict(loaded.bootloaders),
                         {"x86-bios": self.undionly, "x64-uefi": self.snponly})

    def test_example_with_debian_defaults(self) -> None:
        """
        With the shipped defaults, the example loads where Debian's ipxe
        package is installed, and otherwise says to install it.
        """
        self.patch(config.server, "DEFAULT_BOOTLOADERS", DEBIAN_DEFAULTS)
        if all(path.is_file() for path in DEBIAN_DEFAULTS.values()):
            self.assertEqual(dict(load_config(EXAMPLE).bootloaders), DEBIAN_DEFAULTS)
        else:
            error = self.assertRaises(ConfigError, load_config, EXAMPLE)
            self.assertIn("apt-get install ipxe", str(error))

    def test_debian_defaults(self) -> None:
        """
        Without this test's patch, the defaults are Debian's ipxe files.
        """
        self.assertEqual(
            {slug: str(path) for slug, path in DEBIAN_DEFAULTS.items()},
            {"x86-bios": "/usr/lib/ipxe/undionly.kpxe",
             "x64-uefi": "/usr/lib/ipxe/snponly.efi"},
        )

    def test_empty_file(self) -> None:
        loaded = self.load("")
        self.assertEqual(loaded.server.ports, Ports())
        self.assertIsNone(loaded.default)
        self.assertEqual(len(loaded.bootloaders), 2)

    def test_full(self) -> None:
        loaded = self.load(f"""
            server:
              address: 192.168.77.1
              interface: br0
              ports: {{dhcp: 1067, pxe: 14011, tftp: 1069, http: 8080}}
            boot:
              default:
                kernel: {self.kernel}
                initrd: [{self.initrd}, https://example.org/extra.img]
                cmdline: "console=ttyS0 quiet"
              machines:
                "52-54-00-AB-CD-EF":
                  kernel: http://deb.example.org/linux
                  initrd: http://deb.example.org/initrd.gz
        """)
        self.assertEqual(loaded.server.address, "192.168.77.1")
        self.assertEqual(loaded.server.interface, "br0")
        self.assertEqual(loaded.server.ports, Ports(1067, 14011, 1069, 8080))
        self.assertEqual(loaded.default, BootSpec(
            kernel=str(self.kernel), initrds=(str(self.initrd), "https://example.org/extra.img"),
            cmdline="console=ttyS0 quiet"))
        self.assertEqual(dict(loaded.machines), {
            "52:54:00:ab:cd:ef": BootSpec(kernel="http://deb.example.org/linux",
                                          initrds=("http://deb.example.org/initrd.gz",)),
        })


class ErrorTests(ConfigTestCase):
    def test_unknown_top_level_key(self) -> None:
        self.assertError({"servre": {}}, "servre", "unknown key", "server")

    def test_unknown_nested_keys(self) -> None:
        self.assertError({"server": {"ports": {"dhpc": 67}}}, "server.ports.dhpc",
                         "unknown key", "dhcp")
        self.assertError({"boot": {"default": {"kernal": "/x"}}}, "boot.default.kernal",
                         "unknown key", "kernel")
        self.assertError({"boot": {"machines": {MAC: {"kernel": str(self.kernel), "cmd": ""}}}},
                         f"boot.machines.{MAC}.cmd", "unknown key")
        self.assertError({"bootloaders": {"x64-ueif": None}}, "bootloaders.x64-ueif",
                         "unknown key", "x64-uefi")

    def test_not_a_mapping(self) -> None:
        self.assertError(["server"], "(top level)", "must be a mapping", "list")
        self.assertError({"server": "0.0.0.0"}, "server", "must be a mapping", "str")
        self.assertError({"boot": {"machines": [MAC]}}, "boot.machines", "must be a mapping")

    def test_bad_mac(self) -> None:
        for mac in ("52:54:00:12:34", "52:54:00:12:34:5g", "525400123456", "52:54:00:12:34:56:78"):
            self.assertError({"boot": {"machines": {mac: {"kernel": str(self.kernel)}}}},
                             f"boot.machines.{mac}", "not a MAC address")

    def test_unquoted_mac(self) -> None:
        """
        YAML 1.1 reads 52:54:00:12:34:56 as a base-60 number.
        """
        error = self.assertRaises(ConfigError, self.load, f"""
            boot:
              machines:
                52:54:00:12:34:56:
                  kernel: {self.kernel}
        """)
        self.assertEqual(error.key, "boot.machines")
        self.assertIn(str(self.dir / "pxed.yaml"), str(error))
        self.assertIn("quote MAC addresses", str(error))

    def test_mac_normalised(self) -> None:
        loaded = parse_config({"boot": {"machines": {
            " 52-54-00-AB-CD-EF ": {"kernel": str(self.kernel)},
            "52:54:00:0A:0B:0C": {"kernel": str(self.kernel)},
        }}})
        self.assertEqual(sorted(loaded.machines), ["52:54:00:0a:0b:0c", "52:54:00:ab:cd:ef"])

    def test_mac_twice(self) -> None:
        self.assertError(
            {"boot": {"machines": {"52:54:00:ab:cd:ef": {"kernel": str(self.kernel)},
                                   "52-54-00-AB-CD-EF": {"kernel": str(self.kernel)}}}},
            "boot.machines.52-54-00-AB-CD-EF", "listed twice")

    def test_ports(self) -> None:
        for value in ("67", 67.0, True, -1, 65536, None, [67]):
            self.assertError({"server": {"ports": {"tftp": value}}}, "server.ports.tftp",
                             "port number")
        loaded = parse_config({"server": {"ports": {"tftp": 0, "http": 65535}}})
        self.assertEqual(loaded.server.ports, Ports(tftp=0, http=65535))

    def test_initrd_not_list(self) -> None:
        for value in (5, {"a": 1}, True):
            self.assertError(self.boot(initrd=value), "boot.default.initrd", "must be a list")

    def test_initrd_single_string(self) -> None:
        loaded = parse_config(self.boot(initrd=str(self.initrd)))
        assert loaded.default is not None
        self.assertEqual(loaded.default.initrds, (str(self.initrd),))

    def test_initrd_item(self) -> None:
        self.assertError(self.boot(initrd=[str(self.initrd), str(self.dir / "gone.img")]),
                         "boot.default.initrd[1]", "does not exist", "gone.img")
        self.assertError(self.boot(initrd=[7]), "boot.default.initrd[0]", "non-empty string")

    def test_cmdline_not_string(self) -> None:
        for value in (5, ["quiet"], {"console": "ttyS0"}):
            self.assertError(self.boot(cmdline=value), "boot.default.cmdline",
                             "must be a string")

    def test_missing_kernel_key(self) -> None:
        self.assertError({"boot": {"default": {"cmdline": "quiet"}}}, "boot.default",
                         "missing key 'kernel'")
        self.assertError({"boot": {"machines": {MAC: None}}}, f"boot.machines.{MAC}",
                         "missing key 'kernel'")

    def test_missing_kernel_file(self) -> None:
        gone = self.dir / "vmlinuz-gone"
        self.assertError(self.boot(kernel=str(gone)), "boot.default.kernel", "does not exist",
                         str(gone))

    def test_kernel_is_directory(self) -> None:
        self.assertError(self.boot(kernel=str(self.dir)), "boot.default.kernel",
                         "does not exist")

    def test_kernel_wrong_type(self) -> None:
        for value in ("", 5, ["/vmlinuz"], None):
            self.assertError(self.boot(kernel=value), "boot.default.kernel", "non-empty string")

    def test_relative_path(self) -> None:
        self.assertError(self.boot(kernel="vmlinuz"), "boot.default.kernel",
                         "absolute path", "URL")
        self.assertError(self.boot(kernel="ftp://host/vmlinuz"), "boot.default.kernel",
                         "absolute path")

    def test_urls(self) -> None:
        loaded = parse_config(self.boot(kernel="https://h.example/linux",
                                        initrd=["http://h.example/a.img", str(self.initrd)]))
        self.assertEqual(loaded.default, BootSpec(
            "https://h.example/linux", ("http://h.example/a.img", str(self.initrd))))

    def test_bad_server_address(self) -> None:
        for value in ("192.168.1.300", "pxe.example.org", "::1", "0.0.0.0", "224.0.0.1", 5, ""):
            self.assertError({"server": {"address": value}}, "server.address")

    def test_server_address(self) -> None:
        loaded = parse_config({"server": {"address": "10.0.0.1"}})
        self.assertEqual(loaded.server.address, "10.0.0.1")

    def test_invalid_yaml(self) -> None:
        error = self.assertRaises(ConfigError, self.load, """
            server:
              ports: {dhcp: 67
            boot: {}
        """)
        message = str(error)
        self.assertTrue(message.startswith(str(self.dir / "pxed.yaml") + ": "), message)
        self.assertIn("invalid YAML", message)
        self.assertIn("line 4", message)

    def test_yaml_tags_refused(self) -> None:
        error = self.assertRaises(ConfigError, self.load, "server: !!python/object:os.system {}\n")
        self.assertIn("invalid YAML", str(error))

    def test_unreadable(self) -> None:
        missing = self.dir / "nope.yaml"
        error = self.assertRaises(ConfigError, load_config, missing)
        self.assertTrue(str(error).startswith(f"{missing}: cannot read"), str(error))
        error = self.assertRaises(ConfigError, load_config, self.dir)
        self.assertTrue(str(error).startswith(f"{self.dir}: cannot read"), str(error))

    def test_not_utf8(self) -> None:
        path = self.dir / "latin1.yaml"
        path.write_bytes(b"boot: {}\n# caf\xe9\n")
        error = self.assertRaises(ConfigError, load_config, path)
        self.assertIn("UTF-8", str(error))


class BootloaderTests(ConfigTestCase):
    def test_override(self) -> None:
        other = self.file("ipxe.efi")
        loaded = parse_config({"bootloaders": {"x64-uefi": str(other)}})
        self.assertEqual(dict(loaded.bootloaders), {"x86-bios": self.undionly, "x64-uefi": other})

    def test_add_architecture(self) -> None:
        arm = self.file("snp-arm64.efi")
        loaded = parse_config({"bootloaders": {"arm64-uefi": str(arm)}})
        self.assertEqual(loaded.bootloaders["arm64-uefi"], arm)
        self.assertEqual(len(loaded.bootloaders), 3)

    def test_null_disables(self) -> None:
        loaded = parse_config({"bootloaders": {"x86-bios": None}})
        self.assertEqual(dict(loaded.bootloaders), {"x64-uefi": self.snponly})

    def test_missing_default(self) -> None:
        self.patch(config.server, "DEFAULT_BOOTLOADERS",
                   {"x86-bios": self.dir / "undionly.kpxe", "x64-uefi": self.dir / "none.efi"})
        error = self.assertError({}, "bootloaders.x64-uefi", "none.efi", "Debian",
                                 "'ipxe'", "apt-get install ipxe")
        self.assertIn("name another file", error.problem)

    def test_missing_default_switched_off(self) -> None:
        self.patch(config.server, "DEFAULT_BOOTLOADERS", {"x64-uefi": self.dir / "none.efi"})
        self.assertEqual(dict(parse_config({"bootloaders": {"x64-uefi": None}}).bootloaders), {})

    def test_missing_default_overridden(self) -> None:
        self.patch(config.server, "DEFAULT_BOOTLOADERS", {"x64-uefi": self.dir / "none.efi"})
        loaded = parse_config({"bootloaders": {"x64-uefi": str(self.snponly)}})
        self.assertEqual(dict(loaded.bootloaders), {"x64-uefi": self.snponly})

    def test_missing_file(self) -> None:
        self.assertError({"bootloaders": {"x86-bios": str(self.dir / "gone.kpxe")}},
                         "bootloaders.x86-bios", "does not exist")

    def test_no_urls(self) -> None:
        self.assertError({"bootloaders": {"x86-bios": "http://h/undionly.kpxe"}},
                         "bootloaders.x86-bios", "absolute path")

    def test_file_name_clash(self) -> None:
        """
        TFTP serves bootloaders by file name: two different files with the
        same name cannot both be served.
        """
        sub = self.dir / "sub"
        sub.mkdir()
        (sub / "snponly.efi").write_bytes(b"other")
        self.assertError({"bootloaders": {"arm64-uefi": str(sub / "snponly.efi")}},
                         "bootloaders.arm64-uefi", "already used", "bootloaders.x64-uefi")

    def test_same_file_twice(self) -> None:
        loaded = parse_config({"bootloaders": {"x86-uefi": str(self.snponly)}})
        self.assertEqual(loaded.bootloaders["x86-uefi"], self.snponly)

    def test_error_attributes(self) -> None:
        error = ConfigError("f.yaml", "a.b", "is wrong")
        self.assertEqual((error.source, error.key, error.problem), ("f.yaml", "a.b", "is wrong"))
        self.assertEqual(str(error), "f.yaml: a.b: is wrong")
        self.assertEqual(str(ConfigError("f.yaml", "", "cannot read")), "f.yaml: cannot read")
