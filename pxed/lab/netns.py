# -*- test-case-name: tests.test_lab -*-
"""
A throw-away boot LAN built from network namespaces.

Three namespaces, all named after one random per-run prefix so parallel runs
never collide::

    <name>-rtr  eth0 192.168.77.254/24  -- plain DHCP server ("the router")
    <name>-srv  eth0 192.168.77.1/24    -- the boot server under test
    <name>-lan  br0 (no address) joining rtr0, srv0 and tap0 (QEMU's NIC)

The LAN's ordinary DHCP server lives apart from the boot server because two
DHCP servers cannot both own UDP 67 in one namespace, and a ProxyDHCP server
must be tested next to a real DHCP server anyway.  Veth pairs are created
directly inside the namespaces, so nothing ever appears in the host namespace
and no packet can leave the lab.

With C{second_lan="relay"} or C{"direct"} the lab also has a second LAN
(bridge br1, QEMU on tap1): behind a DHCP relay agent, or with pxed and the
DHCP server multi-homed on it; see L{pxed.lab.lan2}.

This module is the topology; owning the namespaces and the processes
started in them, and taking them down, is L{pxed.lab.namespaces}:
L{Lab.close} (and so C{__exit__}) stops every process the lab started, by
PID, and deletes the namespaces, which destroys the veths, bridge and tap.
"""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
from pathlib import Path

from pxed.lab.lan2 import SecondLan
from pxed.lab.namespaces import Namespaces, ip
from pxed.lab.procs import dnsmasq_argv, tail
from pxed.lab.qemu import qemu_argv

__all__ = ["Lab", "tail"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,40}$")


