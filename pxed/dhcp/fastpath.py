# -*- test-case-name: tests.test_dhcp_fastpath -*-
"""
ProxyDHCP offers already decided, found again from the datagram's bytes.

A rack powering on sends a thousand DISCOVERs that differ only in what
each machine copies into its own: transaction id, seconds, MAC, GUID (and,
behind a relay that adds it, option 82).  The first of them goes through
the whole pipeline (decode, screen, classify, ask the policy, build the
offer); L{OfferCache} keeps the answer under the rest of the datagram's
bytes (its I{shape}), with where it arrived, and every later datagram of
that shape gets the same answer without being decoded: its shape is cut
out of it by slicing, looked up, and the offer patched from the request's
own bytes (L{pxed.dhcp.offertemplate}).

Why a shape is enough: decoding walks the options reading only their code
and length bytes, and screening and classifying read only values that
stay in the shape (the GUID's type byte stays; only its 16 GUID bytes are
cut).  So two datagrams with the same shape under the same L{Layout} (the
byte ranges cut, learned from a datagram the pipeline took) decode to the
same options but for the values cut, and get the same answer from a
policy whose answers do not depend on those values.  Which of the
machine's identity the answer does depend on is the policy's
L{AnswerKey} (the MAC's class among its MAC rules, the whole GUID): that
goes into the key too.  Anything unusual (another hardware type, a
repeated option, overloaded C{file}/C{sname} fields, a GUID of another
shape) has no layout and always takes the pipeline.

Entries are kept only for answers that change with nothing but a reload
(see L{pxed.policy.cache}): the cache belongs to one set of parts and is
emptied when they are swapped, and at least every C{lifetime} seconds
(interface names and routes, which the pipeline reads, can change).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass

from pxed.dhcp.offertemplate import offer_from
from pxed.dhcp.packet import BOOTREQUEST, MAGIC_COOKIE, MalformedPacket, Option, option_spans
from pxed.dhcp.reply import BootAnswer
from pxed.machine import Machine
from pxed.net import PacketInfo
from pxed.policy.cache import AnswerKey, ICacheablePolicy

__all__ = ["Layout", "layout", "Offer", "OfferCache"]

_OPTIONS = 240
_MAC = slice(28, 34)


@dataclass(frozen=True, slots=True)
class Layout:
    """
    Where the per-machine values of a datagram lie.

    @ivar keep: the byte ranges that make the shape (C{stop} C{None}: to
        the end).
    @ivar uuid: the range of option 97's value (type byte and GUID), if
        present.
    @ivar relay: the range of option 82's value, if present.
    """

    keep: tuple[tuple[int, int | None], ...]
    uuid: tuple[int, int] | None
    relay: tuple[int, int] | None

    def shape(self, data: bytes) -> bytes:
        return b"".join([data[start:stop] for start, stop in self.keep])


def layout(data: bytes, whole_uuid: bool = False) -> Layout | None:
    """
    The L{Layout} of a plain Ethernet BOOTREQUEST, or C{None} for anything
    the fast path leaves to the pipeline.

    @param whole_uuid: keep the GUID in the shape (the policy reads it).
    """
    end = len(data)
    if (end < _OPTIONS or data[0] != BOOTREQUEST or data[1] != 1 or data[2] != 6
            or data[236:_OPTIONS] != MAGIC_COOKIE):
        return None
    # xid and secs (4-10), and the MAC (28-34), are never in the shape.
    cuts = [(4, 10), (28, 34)]
    uuid = relay = None
    seen: set[int] = set()
    try:
        for code, start, stop in option_spans(data, _OPTIONS):
            if code in seen or code == Option.OVERLOAD:
                return None
            seen.add(code)
            if code == Option.CLIENT_UUID:
                if stop - start != 17 or data[start] != 0:
                    return None
                uuid = (start, stop)
                if not whole_uuid:
                    cuts.append((start + 1, stop))
            elif code == Option.RELAY_AGENT_INFORMATION:
                relay = (start, stop)
                cuts.append(relay)
    except MalformedPacket:
        return None
    keep: list[tuple[int, int | None]] = []
    at = 0
    for start, stop in cuts:
        keep.append((at, start))
        at = stop
    keep.append((at, None))
    return Layout(tuple(keep), uuid, relay)


@dataclass(frozen=True, slots=True)
class Offer:
    """
    A kept answer: what to send to each datagram of its shape.

    @ivar machine: the first machine it was given to (all of them share
        its architecture and kind; only the MAC and GUID differ).
    @ivar relayed: the requests came through a relay (option 82, if
        present, is echoed).
    """

    answer: BootAnswer
    destination: tuple[str, int]
    machine: Machine
    layout: Layout
    relayed: bool

    def data(self, datagram: bytes) -> bytes:
        """
        The offer's bytes for C{datagram}, which has this offer's shape.
        """
        uuid = self.layout.uuid
        relay = self.layout.relay if self.relayed else None
        return offer_from(datagram, self.answer,
                          datagram[uuid[0]:uuid[1]] if uuid is not None else None,
                          datagram[relay[0]:relay[1]] if relay is not None else None)


class OfferCache:
    """
    Offers by shape, for one set of parts.

    @ivar size: the most offers kept (then all are dropped: a scan of
        made-up shapes only costs itself the fast path).
    @ivar lifetime: seconds after which every offer is decided again.
    """

    #: The most layouts tried per datagram: firmware models on one network.
    max_layouts = 8

    def __init__(self, size: int = 4096, lifetime: float = 30.0) -> None:
        self.size = size
        self.lifetime = lifetime
        self._owner: object = None
        self._policy_key: AnswerKey | None = None
        self._answer_key: Callable[[], AnswerKey | None] | None = None
        self._until = 0.0
        self._layouts: list[Layout] = []
        self._offers: dict[Hashable, Offer] = {}

    def _mac_class(self, mac: str) -> Hashable:
        """What of C{mac} the policy's answers depend on (see L{AnswerKey})."""
        key = self._policy_key
        return key.mac(mac) if key is not None and key.mac is not None else None

    def valid(self, owner: object, policy: object, now: float) -> bool:
        """
        Whether offers may be kept and found for C{owner} (the current
        parts) and its C{policy}.  Offers kept for other parts, for the
        policy's previous rules, or before the lifetime ran out are
        dropped first.
        """
        if owner is self._owner and now < self._until:
            if self._answer_key is None:
                return False
            if self._answer_key() is self._policy_key:
                # (None: the policy's rules say nothing of what they read.)
                return self._policy_key is not None
        self._owner = owner
        self._answer_key = (policy.answer_key  # type: ignore[attr-defined]
                            if ICacheablePolicy.providedBy(policy) else None)
        self._policy_key = self._answer_key() if self._answer_key is not None else None
        self._until = now + self.lifetime
        self._layouts.clear()
        self._offers.clear()
        return self._policy_key is not None

    def find(self, data: bytes, source: tuple[str, int],
             info: PacketInfo | None) -> tuple[Offer, str] | None:
        """
        The offer kept for C{data}'s shape, and the MAC it came from.
        """
        offers = self._offers
        if not offers:
            return None
        mac = data[_MAC].hex(":")
        mac_class = self._mac_class(mac)
        for known in self._layouts:
            offer = offers.get((known.shape(data), mac_class, source, info))
            if offer is not None and offer.layout is known:
                return offer, mac
        return None

    def keep(self, data: bytes, source: tuple[str, int], info: PacketInfo | None,
             answer: BootAnswer, destination: tuple[str, int], machine: Machine,
             relayed: bool) -> None:
        """
        Keep C{answer}, which the pipeline gave C{data}, for its shape.
        (Call only after L{valid} said C{True} for the parts that decided it.)
        """
        key = self._policy_key
        found = layout(data, whole_uuid=key is not None and key.uuid)
        if found is None:
            return
        for known in self._layouts:
            if known == found:
                found = known
                break
        else:
            if len(self._layouts) >= self.max_layouts:
                return
            self._layouts.append(found)
        if len(self._offers) >= self.size:
            self._offers.clear()
        offer = Offer(answer, destination, machine, found, relayed)
        mac_class = self._mac_class(data[_MAC].hex(":"))
        self._offers[(found.shape(data), mac_class, source, info)] = offer
