"""
End-to-end boots that exercise pxed's DHCP side beyond one flat LAN:
UEFI HTTP Boot, a client behind a DHCP relay on another subnet, and a
multi-homed pxed answering on its second interface.

Same lab as L{tests.test_e2e_boot} (network namespaces the test creates
and removes, dnsmasq as the LAN's DHCP server, a real C{twistd pxed},
QEMU under TCG); same proof: the kernel pxed served prints a random token
that only pxed's configuration carried.  Need root, QEMU and the Debian
packages C{scripts/setup} installs; they fail, never skip, without them.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from twisted.trial import unittest

from pxed.lab.demo import BootRun, boot_from_pxed
from pxed.lab.lan2 import SecondLan
from pxed.lab.netns import Lab
from pxed.lab.procs import netns_list
from pxed.lab.qemu import qemu_argv
from tests.e2e import BOOT_TIMEOUT, assert_booted, require_lab


class EndToEndDHCPTests(unittest.TestCase):
    def _boot(self, firmware: str, mac: str, second_lan: str | None = None,
              server: str = "") -> tuple[BootRun, str]:
        require_lab()
        workdir = Path(self.mktemp()).resolve()
        run = boot_from_pxed(workdir, firmware, mac, BOOT_TIMEOUT, second_lan=second_lan,
                             server=server)
        return run, assert_booted(self, run, workdir)

    def test_uefi_http_boot(self) -> None:
        """
        OVMF with PXE switched off boots "UEFI HTTPv4": EDK2's HTTP Boot
        client (vendor class HTTPClient, arch 16) takes pxed's proxy offer,
        downloads iPXE's EFI binary over HTTP, and that iPXE fetches its
        script as usual.
        """
        mac = "52:54:00:77:00:30"
        _, log = self._boot("uefi-http", mac)
        self.assertIn(f"{mac}: proxydhcp x64-uefi-http -> http://192.168.77.1/_/boot/", log)
        self.assertIn(f"{mac}: served boot program (HTTP) snponly.efi", log)
        self.assertIn(f"{mac}: proxydhcp x64-uefi -> http://192.168.77.1/_/ipxe?", log)

    def test_uefi_through_relay(self) -> None:
        """
        A UEFI machine on 192.168.88.0/24, whose DHCP goes through a relay
        agent: pxed answers the relayed DISCOVER by unicast to the relay,
        then serves the port-4011 request and TFTP across the router.
        """
        mac = "52:54:00:77:00:40"
        run, log = self._boot("uefi", mac, second_lan="relay")
        self.assertIn(f"{mac}: proxydhcp x64-uefi -> snponly.efi", log)
        self.assertIn(f"{mac}: bootserver x64-uefi -> snponly.efi", log)
        # The client lives on the relay's subnet, and the relay carried
        # pxed's offer to it.
        self.assertIn('"192.168.88.', log)  # its HTTP requests, in the access log
        relay_log = (run.pxed_log.parent / "dnsmasq-relay.log").read_text(errors="replace")
        self.assertIn("relay at 192.168.88.1 -> 192.168.77.1", relay_log)

    def test_bios_on_second_interface(self) -> None:
        """
        pxed on two LANs (eth0 192.168.77.1, eth1 192.168.99.1), serving
        only the interfaces it is told to: a client on the second LAN is
        told the second address, and its broadcast offer leaves by eth1.
        """
        mac = "52:54:00:77:00:50"
        lan2 = SecondLan("direct")
        _, log = self._boot("bios", mac, second_lan="direct",
                            server="  interfaces: [eth0, eth1]\n")
        self.assertIn(f"{mac}: proxydhcp x86-bios -> http://{lan2.server_ip}/_/ipxe?", log)
        self.assertNotIn(f"{mac}: proxydhcp x86-bios -> http://192.168.77.1/", log)
        self.assertIn('"192.168.99.', log)

    def test_uefi_pxe_menu(self) -> None:
        """
        With the PXE menu switched on, EDK2 shows pxed's prompt, lets its
        timeout run out, takes the first item (boot from pxed) and asks
        port 4011 for it; the ACK names the item and the boot goes on.
        """
        mac = "52:54:00:77:00:60"
        run, log = self._boot("uefi", mac,
                              server='  menu: {prompt: "pxed menu test", timeout: 1}\n')
        self.assertIn(f"{mac}: bootserver x64-uefi -> snponly.efi", log)
        serial = run.serial.read_text(errors="replace")
        self.assertIn("pxed menu test", serial)


class SecondLanTests(unittest.TestCase):
    """
    The lab's second LAN, without booting anything: its addresses, the
    relay's and the router's arguments, and the namespaces it builds.
    """

    def test_shapes(self) -> None:
        relay, direct = SecondLan("relay"), SecondLan("direct")
        self.assertEqual((relay.subnet, relay.gateway, relay.server_ip),
                         ("192.168.88.0/24", "192.168.88.1", None))
        self.assertEqual((direct.subnet, direct.gateway, direct.server_ip),
                         ("192.168.99.0/24", "192.168.99.254", "192.168.99.1"))
        self.assertRaises(ValueError, SecondLan, "vlan")

    def test_relay_argv(self) -> None:
        lab = Lab(Path(self.mktemp()), second_lan="relay")
        argv = SecondLan("relay").relay_argv(lab, "relay.log", ipv6_ra=False)
        self.assertIn(f"--dhcp-relay=192.168.88.1,{Lab.ROUTER_IP}", argv)
        self.assertIn(f"--dhcp-relay=192.168.88.1,{Lab.SERVER_IP}", argv)
        self.assertIn("--port=0", argv)
        self.assertFalse([a for a in argv if a.startswith("--dhcp-range")])

    def test_uefi_http_firmware(self) -> None:
        argv = qemu_argv("uefi-http", Path(self.mktemp()), "52:54:00:77:00:30",
                         Path(self.mktemp()).absolute().parent)
        self.assertIn("name=opt/org.tianocore/IPv4PXESupport,string=no", argv)
        self.assertIn("name=opt/org.tianocore/IPv6PXESupport,string=no", argv)
        pxe = qemu_argv("uefi", Path(self.mktemp()), "52:54:00:77:00:30",
                        Path(self.mktemp()).absolute().parent)
        self.assertNotIn("name=opt/org.tianocore/IPv4PXESupport,string=no", pxe)

    def _links(self, lab: Lab, namespace: str) -> str:
        return subprocess.run(["ip", "-n", namespace, "-o", "addr"], capture_output=True,
                              text=True, timeout=30).stdout

    def test_namespaces(self) -> None:
        require_lab()
        for shape in ("relay", "direct"):
            lab = Lab(Path(self.mktemp()), second_lan=shape)
            with lab:
                if shape == "relay":
                    assert lab.rly is not None
                    self.assertIn(lab.rly, netns_list())
                    self.assertIn("192.168.88.1/24", self._links(lab, lab.rly))
                    self.assertIn("192.168.77.253/24", self._links(lab, lab.rly))
                    routes = lab.run_in(lab.srv, ["ip", "route"]).stdout
                    self.assertIn("192.168.88.0/24 via 192.168.77.253", routes)
                else:
                    self.assertIn("192.168.99.1/24", self._links(lab, lab.srv))
                    self.assertIn("192.168.99.254/24", self._links(lab, lab.rtr))
                self.assertEqual(lab.client_tap, "tap1")
                lan = lab.run_in(lab.lan, ["ip", "-o", "link"]).stdout
                self.assertIn("tap1", lan)
            self.assertFalse({lab.lan, lab.rtr, lab.srv, lab.rly} & set(netns_list()))
