# -*- test-case-name: tests.test_lab -*-
"""
A second LAN for the lab, in one of two shapes.

C{relay}: the client's LAN (192.168.88.0/24, bridge br1, QEMU on tap1) is
a different subnet from pxed's, joined by a router namespace that forwards
IP and runs a DHCP relay agent (dnsmasq C{--dhcp-relay}) towards both the
LAN's DHCP server and pxed::

    <name>-rly  eth0 192.168.77.253/24 (on br0), eth1 192.168.88.1/24 (on br1)

C{direct}: pxed and the DHCP server each have a second interface on br1,
so pxed is multi-homed and must answer each client with the address of
the interface its request came in on::

    <name>-srv  eth1 192.168.99.1/24    <name>-rtr  eth1 192.168.99.254/24

Everything lives in the lab's namespaces; veths are created inside them.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from pxed.lab.procs import dnsmasq_argv, tail

__all__ = ["SHAPES", "LabHost", "SecondLan"]

SHAPES = ("relay", "direct")


class LabHost(Protocol):
    """
    What a second LAN needs of its lab (L{pxed.lab.netns.Lab} is one): its
    namespaces and first LAN's addresses, and running processes in them.
    A protocol rather than an import, so that this module and
    L{pxed.lab.netns}, which builds a second LAN, do not import each other.
    """

    workdir: Path
    lan: str
    rtr: str
    srv: str
    rly: str | None
    BRIDGE: str
    ROUTER_IP: str
    SERVER_IP: str

    def run_in(self, namespace: str, argv: list[str],
               timeout: float = 30) -> subprocess.CompletedProcess[str]: ...

    def spawn_in(self, namespace: str, argv: list[str], log: Path,
                 env: dict[str, str] | None = None, cwd: Path | None = None,
                 label: str | None = None) -> subprocess.Popen[bytes]: ...

    def wait_listening(self, namespace: str, port: int, udp: bool, timeout: float,
                       proc: subprocess.Popen[bytes] | None = None) -> bool: ...


class SecondLan:
    """
    The addresses and plumbing of the second LAN of one lab.
    """

    BRIDGE = "br1"
    TAP = "tap1"
    RELAY_UPLINK_IP = "192.168.77.253"
    ULA = {"relay": "fd77:88::", "direct": "fd77:99::"}
    PREFIX = {"relay": "192.168.88", "direct": "192.168.99"}

    def __init__(self, shape: str) -> None:
        if shape not in SHAPES:
            raise ValueError(f"unknown second LAN {shape!r}: expected one of {SHAPES}")
        self.shape = shape
        prefix = self.PREFIX[shape]
        self.subnet = f"{prefix}.0/24"
        self.dhcp_range = (f"{prefix}.100", f"{prefix}.200")
        #: The client's gateway: the relay's address, or the DHCP server's.
        self.gateway = f"{prefix}.1" if shape == "relay" else f"{prefix}.254"
        #: pxed's own address on this LAN (direct shape only).
        self.server_ip = f"{prefix}.1" if shape == "direct" else None
        self.router_ip = f"{prefix}.254" if shape == "direct" else None
        self.ula = self.ULA[shape]

    def create(self, lab: LabHost, run: Callable[..., None]) -> None:
        """
        Build br1, tap1 and the veths of this shape (C{run} runs one C{ip}
        command, as the lab does).
        """
        lan = lab.lan
        run("-n", lan, "link", "add", self.BRIDGE, "type", "bridge",
            "stp_state", "0", "forward_delay", "0", "mcast_snooping", "0",
            "nf_call_iptables", "0", "nf_call_ip6tables", "0", "nf_call_arptables", "0")
        run("-n", lan, "tuntap", "add", "dev", self.TAP, "mode", "tap")
        run("-n", lan, "link", "set", self.TAP, "master", self.BRIDGE)
        if self.shape == "relay":
            assert lab.rly is not None
            links = [("rly0", lab.BRIDGE, lab.rly, "eth0", f"{self.RELAY_UPLINK_IP}/24"),
                     ("rly1", self.BRIDGE, lab.rly, "eth1", f"{self.gateway}/24")]
        else:
            links = [("srv1", self.BRIDGE, lab.srv, "eth1", f"{self.server_ip}/24"),
                     ("rtr1", self.BRIDGE, lab.rtr, "eth1", f"{self.router_ip}/24")]
        for port, bridge, ns, iface, address in links:
            run("-n", lan, "link", "add", port, "type", "veth",
                "peer", "name", iface, "netns", ns)
            run("-n", lan, "link", "set", port, "master", bridge)
            run("-n", lan, "link", "set", port, "up")
            run("-n", ns, "addr", "add", address, "dev", iface)
            run("-n", ns, "link", "set", iface, "up")
        run("-n", lan, "link", "set", self.TAP, "up")
        run("-n", lan, "link", "set", self.BRIDGE, "up")
        if self.shape == "relay":
            assert lab.rly is not None
            lab.run_in(lab.rly, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])
            # The DHCP server and pxed reach the relayed clients through it.
            for ns in (lab.rtr, lab.srv):
                run("-n", ns, "route", "add", self.subnet,
                    "via", self.RELAY_UPLINK_IP)

    def router_args(self, lab: LabHost, ipv6_ra: bool) -> list[str]:
        """
        Extra arguments for the LAN's DHCP server: a pool (and gateway) for
        the second subnet, and on the direct shape its second interface.
        """
        low, high = self.dhcp_range
        argv = [f"--dhcp-range=set:lan2,{low},{high},255.255.255.0,1h",
                f"--dhcp-option=tag:lan2,option:router,{self.gateway}"]
        if self.shape == "direct":
            argv.append("--interface=eth1")
            if ipv6_ra:
                lab.run_in(lab.rtr, ["ip", "addr", "add", f"{self.ula}fe/64", "dev", "eth1",
                                     "nodad"])
                argv.append(f"--dhcp-range={self.ula},ra-only,64")
        return argv

    def relay_argv(self, lab: LabHost, log: str, ipv6_ra: bool) -> list[str]:
        """
        dnsmasq as a DHCP relay agent only (no DNS, no DHCP service of its
        own), forwarding the second LAN's requests to the DHCP server and
        to pxed; with C{ipv6_ra}, it also sends RAs on that LAN.
        """
        argv = dnsmasq_argv(
            "--log-dhcp", f"--log-facility={log}",
            f"--pid-file={lab.workdir / 'dnsmasq-relay.pid'}",
            f"--dhcp-relay={self.gateway},{lab.ROUTER_IP}",
            f"--dhcp-relay={self.gateway},{lab.SERVER_IP}",
        )
        if ipv6_ra:
            assert lab.rly is not None
            lab.run_in(lab.rly, ["ip", "addr", "add", f"{self.ula}1/64", "dev", "eth1", "nodad"])
            argv += ["--enable-ra", f"--dhcp-range={self.ula},ra-only,64"]
        return argv

    def start_relay(self, lab: LabHost, ipv6_ra: bool) -> None:
        """
        Start the relay agent in the relay namespace and wait until it
        listens on port 67.
        """
        if lab.rly is None:
            raise ValueError("this lab has no relay (second_lan='relay')")
        log = lab.workdir / "dnsmasq-relay.log"
        log.unlink(missing_ok=True)  # dnsmasq appends; a stale line would fool a test
        argv = self.relay_argv(lab, str(log), ipv6_ra)
        out = lab.workdir / "dnsmasq-relay.out"
        proc = lab.spawn_in(lab.rly, argv, out, label="relay")
        if not lab.wait_listening(lab.rly, 67, udp=True, timeout=15, proc=proc):
            raise RuntimeError(f"relay dnsmasq did not start:\n{tail(log)}\n{tail(out)}")
