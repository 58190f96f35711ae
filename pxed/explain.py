# -*- test-case-name: tests.test_explain -*-
"""
C{pxed explain}: what pxed would answer to each DHCP packet of a capture
(or one packet given in hex), without opening a socket.

Users debug "my machine never got an answer" with it: for each packet it
prints how the client was classified, which policy entry matched, and the
exact reply, field by field and as bytes, or why there is none.  It runs
the very pipeline the protocols run (L{pxed.dhcp.pipeline}) and a
responder built as the server builds it (L{pxed.runtime.build_parts}: the
same programs, menu and signing key), so its answer is the server's
answer, signed script URLs included.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dpkt  # type: ignore[import-untyped]
from twisted.internet.defer import ensureDeferred
from twisted.python.failure import Failure

from pxed.config import Config
from pxed.dhcp.exchange import STAGES, Stage
from pxed.dhcp.packet import DHCPPacket, MessageType, Option, decode
from pxed.dhcp.pipeline import Arrival, Dropped, receive, respond
from pxed.dhcp.responder import BootResponder
from pxed.explainparts import Datagram, Explanation, Recording, entry_name, server_responder
from pxed.net import PacketInfo

__all__ = ["Datagram", "Explanation", "read_capture", "explain", "render", "CaptureError"]

#: Where the address is unknown without a socket: the capture's packets
#: arrived on an interface whose address we cannot see.
UNKNOWN_ADDRESS = "the receiving interface's address (pass --address to choose one)"

_OPTION_NAMES = {
    1: "subnet mask",
    3: "router",
    6: "DNS servers",
    51: "lease time",
    56: "message",
    58: "renewal time",
    59: "rebinding time",
    Option.REQUESTED_ADDRESS: "requested address",
    Option.CLIENT_ID: "client identifier",
    Option.VENDOR_SPECIFIC: "vendor specific",
    Option.MESSAGE_TYPE: "message type",
    Option.SERVER_ID: "server identifier",
    Option.VENDOR_CLASS: "vendor class",
    Option.BOOTFILE_NAME: "bootfile name",
    Option.USER_CLASS: "user class",
    Option.CLIENT_ARCH: "client architecture",
    Option.CLIENT_NDI: "client NDI",
    Option.CLIENT_UUID: "client machine GUID",
    Option.RELAY_AGENT_INFORMATION: "relay agent information",
    Option.IPXE_ENCAPSULATED: "iPXE options",
}


class CaptureError(Exception):
    """
    The capture cannot be read.
    """


def read_capture(path: Path) -> list[Datagram]:
    """
    The IPv4 UDP datagrams of a pcap or pcapng file (Ethernet or Linux
    cooked captures), in capture order.
    """
    try:
        with open(path, "rb") as f:
            reader = dpkt.pcap.UniversalReader(f)
            linktype = reader.datalink()
            frames = [buf for _ts, buf in reader]
    except OSError as e:
        raise CaptureError(f"{path}: {e.strerror or e}") from None
    except (ValueError, dpkt.dpkt.Error) as e:
        raise CaptureError(f"{path}: not a capture pxed can read ({e})") from None
    out = []
    for number, frame in enumerate(frames, start=1):
        found = _udp(linktype, frame)
        if found is not None:
            src, dst, payload = found
            out.append(Datagram(number, src, dst, payload))
    return out


def _udp(linktype: int, frame: bytes) -> tuple[tuple[str, int], tuple[str, int], bytes] | None:
    try:
        if linktype == dpkt.pcap.DLT_LINUX_SLL:
            ip = dpkt.sll.SLL(frame).data
        elif linktype == dpkt.pcap.DLT_RAW or linktype == 101:
            ip = dpkt.ip.IP(frame)
        else:
            ip = dpkt.ethernet.Ethernet(frame).data
    except (dpkt.dpkt.Error, ValueError):
        return None
    if not isinstance(ip, dpkt.ip.IP) or not isinstance(ip.data, dpkt.udp.UDP):
        return None
    udp = ip.data
    return ((socket.inet_ntoa(ip.src), udp.sport), (socket.inet_ntoa(ip.dst), udp.dport),
            bytes(udp.data))


def explain(
    datagrams: list[Datagram],
    config: Config,
    address: str | None = None,
    interface: str | None = None,
) -> Iterator[Explanation]:
    """
    Explain each datagram in turn, as pxed configured by C{config} would
    handle it.

    @param address: the address pxed's receiving interface would have;
        used where the configuration leaves the advertised address to it.
    @param interface: the name of the interface the packets arrived on,
        for C{server.interfaces} and for policies that match on it.
    """
    ports = {config.server.ports.dhcp: STAGES["proxydhcp"],
             config.server.ports.pxe: STAGES["bootserver"]}
    responder, policy, notes = server_responder(config)
    full = None
    if config.dhcp.full:
        # pxed as the DHCP server: port 67 runs that protocol, statefully.
        from pxed.explainfull import FullModeExplainer

        full = FullModeExplainer(config, responder, policy, address, interface)
    for datagram in datagrams:
        if full is not None and datagram.dst[1] == config.server.ports.dhcp:
            yield full.explain(datagram, Explanation(datagram, "dhcp"))
            continue
        stage = ports.get(datagram.dst[1])
        if stage is None:
            if datagram.dst[1] in (67, 68, 4011) or datagram.src[1] in (67, 4011):
                yield _not_for_us(datagram)
            continue
        result = _explain_one(datagram, stage, config, address, interface, responder, policy)
        if result.reply is not None and result.answer is not None and \
                result.answer.kind == "ipxe-script":
            result.notes.extend(notes)
        yield result


def _not_for_us(datagram: Datagram) -> Explanation:
    result = Explanation(datagram, None)
    try:
        result.packet = decode(datagram.payload)
    except ValueError as e:
        result.ignored = f"malformed: {e}"
        return result
    result.ignored = f"sent to port {datagram.dst[1]}, where pxed does not listen"
    return result


def _explain_one(datagram: Datagram, stage: Stage, config: Config, address: str | None,
                 interface: str | None, responder: BootResponder,
                 policy: Recording) -> Explanation:
    result = Explanation(datagram, stage.name)
    local = address
    if local is None and datagram.dst[0] not in ("255.255.255.255", "0.0.0.0"):
        local = datagram.dst[0]  # a unicast request names the address it reached
    # What the socket's packet info would say: the address the request was
    # sent to, and the receiving interface's (only where it is known).
    info = PacketInfo(0, local or "0.0.0.0", datagram.dst[0])
    server = config.server
    # As the server: server.address, else server.interface's address here.
    advertised = server.advertised()
    try:
        request = receive(Arrival(datagram.payload, datagram.src, info, interface), stage,
                          address=advertised, relays=server.relays,
                          interfaces=frozenset(server.interfaces))
    except Dropped as e:
        result.packet, result.machine = e.packet, e.machine
        if e.reason == "interface":
            where = interface or "an unnamed interface (pass --interface)"
            result.ignored = (f"arrived on {where}, and server.interfaces is "
                              f"{', '.join(server.interfaces)}")
        elif e.reason == "no-address":
            result.ignored = f"no address to advertise: pxed would use {UNKNOWN_ADDRESS}"
        else:
            result.ignored = e.why
        return result
    result.packet, result.machine, result.server = request.packet, request.machine, request.server
    machine = request.machine
    policy.decided.clear()
    outcome: list[Any] = []
    ensureDeferred(respond(request, stage, responder)).addBoth(outcome.append)
    if not outcome:
        result.ignored = "the policy did not answer at once (a slow policy: try the server)"
        return result
    reply = outcome[0]
    if isinstance(reply, Failure):
        result.ignored = f"the policy failed: {reply.getErrorMessage()}"
        return result
    result.entry = entry_name(config, machine, policy.decided[0] if policy.decided else None)
    if reply is None:
        if policy.decided and policy.decided[0] is not None:
            result.ignored = (f"no network bootstrap program for architecture "
                              f"{machine.arch.code} ({machine.arch.slug}): add "
                              f"bootloaders.{machine.arch.slug}")
        else:
            result.ignored = "the policy has no boot for this machine"
        return result
    result.answer = reply.answer
    result.reply = reply.packet
    result.reply_bytes = reply.data
    result.destination = reply.destination
    return result


def _show(code: int, value: bytes) -> str:
    if code == Option.MESSAGE_TYPE and len(value) == 1:
        return MessageType.NAMES.get(value[0], str(value[0]))
    if code in (Option.SERVER_ID, 1, 3, Option.REQUESTED_ADDRESS) and len(value) == 4:
        return socket.inet_ntoa(value)
    if code == 6 and value and len(value) % 4 == 0:
        return ", ".join(socket.inet_ntoa(value[i:i + 4]) for i in range(0, len(value), 4))
    if code in (51, 58, 59) and len(value) == 4:
        return f"{int.from_bytes(value, 'big')} s"
    if value and all(32 <= b < 127 for b in value):
        return f'"{value.decode("ascii")}"'
    return value.hex(" ")


def _describe(packet: DHCPPacket) -> str:
    kind = packet.message_type
    name = MessageType.NAMES.get(kind, str(kind)) if kind is not None else "BOOTP"
    direction = "from" if packet.op == 1 else "for"
    return f"DHCP{name} xid 0x{packet.xid:08x} {direction} {packet.mac}"


def render(result: Explanation) -> str:
    """
    The human-readable report of one explanation.
    """
    d = result.datagram
    head = (f"frame {d.frame}: {d.src[0]}:{d.src[1]} -> {d.dst[0]}:{d.dst[1]}"
            f"{f' ({result.stage})' if result.stage else ''}")
    if result.packet is not None:
        head += f", {_describe(result.packet)}"
        if result.packet.relayed:
            head += f" via relay {result.packet.giaddr}"
    lines = [head]
    machine = result.machine
    if machine is not None:
        kind = ("iPXE" if machine.ipxe else "UEFI HTTP Boot" if machine.http_boot
                else f"{machine.firmware.value.upper()} PXE firmware")
        lines.append(f"  client: {kind}, architecture {machine.arch.code} "
                     f"({machine.arch.description}, {machine.arch.slug}), "
                     f"GUID {machine.uuid or '-'}")
    if result.entry is not None:
        lines.append(f"  policy: {result.entry}")
    for note in result.notes:
        lines.append(f"  note: {note}")
    if result.ignored is not None:
        lines.append(f"  no reply: {result.ignored}")
        return "\n".join(lines)
    reply = result.reply
    assert reply is not None and result.destination is not None
    how = ("broadcast out of the receiving interface"
           if result.destination[0] == "255.255.255.255"
           else "unicast to the relay"
           if reply.relayed and result.stage in ("proxydhcp", "dhcp")
           else "unicast to the requester")
    lines.append(f"  reply: {_describe(reply)} to {result.destination[0]}:"
                 f"{result.destination[1]} ({how})")
    lines.append(f"    yiaddr {reply.yiaddr}, siaddr {reply.siaddr}, giaddr {reply.giaddr}, "
                 f"flags 0x{reply.flags:04x}, file \"{reply.file.decode('utf-8', 'replace')}\"")
    for code, value in reply.options.items():
        name = _OPTION_NAMES.get(code, "")
        lines.append(f"    option {code}{f' ({name})' if name else ''}: {_show(code, value)}")
    lines.append(f"    {len(result.reply_bytes)} bytes: {result.reply_bytes.hex()}")
    return "\n".join(lines)
