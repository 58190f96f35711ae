"""
pxed as the DHCP server under ISC's C{perfdhcp} (Debian C{kea-admin}), in
network namespaces: a real C{twistd pxed} on one host, perfdhcp playing a
relay agent with thousands of clients behind it on another.

Checks what a DHCP server owes its clients: every client completes its
4-way exchange (none lost), every address is unique and inside the
configured range, leases survive a restart and a C{kill -9} (the lease
file holds every address perfdhcp was ACKed, even with pxed killed in
the middle of a storm), a client gets its address back after a restart,
and an address that answers a ping is not offered.

These need root, iproute2 and perfdhcp, which C{scripts/setup} installs;
they fail (never skip) without them.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from twisted.trial import unittest

from pxed.lab.demo import fetch_from_server, start_pxed
from pxed.lab.netns import Lab, tail
from pxed.leasefile import read_lease_file

SERVER = "10.77.0.1"
RELAY = "10.77.0.2"
SUBNET = "10.77.0.0/20"
FIRST, LAST = "10.77.1.0", "10.77.8.255"
CLIENTS = 1200


def require_perfdhcp() -> None:
    if os.geteuid() != 0:
        raise AssertionError("the perfdhcp tests need root (network namespaces)")
    if shutil.which("perfdhcp") is None:
        raise AssertionError("perfdhcp is missing: run scripts/setup (Debian kea-admin)")


def write_config(workdir: Path, dhcp: str) -> Path:
    config = workdir / "pxed.yaml"
    config.write_text(f"server:\n  address: {SERVER}\n"
                      f"dhcp:\n  mode: full\n  lease_file: {workdir / 'leases.json'}\n{dhcp}")
    return config


def perfdhcp_argv(lab: Lab, clients: int, *extra: str, rate: int = 300) -> list[str]:
    """
    perfdhcp in the router's namespace as a relay (giaddr = its address)
    for C{clients} exchanges of random clients, printing the leases it
    was given (C{-x l}), waiting 3 s after the last for late answers.
    """
    return ["ip", "netns", "exec", lab.rtr, "perfdhcp", "-4", "-l", RELAY, "-R", "1000000",
            "-n", str(clients), "-r", str(rate), "-d", "2", "-W", "3000000", "-x", "l", *extra,
            SERVER]


def acked(output: str) -> list[str]:
    """
    The addresses of the REQUEST-ACK lease list perfdhcp prints.
    """
    section = output.split("***Leases for REQUEST-ACK***", 1)[1]
    return [line.split(",")[1] for line in section.splitlines() if line.startswith(",")]


def exchange_counts(output: str) -> list[tuple[int, int, int]]:
    """
    (sent, received, drops) of DISCOVER-OFFER and REQUEST-ACK.
    """
    counts = []
    for block in output.split("***Statistics for: ")[1:]:
        values = {}
        for line in block.splitlines():
            key, _, value = line.partition(":")
            if key in ("sent packets", "received packets", "drops"):
                values[key] = int(value)
        counts.append((values["sent packets"], values["received packets"], values["drops"]))
    return counts


def lease_file(workdir: Path) -> dict[str, Any]:
    """
    What the lease file (snapshot and journal) holds, by address.
    """
    return {lease.address: {"mac": lease.mac, "state": lease.state}
            for lease in read_lease_file(workdir / "leases.json")}


def in_range(address: str) -> bool:
    ip = ipaddress.IPv4Address(address)
    return ipaddress.IPv4Address(FIRST) <= ip <= ipaddress.IPv4Address(LAST)


class PerfdhcpTests(unittest.TestCase):
    timeout = 240

    def lab(self, dhcp: str) -> tuple[Lab, Path, Path]:
        require_perfdhcp()
        workdir = Path(self.mktemp()).resolve()
        workdir.mkdir(parents=True)
        lab = Lab(workdir)
        lab.__enter__()
        self.addCleanup(lab.close)
        lab.run_in(lab.srv, ["ip", "addr", "add", f"{SERVER}/20", "dev", lab.SERVER_IFACE])
        lab.run_in(lab.rtr, ["ip", "addr", "add", f"{RELAY}/20", "dev", lab.ROUTER_IFACE])
        return lab, workdir, write_config(workdir, dhcp)

    def perfdhcp(self, lab: Lab, clients: int, *extra: str) -> str:
        result = subprocess.run(perfdhcp_argv(lab, clients, *extra), capture_output=True,
                                text=True, timeout=120)
        self.assertEqual(result.returncode, 0, result.stdout[:2000] + result.stderr)
        return result.stdout

    def leases_api(self, lab: Lab) -> dict[str, str]:
        body = json.loads(fetch_from_server(lab, "/_/leases"))
        return {item["address"]: item["mac"] for item in body["leases"]}

    def test_thousand_clients_restart_and_kill(self) -> None:
        lab, workdir, config = self.lab(
            f'  ranges: {{"{SUBNET}": "{FIRST}-{LAST}"}}\n  ping: false\n')
        pxed = start_pxed(lab, config, workdir / "pxed.log")

        # 1. A storm of 1,200 DORA exchanges: none lost, unique, in range.
        output = self.perfdhcp(lab, CLIENTS, "-s", "7")
        # perfdhcp's rate loop may start one exchange past -n (seen: 1,201
        # of 1,200); every exchange it started must complete.
        sent = exchange_counts(output)[0][0]
        self.assertIn(sent, (CLIENTS, CLIENTS + 1), output[:3000])
        self.assertEqual(exchange_counts(output), [(sent, sent, 0)] * 2, output[:3000])
        first = acked(output)
        self.assertEqual(len(first), sent)
        self.assertEqual(len(set(first)), sent, "an address was given twice")
        self.assertTrue(all(in_range(a) for a in first), sorted(first)[:5] + sorted(first)[-5:])
        stored = lease_file(workdir)
        self.assertEqual(set(stored), set(first))
        self.assertEqual(len({lease["mac"] for lease in stored.values()}), sent)
        self.assertTrue(all(lease["state"] == "bound" for lease in stored.values()))
        self.assertEqual(self.leases_api(lab), {a: lease["mac"] for a, lease in stored.items()})

        # 2. A clean restart keeps them, and every client gets its address
        # back (the same seed replays the same clients).
        pxed.terminate()
        pxed.wait(timeout=30)
        pxed = start_pxed(lab, config, workdir / "pxed-2.log")
        self.assertEqual(set(self.leases_api(lab)), set(first))
        again = acked(self.perfdhcp(lab, CLIENTS, "-s", "7"))
        # The same clients again (one more or fewer at the end, as above),
        # each with an address of the first storm, none new or doubled.
        self.assertIn(len(again), (CLIENTS, CLIENTS + 1))
        self.assertEqual(len(set(again)), len(again), "an address was given twice")
        self.assertLessEqual(set(again), set(first))

        # 3. kill -9 in the middle of a storm of new clients: every address
        # perfdhcp was ACKed before the kill is in the lease file.
        storm = subprocess.Popen(perfdhcp_argv(lab, 3000, "-s", "11", "-b",
                                               "mac=00:0d:01:02:03:04"),
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            time.sleep(4)
            pxed.send_signal(signal.SIGKILL)
            pxed.wait(timeout=10)
            killed, _ = storm.communicate(timeout=120)
        finally:
            if storm.poll() is None:
                storm.kill()
                storm.wait()
        during = set(acked(killed))
        self.assertGreater(len(during), 100, killed[:2000])
        stored = lease_file(workdir)
        missing = during - set(stored)
        self.assertEqual(missing, set(), "ACKed before kill -9 but not in the lease file")
        self.assertTrue(set(first) <= set(stored))
        self.assertEqual(len(stored), len({lease["mac"] for lease in stored.values()}))
        pxed = start_pxed(lab, config, workdir / "pxed-3.log")
        self.assertTrue(set(first) | during <= set(self.leases_api(lab)))
        self.assertIsNone(pxed.poll(), tail(workdir / "pxed-3.log"))

    def test_address_answering_ping_not_offered(self) -> None:
        """
        The range is the relay host's own address, which answers pings,
        and one free address.  The first client gets the free one; the
        next one's only candidate is probed, answers, and is not offered:
        that client gets nothing (the pool is full) rather than a twin.
        """
        lab, workdir, config = self.lab(
            f'  ranges: {{"{SUBNET}": "{RELAY}-10.77.0.3"}}\n  ping: true\n')
        start_pxed(lab, config, workdir / "pxed.log")
        result = subprocess.run(perfdhcp_argv(lab, 4, rate=2), capture_output=True,
                                text=True, timeout=120)
        self.assertEqual(acked(result.stdout), ["10.77.0.3"], result.stdout[:3000])
        log = (workdir / "pxed.log").read_text()
        self.assertIn(f"{RELAY} answers a ping but has no lease", log)
        self.assertNotIn(f"OFFER {RELAY}", log)
