# -*- test-case-name: tests.test_doctor -*-
"""
What C{pxed doctor} sends and how it reads the answers: a PXE DISCOVER as
firmware broadcasts it, the offers every server on the LAN sends back, a
TFTP read that stops after its first block, an HTTP GET.

Plain blocking sockets with short, fixed timeouts: the doctor is a
command that runs once and prints, so it needs no reactor, and every wait
is bounded in time.
"""

from __future__ import annotations

import os
import select
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from pxed.dhcp.packet import (
    BOOTREPLY,
    BOOTREQUEST,
    BROADCAST_FLAG,
    DHCPPacket,
    MalformedPacket,
    MessageType,
    Option,
    decode,
    encode,
)
from pxed.net import SO_BINDTODEVICE
from pxed.tftp import packet as tftp

__all__ = ["Answer", "pxe_discover", "http_boot_discover", "bootserver_request",
           "collect_offers", "bootserver_probe", "tftp_probe", "http_probe"]

#: The clients the doctor asks as: BIOS and x64 UEFI PXE firmware, and
#: x64 UEFI HTTP Boot.
ARCHES = {0: "BIOS", 7: "UEFI", 16: "HTTP"}
#: Option 93 codes of UEFI HTTP Boot clients (vendor class HTTPClient).
HTTP_BOOT_ARCHES = frozenset({15, 16, 19})


def pxe_discover(mac: bytes, arch: int, xid: int) -> DHCPPacket:
    """
    A DISCOVER as PXE firmware sends it: option 60 C{PXEClient:Arch:...},
    the client architecture (93), network interface (94) and machine
    GUID (97), asking for the boot options.
    """
    guid = bytes(16)
    return DHCPPacket(
        op=BOOTREQUEST, xid=xid, flags=BROADCAST_FLAG, chaddr=mac.ljust(16, b"\0"),
        options={
            Option.MESSAGE_TYPE: bytes([MessageType.DISCOVER]),
            Option.MAX_MESSAGE_SIZE: (1472).to_bytes(2, "big"),
            Option.PARAMETER_REQUEST_LIST: bytes([1, 3, 6, 43, 54, 60, 66, 67, 97, 128]),
            Option.CLIENT_ARCH: arch.to_bytes(2, "big"),
            Option.CLIENT_NDI: bytes([1, 2, 1]),
            Option.CLIENT_UUID: b"\0" + guid,
            Option.VENDOR_CLASS: f"PXEClient:Arch:{arch:05d}:UNDI:002001".encode(),
        },
    )


def bootserver_request(mac: bytes, server: str, arch: int = 7, xid: int = 1,
                       client: str = "0.0.0.0") -> DHCPPacket:
    """
    The REQUEST UEFI firmware sends to a boot server's port 4011 once it
    has an address: the DISCOVER's options, and the server's address.
    """
    packet = pxe_discover(mac, arch, xid)
    packet.flags = 0
    packet.ciaddr = client
    packet.options[Option.MESSAGE_TYPE] = bytes([MessageType.REQUEST])
    packet.options[Option.SERVER_ID] = socket.inet_aton(server)
    return packet


def http_boot_discover(mac: bytes, arch: int = 16, xid: int = 1) -> DHCPPacket:
    """
    A UEFI HTTP Boot client's DISCOVER: vendor class C{HTTPClient}.
    """
    packet = pxe_discover(mac, arch, xid)
    packet.options[Option.VENDOR_CLASS] = f"HTTPClient:Arch:{arch:05d}:UNDI:003016".encode()
    return packet


def discover(mac: bytes, arch: int, xid: int) -> DHCPPacket:
    """
    The DISCOVER the client of C{arch} sends: HTTP Boot's or PXE's.
    """
    if arch in HTTP_BOOT_ARCHES:
        return http_boot_discover(mac, arch, xid)
    return pxe_discover(mac, arch, xid)


@dataclass
class Answer:
    """
    One server's offer to one DISCOVER.

    @ivar source: the address the offer came from.
    @ivar server_id: option 54, else the source.
    @ivar offers_address: C{yiaddr}: a DHCP server (a proxy offers none).
    @ivar boot_file: the C{file} field or option 67, if any.
    @ivar next_server: C{siaddr} or option 66: where TFTP goes.
    @ivar pxe_options: option 43 was sent (a PXE menu or discovery control).
    """

    arch: int
    source: str
    server_id: str
    offers_address: str | None
    boot_file: str
    next_server: str
    pxe_client: bool
    pxe_options: bool
    this_host: bool = False
    raw: bytes = field(default=b"", repr=False)

    @property
    def proxy(self) -> bool:
        return self.offers_address is None


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("ascii", "replace")


