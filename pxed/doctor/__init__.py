# -*- test-case-name: tests.test_doctor -*-
"""
C{pxed doctor}: why a machine would not boot, found from the pxed host.

When a machine does not boot, the cause is usually outside pxed: another
ProxyDHCP or DHCP server handing out other boot files, a second DHCP
server beside pxed as the LAN's (C{dhcp.mode: full}), no DHCP server at
all, a port taken by another program, an unreadable file, an HTTP server
that does not answer.  The doctor broadcasts a DISCOVER as BIOS and UEFI
PXE firmware and a UEFI HTTP Boot client would, lists every server that
answers, checks pxed's ports, files, TFTP, HTTP and shared database, and
says which finding breaks which kind of boot.
Its exit status is 1 when something would.

What it cannot see from the host: a firewall between the clients and the
host, and switch features (DHCP snooping) that drop offers; for those, run
it once from a machine on the clients' LAN, or capture there.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from pxed.config import Config
from pxed.doctor.checks import (
    BIOS,
    EVERY_BOOT,
    HTTP_BOOT,
    IPXE,
    UEFI,
    Finding,
    arm64_findings,
    file_findings,
    is_pxed,
    port_findings,
    state_findings,
)
from pxed.doctor.probe import (
    ARCHES,
    Answer,
    bootserver_probe,
    collect_offers,
    http_probe,
    tftp_probe,
)
from pxed.machine import Machine, architecture
from pxed.policy import BootRequest
from pxed.ports import port_holders

__all__ = ["diagnose", "Finding"]

_PXE_BOOTS = {0: (BIOS,), 7: (UEFI,), 16: (HTTP_BOOT,)}
#: The program each PXE client gets by TFTP.
_LOADER = {0: "x86-bios", 7: "x64-uefi"}


def _program(config: Config, arch: int) -> str | None:
    """
    The bootloaders entry a client of C{arch} gets: HTTP Boot's own, else
    its PXE twin's (as pxed serves it).
    """
    if arch == 16:
        return next((slug for slug in ("x64-uefi-http", "x64-uefi")
                     if slug in config.bootloaders), None)
    slug = _LOADER[arch]
    return slug if slug in config.bootloaders else None


def local_addresses() -> dict[str, list[str]]:
    """
    This host's IPv4 addresses by interface (from C{ip -j addr}).
    """
    result = subprocess.run(["ip", "-j", "-4", "addr", "show"], capture_output=True, text=True,
                            timeout=10, check=False)
    addresses: dict[str, list[str]] = {}
    for link in json.loads(result.stdout or "[]"):
        for info in link.get("addr_info", []):
            addresses.setdefault(link["ifname"], []).append(info["local"])
    return addresses


def _interface_mac(interface: str) -> bytes:
    text = Path(f"/sys/class/net/{interface}/address").read_text().strip()
    return bytes.fromhex(text.replace(":", ""))


def pick_interface(config: Config, addresses: dict[str, list[str]]) -> str | None:
    if config.server.interface is not None:
        return config.server.interface
    for name, found in addresses.items():
        if config.server.address in found:
            return name
    if config.server.interfaces:
        return config.server.interfaces[0]
    return None


def _expects_answer(config: Config, mac: str, arch: int) -> bool | None:
    """
    Whether pxed's policy boots C{mac} as C{arch} (C{None}: it asks an
    HTTP API, which the doctor does not).
    """
    if _program(config, arch) is None:
        return False
    if config.policy.api is not None:
        return None
    from pxed.service import makePolicy

    request = BootRequest(Machine(mac, architecture(arch), http_boot=arch == 16), "proxydhcp")
    answers: list[object] = []
    makePolicy(config).boot_spec(request).addBoth(answers.append)
    action = answers[0] if answers else None
    return action is not None and not getattr(action, "silent", False)


def _describe(answer: Answer) -> str:
    kind = "ProxyDHCP" if answer.proxy else f"DHCP (offers {answer.offers_address})"
    if answer.boot_file:
        what = f"boot file {answer.boot_file}"
        if answer.next_server:
            what += f" from {answer.next_server}"
    elif answer.pxe_options:
        what = "PXE options (a menu or boot servers), no boot file"
    else:
        what = "no boot file"
    return f"{kind}, {what}"


def offer_findings(config: Config, answers: list[Answer], mac: str,
                   pxed_running: bool) -> Iterator[Finding]:
    """
    What the servers that answered mean for each kind of boot.  In proxy
    mode another server offering addresses is the LAN's DHCP server, which
    pxed needs; with C{dhcp.mode: full} pxed is that server, so any other
    one offering addresses is a second DHCP server on the LAN.
    """
    full = config.dhcp.full
    for arch, name in ARCHES.items():
        mine = [a for a in answers if a.arch == arch and a.this_host and pxed_running]
        others = [a for a in answers if a.arch == arch and a not in mine]
        expected = _expects_answer(config, mac, arch)
        topic = f"{name} offers"
        if mine:
            yield Finding("ok", topic, f"this pxed answers: {_describe(mine[0])}")
        elif expected:
            yield Finding("fail", topic, f"this pxed did not answer a {name} DISCOVER from {mac}, "
                          "though its policy boots it", _PXE_BOOTS[arch])
        elif expected is None:
            yield Finding("warn", topic, "this pxed did not answer; its policy asks an HTTP "
                          "API, so the doctor cannot tell whether it should")
        else:
            yield Finding("info", topic, f"this pxed does not boot {mac} as {name} (its policy "
                          "or bootloaders), so its silence is right; --mac picks a machine")
        for answer in others:
            competing = answer.proxy or answer.boot_file or answer.pxe_client
            who = f"{answer.source}" + (" (this host, not pxed)" if answer.this_host else "")
            if full and answer.offers_address:
                # Firmware takes the first offer, whichever server sent it.
                yield Finding("fail", topic, f"another DHCP server offers addresses: {who}: "
                              f"{_describe(answer)}; pxed is this LAN's DHCP server "
                              "(dhcp.mode: full), so clients take an address from either and "
                              "pxed's boot answer may lose to this offer: stop that server "
                              "or run pxed in proxy mode", _PXE_BOOTS[arch])
            elif competing:
                yield Finding("fail", topic, f"another boot server answers: {who}: "
                              f"{_describe(answer)}; firmware takes one of the offers, so "
                              "machines boot its file or pxed's at random", _PXE_BOOTS[arch])
            else:
                yield Finding("ok", topic, f"{who}: {_describe(answer)} (the LAN's DHCP server)")
        if not any(a.offers_address for a in answers if a.arch == arch):
            why = ("pxed is the LAN's DHCP server (dhcp.mode: full) and offered none" if full
                   else "pxed only adds boot options, the firmware still needs an address "
                        "from the LAN's DHCP server")
            yield Finding("fail", topic, f"no DHCP server offered an address: {why}",
                          _PXE_BOOTS[arch])


def service_findings(config: Config, address: str | None, mac: bytes = bytes(6)
                     ) -> Iterator[Finding]:
    ports = config.server.ports
    if address is None:
        yield Finding("fail", "address", "no address to advertise (set server.address or "
                      "server.interface)", EVERY_BOOT)
        return
    mac_text = ":".join(f"{b:02x}" for b in mac)
    if ports.pxe != 0 and _expects_answer(config, mac_text, 7):
        # EDK2 takes its boot file from here, not from the offer.
        boot_file, problem = bootserver_probe(address, ports.pxe, mac)
        topic = f"boot server {address}:{ports.pxe}"
        if problem is None:
            yield Finding("ok", topic, f"answers UEFI firmware with {boot_file or 'no file'}")
        else:
            yield Finding("fail", topic, problem, _PXE_BOOTS[7])
    for arch, slug in _LOADER.items():
        path = config.bootloaders.get(slug)
        if path is None or ports.tftp == 0:
            continue
        problem = tftp_probe(address, ports.tftp, path.name)
        topic = f"TFTP {path.name}"
        if problem is None:
            yield Finding("ok", topic, f"{address}:{ports.tftp} sends it")
        else:
            yield Finding("fail", topic, problem, _PXE_BOOTS[arch])
    if ports.http == 0:
        return
    base = f"http://{address}" if ports.http == 80 else f"http://{address}:{ports.http}"
    problem = http_probe(f"{base}/_/booting")
    if problem is None:
        yield Finding("ok", "HTTP", f"{base}/ answers")
    else:
        yield Finding("fail", "HTTP", f"{base}/: {problem}", (HTTP_BOOT, IPXE))


def diagnose(config: Config, out: TextIO, interface: str | None = None,
             mac: str | None = None, wait: float = 3.0) -> int:
    """
    Run every check, print the report to C{out}.

    @return: the exit status: 1 if a finding would break a kind of boot.
    """
    addresses = local_addresses()
    interface = interface or pick_interface(config, addresses)
    if interface is None or interface not in addresses:
        print("pxed doctor: name the interface the clients are on (--interface NAME): "
              + (f"{interface} has no IPv4 address" if interface else "the configuration "
                 "names none"), file=out)
        return 1
    address = config.server.address or addresses[interface][0]
    raw_mac = bytes.fromhex(mac.replace(":", "")) if mac else _interface_mac(interface)
    mac_text = ":".join(f"{b:02x}" for b in raw_mac)
    print(f"pxed doctor: {config.source}, on {interface} ({address}), asking as {mac_text}",
          file=out)
    pxed_running = any(is_pxed(h) for h in port_holders("udp", config.server.ports.dhcp))
    mine = {a for found in addresses.values() for a in found}
    answers = collect_offers(interface, raw_mac, wait) if config.server.ports.dhcp == 67 else []
    for answer in answers:
        answer.this_host = answer.source in mine or answer.server_id in mine
    print("\nservers answering a DISCOVER (PXE firmware, UEFI HTTP Boot):", file=out)
    for answer in sorted(answers, key=lambda a: (a.arch, a.source)):
        who = "this pxed" if answer.this_host and pxed_running else (
            "this host" if answer.this_host else "")
        print(f"  {ARCHES[answer.arch]:<5} {answer.source:<15} {who:<9} {_describe(answer)}",
              file=out)
    if not answers:
        print("  (none)", file=out)
    findings = [*port_findings(config), *file_findings(config), *arm64_findings(config),
                *state_findings(config),
                *offer_findings(config, answers, mac_text, pxed_running),
                *service_findings(config, address, raw_mac)]
    print("\nchecks:", file=out)
    broken: list[str] = []
    for finding in findings:
        print(f"  {finding.level.upper():<5} {finding.topic}: {finding.message}", file=out)
        if finding.level == "fail" and finding.breaks:
            print(f"        breaks: {', '.join(finding.breaks)}", file=out)
            broken += [b for b in finding.breaks if b not in broken]
    failures = sum(1 for f in findings if f.level == "fail")
    if failures:
        print(f"\n{failures} problem(s); would break: {', '.join(broken) or 'nothing named'}",
              file=out)
        return 1
    print("\nno problems found", file=out)
    return 0
