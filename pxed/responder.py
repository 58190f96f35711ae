# -*- test-case-name: tests.test_responder -*-
"""
The decision at the heart of pxed: given a classified machine, what does
it get told?

Kept apart from the sockets so the same logic answers on port 67 and port
4011, and so tests (and a future "explain" command) can ask it directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlencode

from twisted.logger import Logger

from pxed.dhcp.reply import BootAnswer
from pxed.machine import Firmware, Machine
from pxed.policy import IBootPolicy
from pxed.state import IBootLog

__all__ = ["BootResponder", "http_base"]

log = Logger()


def http_base(server: str, port: int) -> str:
    """
    The base URL of pxed's HTTP server as a client reaches it.
    """
    return f"http://{server}" if port == 80 else f"http://{server}:{port}"


def script_url(base: str, machine: Machine) -> str:
    query = {"mac": machine.mac, "arch": str(machine.arch.code)}
    if machine.uuid:
        query["uuid"] = machine.uuid
    return f"{base}/_/ipxe?{urlencode(query, safe=':')}"


class BootResponder:
    """
    Turns a machine into a L{BootAnswer}, or C{None} for silence.

    @ivar bootloaders: architecture slug to the network bootstrap program
        served by TFTP under its file name.
    """

    def __init__(
        self,
        policy: IBootPolicy,
        bootloaders: Mapping[str, Path],
        http_port: int,
        boot_log: IBootLog,
    ) -> None:
        self.policy = policy
        self.bootloaders = dict(bootloaders)
        self.http_port = http_port
        self.boot_log = boot_log

    async def answer(self, machine: Machine, server: str, stage: str) -> BootAnswer | None:
        """
        Decide what C{machine} is told by the server at C{server}.

        @param stage: C{"proxydhcp"} (port 67) or C{"bootserver"} (4011),
            recorded in the boot log.
        """
        fields = dict(mac=machine.mac, arch=machine.arch.slug, code=machine.arch.code)
        spec = await self.policy.boot_spec(machine)
        if spec is None:
            log.debug("{mac}: no boot entry for this machine; staying silent", **fields)
            return None
        if machine.http_boot:
            log.info("{mac}: UEFI HTTP Boot ({arch}) is not served yet; staying silent", **fields)
            return None
        if machine.ipxe:
            bootfile = script_url(http_base(server, self.http_port), machine)
            kind = "ipxe-script"
        else:
            program = self.bootloaders.get(machine.arch.slug)
            if program is None:
                log.info(
                    "{mac}: no network bootstrap program configured for architecture "
                    "{code} ({arch}); staying silent",
                    **fields,
                )
                return None
            bootfile = program.name
            kind = "bootloader"
        self.boot_log.record(machine.mac, stage, arch=machine.arch.slug, bootfile=bootfile)
        log.info("{mac}: {stage} {arch} -> {bootfile}", stage=stage, bootfile=bootfile,
                 kind=kind, **fields)
        return BootAnswer(
            server=server,
            bootfile=bootfile,
            discovery_control=machine.firmware is Firmware.BIOS,
        )
