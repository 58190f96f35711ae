# -*- test-case-name: tests.test_dhcp_server -*-
"""
Wiring of pxed as the DHCP server (C{dhcp.mode: full}): the lease store,
the ICMP probe, the lease keeper and the protocol on UDP 67.

Kept out of L{pxed.service} so that module stays the one readable place
where every port is wired, with this a single call in it.
"""

from __future__ import annotations

from typing import Any

from twisted.application import service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from pxed.config import Config, ConfigError
from pxed.dhcp.allocator import LeaseKeeper
from pxed.dhcp.ping import ICMPProber, open_prober
from pxed.dhcp.responder import BootResponder
from pxed.dhcp.server import DHCPServerProtocol
from pxed.leasefile import FileLeaseStore, LeaseFileError
from pxed.leasestore import ILeaseStore, MemoryLeaseStore
from pxed.metrics import Metrics

__all__ = ["make_dhcp_server", "make_lease_store"]

log = Logger()


def make_lease_store(config: Config, reactor: Any) -> ILeaseStore:
    """
    The lease file's store (its directory is created if missing).

    @raise ConfigError: the lease file cannot be used.
    """
    path = config.dhcp.lease_file
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        store = FileLeaseStore(path, reactor)
        # A fresh snapshot and journal: fail now rather than at the first
        # ACK, and drop a journal line a crash may have cut short.
        store.save()
    except (OSError, LeaseFileError) as e:
        raise ConfigError(config.source, "dhcp.lease_file", str(e)) from None
    return store


class _Closing(service.Service):
    """
    Closes what the DHCP server opened when pxed stops: the ICMP socket,
    and the lease file (with a last snapshot).
    """

    def __init__(self, prober: ICMPProber | None, store: ILeaseStore) -> None:
        self.prober = prober
        self.store = store

    def startService(self) -> None:
        super().startService()
        if isinstance(self.store, FileLeaseStore):
            self.store.start_writer()

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        if self.prober is not None:
            self.prober.close()
        if not isinstance(self.store, FileLeaseStore):
            return None
        d = self.store.close()
        d.addErrback(lambda f: log.error("cannot write the last lease snapshot: {error} (the "
                                         "journal has every lease)", error=f.getErrorMessage()))
        return d


def make_dhcp_server(
    config: Config,
    responder: BootResponder,
    address: str | None,
    reactor: Any,
    leases: ILeaseStore | None,
    parent: service.MultiService,
    metrics: Metrics | None = None,
) -> tuple[DHCPServerProtocol, ILeaseStore]:
    """
    The protocol for UDP 67 and the lease store it uses.
    """
    settings = config.dhcp
    store = leases if leases is not None else make_lease_store(config, reactor)
    prober = None
    if settings.ping:
        prober = open_prober(reactor)
        if prober is None:
            log.warn("dhcp.ping: cannot open an ICMP socket (pxed needs root or CAP_NET_RAW, "
                     "or a group in net.ipv4.ping_group_range): addresses are offered without "
                     "probing them first")
    closing = _Closing(prober, store)
    closing.setName("dhcp-leases")
    closing.setServiceParent(parent)
    keeper = LeaseKeeper(store, reactor, settings.lease_time, prober)
    if metrics is not None:
        keeper.events = metrics.track_leases(
            store if isinstance(store, MemoryLeaseStore) else None, reactor.seconds)
    server = config.server
    # The dhcp: section itself is read from the responder's live parts.
    protocol = DHCPServerProtocol(keeper, responder, address, server.relays, server.interfaces,
                                  clock=reactor, log_packets=server.log_packets)
    return protocol, store
