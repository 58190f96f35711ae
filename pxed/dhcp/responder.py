# -*- test-case-name: tests.test_responder -*-
"""
The decision at the heart of pxed: given a classified machine, what does
it get told?

Kept apart from the sockets so the same logic answers on port 67 and port
4011, and so tests and C{pxed explain} can ask it directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote, urlencode

from twisted.logger import Logger

from pxed.config.server import served_name
from pxed.dhcp.menu import PXEMenu
from pxed.dhcp.reply import BootAnswer
from pxed.grub.image import GrubImageCache
from pxed.machine import Firmware, Machine
from pxed.parts import BootParts, LiveParts, part
from pxed.policy import BootRequest, IBootPolicy
from pxed.policy.actions import firmware_name
from pxed.policy.cache import ICacheablePolicy
from pxed.policy.request import sign_context
from pxed.signing import Signer
from pxed.state import IBootLog

__all__ = ["BootResponder", "BUILT_FOR", "http_base", "program_url"]

#: The kinds of answer that are the same for every machine of a kind asking
#: the same way (an iPXE script URL names the machine; a GRUB image of
#: pxed's own may still be being built).
_KEEPABLE = frozenset({"bootloader", "chain", "http-boot"})

#: The architectures that get pxed's own GRUB image (L{pxed.grub.image})
#: when C{bootloaders} names no program for them.
BUILT_FOR = frozenset({"arm64-uefi", "arm64-uefi-http"})

log = Logger()


def http_base(server: str, port: int) -> str:
    """
    The base URL of pxed's HTTP server as a client reaches it.
    """
    return f"http://{server}" if port == 80 else f"http://{server}:{port}"


def script_url(base: str, machine: Machine, context: str | None = None) -> str:
    query = {"mac": machine.mac, "arch": str(machine.arch.code)}
    if machine.uuid:
        query["uuid"] = machine.uuid
    if context:
        query["ctx"] = context
    return f"{base}/_/ipxe?{urlencode(query, safe=':')}"


def program_url(base: str, program: Path | str) -> str:
    """
    Where an HTTP Boot client fetches a network bootstrap program: the
    C{/_/boot/} route of pxed's HTTP server, by file name (the same names
    TFTP serves).
    """
    name = program if isinstance(program, str) else served_name(program)
    return f"{base}/_/boot/{quote(name)}"


def _program(bootloaders: Mapping[str, Path], machine: Machine) -> Path | None:
    program = bootloaders.get(machine.arch.slug)
    if program is None and machine.arch.pxe_slug is not None:
        program = bootloaders.get(machine.arch.pxe_slug)
    return program


class BootResponder:
    """
    Turns a machine into a L{BootAnswer}, or C{None} for silence.

    It reads the policy, the boot programs, the menu and the signer from
    C{parts.current} on every request (see L{pxed.parts}), so a reload
    reaches it without touching it.  Built without C{parts}, it makes a
    fixed set from the arguments (tests, small embedders).

    @ivar bootloaders: architecture slug to the network bootstrap program
        served by TFTP under its file name.
    @ivar signer: signs the network context carried in script URLs (see
        L{pxed.policy.request.sign_context}); without it, rules that match
        on the network cannot apply to the script.
    @ivar images: builds the GRUB image of the architectures in
        L{BUILT_FOR} that C{bootloaders} leaves without a program.
    """

    policy = part[IBootPolicy]()
    bootloaders = part[Mapping[str, Path]]()
    menu = part[PXEMenu | None]()
    signer = part[Signer | None]()
    images = part[GrubImageCache | None]()

    def __init__(
        self,
        policy: IBootPolicy | None = None,
        bootloaders: Mapping[str, Path] | None = None,
        http_port: int = 80,
        boot_log: IBootLog | None = None,
        menu: PXEMenu | None = None,
        signer: Signer | None = None,
        images: GrubImageCache | None = None,
        *,
        parts: LiveParts | None = None,
    ) -> None:
        if parts is None:
            if policy is None:
                raise TypeError("BootResponder needs a policy, or parts")
            parts = LiveParts(BootParts(policy=policy, bootloaders=dict(bootloaders or {}),
                                        menu=menu, signer=signer, images=images))
        elif (policy is not None or bootloaders or menu is not None or signer is not None
              or images is not None):
            raise TypeError("give BootResponder either parts or a policy, not both")
        if boot_log is None:
            raise TypeError("BootResponder needs a boot log")
        self.parts = parts
        self.http_port = http_port
        self.boot_log = boot_log
        # Architecture codes already reported as unserved: the operator
        # needs to hear once that a kind of machine is being turned away,
        # not once per retransmitted DISCOVER.
        self._unserved: set[int] = set()

    def program(self, machine: Machine) -> Path | None:
        """
        The network bootstrap program for C{machine}'s architecture: the
        one configured for its code, else (HTTP Boot codes) the one its
        PXE twin runs.
        """
        return _program(self.bootloaders, machine)

    def program_name(self, machine: Machine, server: str,
                     parts: BootParts | None = None) -> str | None:
        """
        The file name (TFTP, and C{/_/boot/} over HTTP) of C{machine}'s
        program when pxed answers it from C{server}: the configured one,
        else the GRUB image pxed builds for that address (ARM64), whose
        build starts now if it is not on disk yet.
        """
        parts = parts if parts is not None else self.parts.current
        program = _program(parts.bootloaders, machine)
        if program is not None:
            return served_name(program)
        images = parts.images
        if images is None or machine.arch.slug not in BUILT_FOR or images.problem() is not None:
            return None
        images.prepare(server)
        return images.name(server)

    def keepable(self, parts: BootParts, machine: Machine, server: str, stage: str,
                 answer: BootAnswer, *, interface: str | None = None,
                 relay: str | None = None) -> bool:
        """
        Whether C{answer}, just given to C{machine} with C{parts}, is what
        any machine of its kind asking the same way is told, as far as the
        policy's L{ICacheablePolicy.answer_key} says: the ProxyDHCP fast
        path (L{pxed.dhcp.fastpath}) may then keep it.
        """
        if answer.kind not in _KEEPABLE or machine.arch.slug in BUILT_FOR:
            return False
        policy = parts.policy
        if not ICacheablePolicy.providedBy(policy):
            return False
        request = BootRequest(machine, stage, interface=interface, relay=relay,
                              local_address=server)
        return not policy.consults_state(request)

    def _unserved_architecture(self, machine: Machine) -> None:
        code = machine.arch.code
        fields = dict(mac=machine.mac, arch=machine.arch.slug, code=code,
                      description=machine.arch.description)
        if code in self._unserved:
            log.debug("{mac}: no program for architecture {code} ({arch}); staying silent",
                      **fields)
            return
        self._unserved.add(code)
        twin = machine.arch.pxe_slug
        images = self.images if machine.arch.slug in BUILT_FOR else None
        problem = images.problem() if images is not None else None
        log.warn(
            "{mac}: ignoring clients of architecture {code} ({description}): no network "
            "bootstrap program configured for it (add bootloaders.{arch}{twin} to the "
            "configuration){problem}",
            twin=f", or bootloaders.{twin} for both" if twin else "",
            problem=f"; {problem}" if problem else "",
            **fields,
        )

    async def answer(
        self, machine: Machine, server: str, stage: str, *,
        interface: str | None = None, relay: str | None = None, record: bool = True,
    ) -> BootAnswer | None:
        """
        Decide what C{machine} is told by the server at C{server}.

        @param stage: C{"proxydhcp"} (port 67), C{"bootserver"} (4011), or
            C{"dhcp"} (pxed as the DHCP server, L{pxed.dhcp.server}),
            recorded in the boot log.
        @param interface: the name of the interface the request came in on.
        @param relay: the relay's address (giaddr), if it was relayed.
        @param record: write the answer to the boot log (pxed as the DHCP
            server records its ACK, not the offer before it).
        """
        request = BootRequest(machine, stage, interface=interface, relay=relay,
                              local_address=server)
        # One set of parts for the whole answer, even if a reload swaps
        # them while the policy is deciding.
        parts = self.parts.current
        spec = await parts.policy.boot_spec(request)
        if spec is None:
            log.debug("{mac}: no boot entry for this machine; staying silent", mac=machine.mac,
                      arch=machine.arch.slug, code=machine.arch.code)
            return None
        vendor_class = b"PXEClient"
        menu = None
        if machine.ipxe:
            signer = parts.signer
            context = sign_context(signer, request) if signer is not None else None
            bootfile = script_url(http_base(server, self.http_port), machine, context)
            kind = "ipxe-script"
        elif (chained := spec.firmware_file()) is not None and not machine.http_boot:
            # The policy chains PXE firmware straight into another program
            # (GRUB, shim ...), which TFTP serves under a name of its own.
            bootfile = firmware_name(chained)
            kind = "chain"
        else:
            program = self.program_name(machine, server, parts)
            if program is None:
                self._unserved_architecture(machine)
                return None
            if machine.http_boot:
                # UEFI HTTP Boot: the program's URL on pxed's HTTP server,
                # and option 60 HTTPClient, which is what makes EDK2 take
                # a proxy offer as an HTTP Boot offer.
                bootfile = program_url(http_base(server, self.http_port), program)
                vendor_class = b"HTTPClient"
                kind = "http-boot"
            else:
                bootfile = program
                kind = "bootloader"
                if stage == "proxydhcp":
                    menu = parts.menu
        if record:
            self.boot_log.record(machine.mac, stage, arch=machine.arch.slug, bootfile=bootfile,
                                 kind=kind)
        # The protocols log each answer once it is sent, within a log budget.
        return BootAnswer(
            server=server,
            bootfile=bootfile,
            discovery_control=machine.firmware is Firmware.BIOS and not machine.http_boot,
            vendor_class=vendor_class,
            menu=menu,
            kind=kind,
        )
