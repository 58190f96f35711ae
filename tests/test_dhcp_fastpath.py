"""
Tests for L{pxed.dhcp.fastpath}: the ProxyDHCP fast path sends, for every
datagram, exactly what the pipeline (L{pxed.dhcp.pipeline}, which
C{pxed explain} runs) would send, and writes the same boot log and
metrics; it answers from a kept offer only when the answer cannot differ.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.internet.testing import FakeDatagramTransport
from twisted.trial import unittest
from zope.interface import implementer

from pxed.dhcp.exchange import PROXYDHCP
from pxed.dhcp.fastpath import layout
from pxed.dhcp.packet import MAGIC_COOKIE, DHCPPacket, Option, decode, encode
from pxed.dhcp.pipeline import Arrival, Dropped, receive, respond
from pxed.dhcp.protocol import ProxyDHCPProtocol
from pxed.dhcp.responder import BootResponder
from pxed.eager import Done, eager
from pxed.metrics import Metrics
from pxed.net import PacketInfo
from pxed.observe import BootRecorder
from pxed.parts import BootParts
from pxed.policy import BootRequest, BootSpec, Chain, Rule, RulePolicy, StaticPolicy
from pxed.policy.actions import Ignore
from pxed.policy.match import ArchMatcher, IMatcher, MacMatcher, Match
from pxed.state import MemoryBootLog
from pxed.store import MemoryStateStore
from tests.fixtures import write_bootloaders

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])

LISTED = "02:00:00:00:00:0a"   # a machine of its own
OUI = "02:00:01"               # a vendor's machines
IGNORED = "02:00:00:00:00:0c"  # left alone
ONCE = "02:00:00:00:00:0d"     # an install, once
MACS = [bytes.fromhex(m.replace(":", "")) for m in
        (LISTED, IGNORED, ONCE, "02:00:01:00:00:01", "02:00:01:00:00:02",
         "02:00:02:00:00:01", "02:00:02:00:00:02", "02:00:02:00:00:03")]
INFO = PacketInfo(3, "10.1.2.3", "255.255.255.255")
RELAY = ("10.9.0.1", 67)


def rules(base: Path) -> list[Rule]:
    kernel = str(base / "vmlinuz")
    return [
        Rule("listed", Match((MacMatcher((LISTED,)),)), Chain(str(base / "grubx64.efi"))),
        Rule("ignored", Match((MacMatcher((IGNORED,)),)), Ignore()),
        Rule("install", Match((MacMatcher((ONCE,)),)), Chain(str(base / "installer.efi")),
             once=True),
        Rule("vendor", Match((MacMatcher((OUI,)),)), Chain(str(base / "vendor.efi"))),
        Rule("uefi", Match((ArchMatcher(slugs=frozenset({"x64-uefi"})),)),
             Chain(str(base / "shimx64.efi"))),
        Rule("default", Match(), BootSpec(kernel=kernel)),
    ]


class Rig:
    """
    A ProxyDHCP protocol with the fast path, and the same policy asked
    through the pipeline alone, for comparison.
    """

    def __init__(self, case: unittest.TestCase, address: str | None = "10.1.2.3") -> None:
        base = Path(case.mktemp()).absolute()
        base.mkdir()
        (base / "vmlinuz").write_bytes(b"k")
        self.loaders = write_bootloaders(base)
        self.clock = Clock()
        self.clock.advance(1000)
        self.store = MemoryStateStore()
        self.rules = rules(base)
        self.boot_log = MemoryBootLog(clock=self.clock.seconds)
        self.metrics = Metrics()
        self.recorder = BootRecorder(self.boot_log, self.metrics, self.clock)
        self.responder = BootResponder(RulePolicy(self.rules, self.store), self.loaders, 8080,
                                       self.recorder)
        self.address = address
        self.proxy = ProxyDHCPProtocol(self.responder, address, clock=self.clock,
                                       ifname=lambda index: f"eth{index}", route=None)
        self.proxy.observer = self.recorder
        self.transport = FakeDatagramTransport()
        self.proxy.makeConnection(self.transport)
        self.asked = 0
        answer = self.responder.answer

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.asked += 1
            return await answer(*args, **kwargs)

        self.responder.answer = counted  # type: ignore[method-assign]
        self.reference = BootResponder(RulePolicy(self.rules, self.store), self.loaders, 8080,
                                       MemoryBootLog())

    def expected(self, data: bytes, source: tuple[str, int],
                 info: PacketInfo | None) -> tuple[bytes, tuple[str, int]] | None:
        """What the pipeline alone sends for C{data}."""
        name = f"eth{info.ifindex}" if info is not None and info.ifindex else None
        try:
            request = receive(Arrival(data, source, info, name), PROXYDHCP, address=self.address)
        except Dropped:
            return None
        done = eager(respond(request, PROXYDHCP, self.reference))
        assert isinstance(done, Done)
        return None if done.value is None else (done.value.data, done.value.destination)

    def send(self, data: bytes, source: tuple[str, int] = RELAY,
             info: PacketInfo | None = INFO) -> tuple[bytes, tuple[str, int]] | None:
        before = len(self.transport.written)
        self.proxy.datagramReceivedWithInfo(data, source, info)
        self.clock.advance(0)
        written = self.transport.written[before:]
        assert len(written) <= 1, written
        return written[0] if written else None


def discover(mac: bytes, xid: int = 1, arch: int = 0, giaddr: str = "10.9.0.1",
             uuid: bytes | None = b"\x00" + bytes(range(16)), relay: bytes | None = None,
             **options: bytes) -> bytes:
    opts: dict[int, bytes] = {Option.MESSAGE_TYPE: b"\x01", 57: b"\x05\xc0",
                              Option.CLIENT_ARCH: arch.to_bytes(2, "big"),
                              Option.CLIENT_NDI: b"\x01\x02\x01",
                              Option.VENDOR_CLASS: b"PXEClient:Arch:%05d:UNDI:002001" % arch}
    if uuid is not None:
        opts[Option.CLIENT_UUID] = uuid
    for code, value in options.items():
        opts[int(code.lstrip("o"))] = value
    if relay is not None:
        opts[Option.RELAY_AGENT_INFORMATION] = relay
    return encode(DHCPPacket(xid=xid, hops=1, giaddr=giaddr, chaddr=mac + bytes(10),
                             options=opts))


@st.composite
def storms(draw: st.DrawFn) -> list[tuple[bytes, tuple[str, int], PacketInfo | None]]:
    """
    A few kinds of request (options in any order, relayed or not, some
    malformed), each sent by several machines.
    """
    out = []
    for _ in range(draw(st.integers(1, 3))):
        options: dict[int, bytes] = {
            Option.MESSAGE_TYPE: draw(st.sampled_from([b"\x01"] * 6 + [b"\x03", b"\x01\x01"])),
            Option.VENDOR_CLASS: draw(st.sampled_from(
                [b"PXEClient:Arch:00000"] * 3 + [b"PXEClient", b"HTTPClient:Arch:00016",
                                                  b"MSFT 5.0"])),
        }
        if draw(st.booleans()):
            options[Option.CLIENT_ARCH] = draw(st.sampled_from(
                [b"\x00\x00", b"\x00\x07", b"\x00\x09", b"\x00\x0b", b"\x00\x07\x00\x09", b"\x07"]))
        if draw(st.booleans()):
            options[Option.USER_CLASS] = draw(st.sampled_from([b"iPXE", b"\x04iPXE", b"other"]))
        if draw(st.booleans()):
            options[Option.CLIENT_UUID] = draw(st.sampled_from([b"\x00"] * 4 + [b"\x01"])) + draw(
                st.sampled_from([bytes(16)] * 4 + [bytes(15), bytes(17)]))
        if draw(st.booleans()):
            options[Option.RELAY_AGENT_INFORMATION] = draw(st.binary(max_size=12))
        order = draw(st.permutations(list(options)))
        giaddr = draw(st.sampled_from(["0.0.0.0", "10.9.0.1"] * 3 + ["127.0.0.1", "10.1.2.3"]))
        source = ("10.9.0.1", 67) if giaddr != "0.0.0.0" else ("0.0.0.0", 68)
        info = draw(st.sampled_from([INFO, None, PacketInfo(4, "0.0.0.0", "10.1.2.3")]))
        flags = draw(st.sampled_from([0, 0x8000]))
        htype = draw(st.sampled_from([1] * 6 + [6]))
        tail = draw(st.sampled_from([b"", b"\x00\x00", b"\x34\x01\x01"]))
        for _ in range(draw(st.integers(2, 6))):
            mac = draw(st.sampled_from(MACS))
            opts = {code: options[code] for code in order}
            if Option.CLIENT_UUID in opts and len(opts[Option.CLIENT_UUID]) == 17:
                opts[Option.CLIENT_UUID] = opts[Option.CLIENT_UUID][:1] + draw(
                    st.binary(min_size=16, max_size=16))
            if Option.RELAY_AGENT_INFORMATION in opts:
                opts[Option.RELAY_AGENT_INFORMATION] = draw(st.binary(
                    min_size=len(opts[Option.RELAY_AGENT_INFORMATION]),
                    max_size=len(opts[Option.RELAY_AGENT_INFORMATION])))
            packet = DHCPPacket(htype=htype, xid=draw(st.integers(0, 2**32 - 1)),
                                secs=draw(st.integers(0, 9)), flags=flags, giaddr=giaddr,
                                chaddr=mac + bytes(10), options=opts)
            data = encode(packet)
            if tail:
                # Options after the END (ignored), or a repeated option 52.
                end = data.rindex(b"\xff")
                data = data[:end] + tail + data[end:] if tail[0] == 0x34 else data + tail
            out.append((data, source, info))
    return out


class FastPathTests(unittest.TestCase):
    @SETTINGS
    @given(storms())
    def test_same_as_pipeline(self, storm: list[tuple[bytes, tuple[str, int], Any]]) -> None:
        """
        Whatever the requests, each one is answered (or not) with the bytes
        and to the destination the pipeline alone gives, while the fast
        path keeps and reuses offers between them.
        """
        rig = Rig(self)
        for data, source, info in storm * 2:
            self.assertEqual(rig.send(data, source, info), rig.expected(data, source, info))

    def test_storm_asks_once(self) -> None:
        """
        A thousand machines of one kind, unknown to the rules, cost one
        policy decision; each is answered and written down as the pipeline
        would (boot log, metrics).
        """
        rig = Rig(self)
        for i in range(1000):
            mac = b"\x02\x00\x02" + i.to_bytes(3, "big")
            data = discover(mac, xid=i, uuid=b"\x00" + i.to_bytes(16, "little"))
            self.assertEqual(rig.send(data), rig.expected(data, RELAY, INFO))
        self.assertEqual(rig.asked, 1)
        machines = rig.boot_log.machines()
        self.assertEqual(len(machines), 1000)
        last = rig.boot_log.last("02:00:02:00:03:e7")
        assert last is not None
        self.assertEqual((last.stage, last.fields["bootfile"], last.fields["kind"]),
                         ("proxydhcp", "undionly.kpxe", "bootloader"))
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for m in rig.metrics.registry.collect() for s in m.samples}
        offered = [v for (name, labels), v in samples.items()
                   if name == "pxed_dhcp_requests_total" and ("outcome", "offered") in labels]
        self.assertEqual(sum(offered), 1000)
        self.assertEqual(sum(v for (name, _), v in samples.items()
                             if name == "pxed_dhcp_reply_seconds_count"), 1000)

    def test_listed_machines_after_a_storm(self) -> None:
        """
        Machines a MAC rule names get their own answer even after their
        kind was kept for others: the key holds the MAC's class.
        """
        rig = Rig(self)
        for mac in MACS[3:] + MACS[:2] + MACS[3:]:
            data = discover(mac, arch=7)
            self.assertEqual(rig.send(data), rig.expected(data, RELAY, INFO))
        files = {decode(rig.send(discover(mac, arch=7))[0]).file  # type: ignore[index]
                 for mac in MACS[3:]}
        self.assertEqual({name.rsplit(b"/", 1)[-1] for name in files},
                         {b"vendor.efi", b"shimx64.efi"})
        self.assertIsNone(rig.send(discover(MACS[1], arch=7)))
        # vendor x2, other x1 (uefi), listed x1: ignored is never kept
        self.assertEqual(rig.asked, 5)

    def test_once_not_kept(self) -> None:
        """
        A machine a 'once' rule matches is asked every time: when its flag
        is set, the next DISCOVER already gets what follows.
        """
        rig = Rig(self)
        mac = MACS[2]
        first = rig.send(discover(mac, xid=1))
        self.assertEqual(first, rig.expected(discover(mac, xid=1), RELAY, INFO))
        self.successResultOf(rig.store.mark_once(ONCE, "install"))
        second = rig.send(discover(mac, xid=2))
        self.assertEqual(second, rig.expected(discover(mac, xid=2), RELAY, INFO))
        self.assertEqual(rig.asked, 2)

    def test_reload(self) -> None:
        """
        New parts (a reload) are answered from at once: nothing kept for
        the old ones is sent.
        """
        rig = Rig(self)
        mac = MACS[6]
        rig.send(discover(mac, arch=7, xid=1))
        old = rig.responder.parts.current
        loaders = dict(old.bootloaders)
        loaders["x64-uefi"] = loaders["x86-bios"]
        rig.responder.parts.current = BootParts(
            policy=RulePolicy(rig.rules[:-2] + rig.rules[-1:], rig.store), bootloaders=loaders)
        reply = rig.send(discover(mac, arch=7, xid=2))
        assert reply is not None
        self.assertEqual(decode(reply[0]).file, b"undionly.kpxe")
        self.assertEqual(rig.asked, 2)

    def test_lifetime(self) -> None:
        """
        Kept offers are decided again after the cache's lifetime.
        """
        rig = Rig(self)
        for xid in range(3):
            rig.send(discover(MACS[6], xid=xid))
        self.assertEqual(rig.asked, 1)
        rig.clock.advance(rig.proxy.offers.lifetime)  # type: ignore[union-attr]
        rig.send(discover(MACS[6], xid=9))
        self.assertEqual(rig.asked, 2)

    def test_ipxe_not_kept(self) -> None:
        """
        iPXE is told a script URL naming its MAC: never kept.
        """
        rig = Rig(self)
        urls = set()
        for mac in MACS[5:]:
            reply = rig.send(discover(mac, arch=7, o77=b"iPXE"))
            assert reply is not None
            urls.add(decode(reply[0]).options[Option.BOOTFILE_NAME])
        self.assertEqual(len(urls), 3)
        self.assertEqual(rig.asked, 3)

    def test_policy_without_answer_key(self) -> None:
        """
        A policy that does not say what its answers depend on (here the
        C{boot:} section's L{StaticPolicy}, which embedders may change in
        place) is asked every time.
        """
        rig = Rig(self)
        policy = StaticPolicy({}, BootSpec(kernel="/k"))
        rig.responder.parts.current = BootParts(policy=policy,
                                                bootloaders=rig.responder.bootloaders)
        for xid in range(3):
            rig.send(discover(MACS[6], xid=xid))
        self.assertEqual(rig.asked, 3)

    def test_matcher_that_reads_anything(self) -> None:
        """
        Rules with a matcher that does not say what it reads (an embedding
        program's) are asked every time: it may read the MAC.
        """
        rig = Rig(self)

        @implementer(IMatcher)
        class Odd:
            def matches(self, request: BootRequest) -> bool:
                return request.mac.endswith("1")

        policy = RulePolicy([Rule("odd", Match((Odd(),)), Chain("/odd.efi")), *rig.rules],
                            rig.store)
        rig.responder.parts.current = BootParts(policy=policy,
                                                bootloaders=rig.responder.bootloaders)
        files = []
        for mac in (MACS[5], MACS[6], MACS[7], MACS[5]):
            reply = rig.send(discover(mac))
            assert reply is not None
            files.append(decode(reply[0]).file.rsplit(b"/", 1)[-1])
        self.assertEqual(files, [b"odd.efi", b"undionly.kpxe", b"undionly.kpxe", b"odd.efi"])
        self.assertEqual(rig.asked, 4)

    def test_rules_swapped_in_place(self) -> None:
        """
        An embedding program that gives the policy other rules is answered
        from them at once.
        """
        rig = Rig(self)
        rig.send(discover(MACS[6], xid=1))
        policy = rig.responder.parts.current.policy
        policy.rules = (Rule("nothing", Match(), Ignore()),)  # type: ignore[attr-defined]
        self.assertIsNone(rig.send(discover(MACS[6], xid=2)))

    def test_boot_log_fails(self) -> None:
        """
        A boot log that fails costs no answer and no metric: one line says
        so for the whole turn.
        """
        rig = Rig(self)
        rig.send(discover(MACS[5], xid=1))

        def broken(*args: object, **kwargs: object) -> None:
            raise OSError("disk full")

        rig.boot_log.record = broken  # type: ignore[method-assign]
        for xid in range(2, 5):
            rig.proxy.datagramReceivedWithInfo(discover(MACS[6], xid=xid), RELAY, INFO)
        rig.clock.advance(0)
        self.assertEqual(len(rig.transport.written), 4)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        offered = sum(s.value for m in rig.metrics.registry.collect() for s in m.samples
                      if s.name == "pxed_dhcp_requests_total"
                      and s.labels.get("outcome") == "offered")
        self.assertEqual(offered, 4)

    def test_boot_log_waits_for_the_turn(self) -> None:
        """
        A kept offer is sent at once; its boot log entry is written at the
        end of the reactor's turn, with every other one of that turn.
        """
        rig = Rig(self)
        rig.send(discover(MACS[5], xid=1))
        rig.proxy.datagramReceivedWithInfo(discover(MACS[6], xid=2), RELAY, INFO)
        self.assertEqual(len(rig.transport.written), 2)
        self.assertIsNone(rig.boot_log.last("02:00:02:00:00:02"))
        rig.clock.advance(0)
        self.assertIsNotNone(rig.boot_log.last("02:00:02:00:00:02"))


class LayoutTests(unittest.TestCase):
    def test_plain(self) -> None:
        """
        The shape leaves out xid, secs, the MAC, the GUID (not its type)
        and option 82's value, and nothing else.
        """
        data = discover(MACS[0], relay=b"\x01\x02ab")
        found = layout(data)
        assert found is not None
        other = discover(MACS[1], xid=7, uuid=b"\x00" + bytes(16), relay=b"\x01\x02cd")
        other = other[:8] + b"\x00\x05" + other[10:]
        self.assertEqual(found.shape(data), found.shape(other))
        self.assertNotEqual(found.shape(data), found.shape(discover(MACS[0], arch=7)))
        self.assertEqual(len(found.shape(data)), len(data) - 6 - 6 - 16 - 4)
        assert found.uuid is not None and found.relay is not None
        self.assertEqual(data[found.uuid[0]:found.uuid[1]], b"\x00" + bytes(range(16)))
        self.assertEqual(data[found.relay[0]:found.relay[1]], b"\x01\x02ab")
        whole = layout(data, whole_uuid=True)
        assert whole is not None
        self.assertNotEqual(whole.shape(data), whole.shape(other))

    def test_left_to_the_pipeline(self) -> None:
        """
        Anything unusual has no layout.
        """
        data = discover(MACS[0])
        end = data.rindex(b"\xff")
        self.assertIsNotNone(layout(data))
        for odd in (
            data[:239],                                    # too short
            b"\x02" + data[1:],                            # a reply
            data[:1] + b"\x06" + data[2:],                 # not Ethernet
            data[:2] + b"\x10" + data[3:],                 # hlen 16
            data[:236] + b"XXXX" + data[240:],             # no cookie
            data[:end] + b"\x3c\x01x" + data[end:],        # option 60 twice
            data[:end] + b"\x34\x01\x01" + data[end:],     # overloaded file field
            data[:end] + b"\x0c\x09ab",                    # runs past the end
            discover(MACS[0], uuid=b"\x01" + bytes(16)),   # GUID type 1
            discover(MACS[0], uuid=bytes(10)),             # GUID of 9 bytes
        ):
            self.assertIsNone(layout(odd), odd[240:])
        self.assertEqual(MAGIC_COOKIE, data[236:240])

    def test_relay_not_echoed_unless_relayed(self) -> None:
        """
        Option 82 from a client on the segment is not echoed; from a relay
        it is, each request's own.
        """
        rig = Rig(self)
        for value in (b"\x01\x02ab", b"\x01\x02cd"):
            data = discover(MACS[6], relay=value)
            reply = rig.send(data)
            assert reply is not None
            self.assertEqual(decode(reply[0]).options[Option.RELAY_AGENT_INFORMATION], value)
        for value in (b"\x01\x02ab", b"\x01\x02cd"):
            data = discover(MACS[6], relay=value, giaddr="0.0.0.0")
            reply = rig.send(data, ("0.0.0.0", 68))
            assert reply is not None
            self.assertNotIn(Option.RELAY_AGENT_INFORMATION, decode(reply[0]).options)
            self.assertEqual(reply, rig.expected(data, ("0.0.0.0", 68), INFO))
        self.assertEqual(rig.asked, 2)