class Lab(Namespaces):
    """
    The lab LAN as a context manager; see the module docstring for the layout.

    @ivar procs: every process started by this lab, in start order, with a label
        (see L{Namespaces}).
    """

    SUBNET = "192.168.77.0/24"
    PREFIX_LEN = 24
    ROUTER_IP = "192.168.77.254"
    SERVER_IP = "192.168.77.1"
    DHCP_RANGE = ("192.168.77.100", "192.168.77.200")
    ULA_PREFIX = "fd77:77::"
    SERVER_IFACE = "eth0"
    ROUTER_IFACE = "eth0"
    BRIDGE = "br0"
    TAP = "tap0"

    def __init__(self, workdir: Path, name: str | None = None,
                 second_lan: str | None = None) -> None:
        """
        @param workdir: where logs, pid/lease files, the pcap and OVMF vars go;
            created if missing and kept afterwards for diagnosis.
        @param name: namespace prefix; a random C{pxlab-xxxxxx} by default so
            that parallel runs do not collide.
        @param second_lan: C{None}, C{"relay"} or C{"direct"}: see
            L{pxed.lab.lan2}.
        """
        name = name or f"pxlab-{secrets.token_hex(3)}"
        if not _NAME.match(name):
            raise ValueError(f"bad lab name {name!r}")
        super().__init__(Path(workdir).resolve(), name)
        self.lan = f"{self.name}-lan"
        self.rtr = f"{self.name}-rtr"
        self.srv = f"{self.name}-srv"
        self.lan2 = SecondLan(second_lan) if second_lan is not None else None
        self.rly = f"{self.name}-rly" if second_lan == "relay" else None

    # -- set-up ---------------------------------------------------------------

    def _create(self) -> None:
        """Build namespaces, bridge, tap and veths; see the module docstring."""
        self._add_namespaces(
            [self.lan, self.rtr, self.srv, *([self.rly] if self.rly else [])])
        lan = self.lan
        # STP off so ports forward at once; no snooping so the bridge is a hub
        # for broadcasts and multicast alike.
        ip("-n", lan, "link", "add", self.BRIDGE, "type", "bridge",
           "stp_state", "0", "forward_delay", "0", "mcast_snooping", "0")  # fmt: skip
        self._no_bridge_netfilter()
        ip("-n", lan, "tuntap", "add", "dev", self.TAP, "mode", "tap")
        ip("-n", lan, "link", "set", self.TAP, "master", self.BRIDGE)
        for port, ns, iface, address in (
            ("rtr0", self.rtr, self.ROUTER_IFACE, self.ROUTER_IP),
            ("srv0", self.srv, self.SERVER_IFACE, self.SERVER_IP),
        ):
            ip("-n", lan, "link", "add", port, "type", "veth", "peer", "name", iface, "netns", ns)
            ip("-n", lan, "link", "set", port, "master", self.BRIDGE)
            ip("-n", lan, "link", "set", port, "up")
            ip("-n", ns, "addr", "add", f"{address}/{self.PREFIX_LEN}", "dev", iface)
            ip("-n", ns, "link", "set", iface, "up")
        ip("-n", lan, "link", "set", self.TAP, "up")
        ip("-n", lan, "link", "set", self.BRIDGE, "up")
        if self.lan2 is not None:
            self.lan2.create(self, ip)

    def _no_bridge_netfilter(self) -> None:
        """
        Keep bridged frames out of iptables/arptables.

        With br_netfilter loaded (it is, on these hosts) a new namespace starts
        with C{bridge-nf-call-*} = 1, and any filtering there would silently
        eat DHCP broadcasts.  The per-bridge flags are only OR'ed with the
        namespace sysctls, so both are cleared.
        """
        flags = ["nf_call_iptables", "0", "nf_call_ip6tables", "0", "nf_call_arptables", "0"]
        ip("-n", self.lan, "link", "set", self.BRIDGE, "type", "bridge", *flags)
        if not Path("/proc/sys/net/bridge").is_dir():
            return  # br_netfilter not loaded: nothing to switch off
        settings = [
            f"net.bridge.bridge-nf-call-{t}=0" for t in ("iptables", "ip6tables", "arptables")
        ]
        self.run_in(self.lan, ["sysctl", "-q", "-w", *settings])

    # -- processes ------------------------------------------------------------

    def spawn_in_server(
        self,
        argv: list[str],
        log: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a process on the boot-server host (the srv namespace)."""
        return self.spawn_in(self.srv, argv, log, env=env, cwd=cwd)

    def start_router(self, ipv6_ra: bool = False, dhcp4: bool = True,
                     extra: tuple[str, ...] = ()) -> None:
        """
        Start the LAN's ordinary DHCP server: dnsmasq, DHCP only.

        No DNS (C{--port=0}), no PXE, no TFTP: it must behave like a home
        router so that the boot server's ProxyDHCP answers are what make a
        client network-boot.  C{--no-ping} because otherwise every offer
        waits ~3 s for an ICMP probe.

        @param ipv6_ra: also send IPv6 router advertisements (prefix
            L{ULA_PREFIX}, SLAAC only).  iPXE's "Configuring" step otherwise
            waits ~15 s for an RA that never comes; with one it finishes at
            once, which makes every boot ~15 s faster.  Off by default
            because it adds IPv6 traffic to the LAN under test.
        @param dhcp4: hand out IPv4 addresses; C{False} (with C{ipv6_ra})
            leaves the LAN without any other DHCP server, for pxed as the
            DHCP server.
        @param extra: more dnsmasq arguments (a site's next-server, say).
        """
        log = self.workdir / "dnsmasq-router.log"
        log.unlink(missing_ok=True)  # dnsmasq appends; a stale line would fool wait_for
        low, high = self.DHCP_RANGE
        dhcp = [f"--dhcp-range={low},{high},255.255.255.0,1h",
                f"--dhcp-option=option:router,{self.ROUTER_IP}",
                "--dhcp-authoritative", "--no-ping"] if dhcp4 else []
        argv = dnsmasq_argv(
            f"--interface={self.ROUTER_IFACE}",
            *dhcp,
            "--log-dhcp",
            f"--log-facility={log}",
            f"--pid-file={self.workdir / 'dnsmasq-router.pid'}",
            f"--dhcp-leasefile={self.workdir / 'dnsmasq-router.leases'}",
        )
        if ipv6_ra:
            address = f"{self.ULA_PREFIX}fe/64"
            ip("-n", self.rtr, "addr", "add", address, "dev", self.ROUTER_IFACE, "nodad")
            argv += ["--enable-ra", f"--dhcp-range={self.ULA_PREFIX},ra-only,64"]
        if self.lan2 is not None:
            argv += self.lan2.router_args(self, ipv6_ra)
        argv += list(extra)
        proc = self.spawn_in(self.rtr, argv, self.workdir / "dnsmasq-router.out", label="router")
        ready = b"DHCP, IP range" if dhcp4 else b"router advertisement on"
        if not self.wait_for(log, ready, 15, proc):
            raise RuntimeError(
                f"router dnsmasq did not start:\n{tail(log)}\n"
                f"{tail(self.workdir / 'dnsmasq-router.out')}"
            )

    def start_relay(self, ipv6_ra: bool = False) -> None:
        """Start the second LAN's DHCP relay agent (C{second_lan="relay"})."""
        if self.lan2 is None:
            raise ValueError("this lab has no relay (second_lan='relay')")
        self.lan2.start_relay(self, ipv6_ra)

    @property
    def client_tap(self) -> str:
        """
        The tap QEMU boots on: the second LAN's when there is one.
        """
        return self.lan2.TAP if self.lan2 is not None else self.TAP

    def start_capture(self) -> Path:
        """
        Capture everything on tap0 into workdir/boot.pcapng; return its path.

        The capture is on the tap, not the bridge: a capture on the bridge
        misses unicast frames it merely forwards.  Returns only once dumpcap
        reports that it is capturing, so the first DHCPDISCOVER is not lost.
        """
        pcap = self.workdir / "boot.pcapng"
        pcap.unlink(missing_ok=True)
        log = self.workdir / "capture.log"
        log.unlink(missing_ok=True)
        tool = "dumpcap" if shutil.which("dumpcap") else "tshark"
        proc = self.spawn_in(self.lan, [tool, "-i", self.client_tap, "-w", str(pcap)], log,
                             label="capture")  # fmt: skip
        if not self.wait_for(log, b"Capturing on", 20, proc):
            raise RuntimeError(f"{tool} did not start capturing:\n{tail(log)}")
        return pcap

    def boot(self, firmware: str, serial_log: Path, mac: str) -> subprocess.Popen[bytes]:
        """
        Start a QEMU client on tap0 that network-boots with C{firmware}.

        One client at a time: the tap can be opened by one QEMU only.  QEMU's
        own output goes next to the serial log (C{<serial>.qemu.log}).
        """
        serial_log = Path(serial_log).resolve()
        serial_log.unlink(missing_ok=True)
        argv = qemu_argv(firmware, serial_log, mac, self.workdir, tap=self.client_tap)
        qlog = serial_log.with_name(serial_log.name + ".qemu.log")
        return self.spawn_in(self.lan, argv, qlog, label=f"qemu-{firmware}")

