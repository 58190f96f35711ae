# -*- test-case-name: tests.test_classify -*-
"""
Decide whether a DHCP request comes from a network-booting client, and
which kind.

A ProxyDHCP server shares the LAN with the real DHCP server, so the first
rule is to stay silent for everything that is not network-booting: that is
what keeps pxed from ever disturbing ordinary DHCP.
"""

from __future__ import annotations

from pxed.clienttext import client_word
from pxed.dhcp.packet import DHCPPacket, Option
from pxed.machine import Machine, architecture

__all__ = ["classify", "NotNetworkBooting"]


class NotNetworkBooting(Exception):
    """
    The request is not from a PXE, iPXE or HTTP Boot client; the reason is
    the message, for the debug log.
    """


def _format_uuid(raw: bytes) -> str | None:
    """
    Option 97 is a type byte (0) followed by a 16-byte GUID in the SMBIOS
    (little-endian first three fields) layout.
    """
    if len(raw) != 17 or raw[0] != 0:
        return None
    # What str(uuid.UUID(bytes_le=...)) gives, at a fifth of the cost: this
    # runs for every request of a boot storm.
    h = (raw[4:0:-1] + raw[6:4:-1] + raw[8:6:-1] + raw[9:]).hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _user_class(raw: bytes | None) -> str | None:
    """
    iPXE sends the bare string C{iPXE}; RFC 3004 clients send
    length-prefixed items.  Accept both, returning the first class.
    """
    if not raw:
        return None
    if raw[0] < len(raw) and not raw[:1].isalnum():
        raw = raw[1:1 + raw[0]]
    # Into scripts and rules only as one safe word (pxed.clienttext).
    return client_word(raw.decode("ascii", "replace"))


def classify(packet: DHCPPacket) -> Machine:
    """
    Classify a DHCP request.

    @raise NotNetworkBooting: for anything that is not a network boot
        client (no C{PXEClient}/C{HTTPClient} vendor class), so the caller
        stays silent.
    """
    vendor = packet.options.get(Option.VENDOR_CLASS, b"")
    http_boot = vendor.startswith(b"HTTPClient")
    if not (vendor.startswith(b"PXEClient") or http_boot):
        raise NotNetworkBooting(f"vendor class {vendor[:32]!r} is not a network boot client")
    if packet.htype != 1 or packet.hlen != 6:
        raise NotNetworkBooting(f"hardware type {packet.htype}/{packet.hlen} is not Ethernet")
    raw_arch = packet.options.get(Option.CLIENT_ARCH)
    if raw_arch is not None and len(raw_arch) >= 2:
        # Some clients list several architectures; the first is the one running.
        code = int.from_bytes(raw_arch[:2], "big")
    else:
        code = _arch_from_vendor_class(vendor)
    user_class = _user_class(packet.options.get(Option.USER_CLASS))
    return Machine(
        mac=packet.mac,
        arch=architecture(code),
        uuid=_format_uuid(packet.options.get(Option.CLIENT_UUID, b"")),
        ipxe=user_class == "iPXE" or Option.IPXE_ENCAPSULATED in packet.options,
        http_boot=http_boot,
        user_class=user_class,
    )


def _arch_from_vendor_class(vendor: bytes) -> int:
    """
    Fall back to the C{Arch:xxxxx} field of the vendor class when option 93
    is missing (some old ROMs); assume x86 BIOS when both are absent, which
    is what a PXE 2.0 ROM without either is.
    """
    parts = vendor.split(b":")
    try:
        index = parts.index(b"Arch")
        return int(parts[index + 1])
    except (ValueError, IndexError):
        return 0