def _answer(arch: int, source: str, packet: DHCPPacket, datagram: bytes) -> Answer:
    options = packet.options
    server_id = options.get(Option.SERVER_ID)
    boot_file = _text(options.get(Option.BOOTFILE_NAME) or packet.file)
    next_server = _text(options.get(Option.TFTP_SERVER_NAME) or b"")
    if not next_server and packet.siaddr != "0.0.0.0":
        next_server = packet.siaddr
    return Answer(
        arch=arch, source=source,
        server_id=socket.inet_ntoa(server_id) if server_id and len(server_id) == 4 else source,
        offers_address=packet.yiaddr if packet.yiaddr != "0.0.0.0" else None,
        boot_file=boot_file, next_server=next_server,
        pxe_client=(options.get(Option.VENDOR_CLASS) or b"").startswith((b"PXEClient",
                                                                          b"HTTPClient")),
        pxe_options=Option.VENDOR_SPECIFIC in options, raw=datagram,
    )


def collect_offers(interface: str, mac: bytes, wait: float = 3.0,
                   ports: tuple[int, int] = (68, 67)) -> list[Answer]:
    """
    Broadcast one DISCOVER per architecture of L{ARCHES} on C{interface}
    and gather the offers that come back within C{wait} seconds.

    @param ports: the client and server ports (68 and 67 on a real LAN).
    """
    client_port, server_port = ports
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        s.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, interface.encode() + b"\0")
        s.bind(("", client_port))
        xids = {}
        for arch in ARCHES:
            xid = int.from_bytes(os.urandom(4), "big")
            xids[xid] = arch
            s.sendto(encode(discover(mac, arch, xid)), ("255.255.255.255", server_port))
        answers: list[Answer] = []
        seen: set[tuple[int, str]] = set()
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([s], [], [], left)
            if not ready:
                break
            datagram, (source, _) = s.recvfrom(4096)
            try:
                packet = decode(datagram)
            except MalformedPacket:
                continue
            asked = xids.get(packet.xid)
            if (asked is None or packet.op != BOOTREPLY or packet.chaddr[:6] != mac
                    or packet.message_type != MessageType.OFFER):
                continue  # our own DISCOVER looped back, or another client's
            if (asked, source) in seen:
                continue
            seen.add((asked, source))
            answers.append(_answer(asked, source, packet, datagram))
    return answers


def bootserver_probe(address: str, port: int, mac: bytes, arch: int = 7,
                     timeout: float = 2.0) -> tuple[str | None, str | None]:
    """
    Ask the boot server at C{address}:C{port} as UEFI firmware does.

    @return: (the boot file it names, None), or (None, what went wrong).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((address, 0))
        xid = int.from_bytes(os.urandom(4), "big")
        request = bootserver_request(mac, address, arch, xid, client=address)
        s.sendto(encode(request), (address, port))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([s], [], [], left)
            if not ready:
                break
            datagram, _ = s.recvfrom(4096)
            try:
                packet = decode(datagram)
            except MalformedPacket:
                continue
            if packet.xid == xid and packet.op == BOOTREPLY:
                return _text(packet.options.get(Option.BOOTFILE_NAME) or packet.file), None
    return None, f"no answer from {address}:{port} within {timeout:g} s"


def tftp_probe(address: str, port: int, filename: str, timeout: float = 2.0) -> str | None:
    """
    Ask for C{filename} and stop after the first block.

    @return: C{None} if the server sent data, else what went wrong.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(tftp.encode(tftp.ReadRequest(filename, "octet", {})), (address, port))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([s], [], [], left)
            if not ready:
                break
            datagram, peer = s.recvfrom(65536)
            try:
                answer = tftp.decode(datagram)
            except Exception:
                continue
            if isinstance(answer, tftp.Data):
                # Enough: tell the server to stop rather than let it time out.
                s.sendto(tftp.encode(tftp.Error(0, "pxed doctor: done")), peer)
                return None
            if isinstance(answer, tftp.Error):
                return f"TFTP error {answer.code}: {answer.message}"
        return f"no answer from {address}:{port} within {timeout:g} s"


def http_probe(url: str, timeout: float = 3.0) -> str | None:
    """
    C{None} if C{url} answers 200, else what happened.
    """
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
            response.read(4096)
            return None
    except urllib.error.HTTPError as e:
        return f"HTTP {e.code}"
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        return f"no answer ({reason})"
