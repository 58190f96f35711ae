# -*- test-case-name: tests.test_service -*-
"""
The one place that wires pxed's protocols into a service.

L{makeBootService} is what C{twistd pxed} runs and what an embedding
program calls to get the same thing inside its own application.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Any

from twisted.application import service
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from pxed.config import Config, ConfigError
from pxed.descriptors import fit_descriptors
from pxed.dhcp.protocol import BootServerProtocol, ProxyDHCPProtocol
from pxed.dhcp.responder import BootResponder
from pxed.dhcpd import make_dhcp_server
from pxed.grub.source import GrubSource
from pxed.http.app import BootHTTP
from pxed.http.guard import GuardedSite
from pxed.http.meter import MeteredResource
from pxed.http.status import StatusPages
from pxed.leasestore import ILeaseStore
from pxed.metrics import Metrics
from pxed.net import interface_address, interface_exists
from pxed.observe import BootRecorder
from pxed.policy import IBootPolicy, RulePolicy
from pxed.ports import TCPService, UDPService
from pxed.reactors import given_or_global
from pxed.runtime import PolicyRuntime, make_store, policy_from_config
from pxed.state import IBootLog, MemoryBootLog
from pxed.store import IStateStore
from pxed.tftp.protocol import TFTPServerProtocol

__all__ = ["makeBootService", "makePolicy", "UDPService", "TCPService"]

log = Logger()


def makePolicy(config: Config) -> RulePolicy:
    """
    The policy the configuration describes: what C{twistd pxed} answers
    with, and what C{pxed explain} asks (without the HTTP API, which
    explaining never calls, and with 'once' flags in memory).
    """
    return policy_from_config(config)


def makeBootService(
    config: Config,
    policy: IBootPolicy | None = None,
    boot_log: IBootLog | None = None,
    reactor: Any = None,
    store: IStateStore | None = None,
    metrics: Metrics | None = None,
    leases: ILeaseStore | None = None,
) -> service.MultiService:
    """
    Build pxed's services (ProxyDHCP, boot server, TFTP, HTTP) from a
    validated configuration.

    @param policy: overrides the configuration's C{boot:} and C{policy:}
        rules, for programs that decide boots themselves.
    @param boot_log: where boot timelines go (default: in memory, sized by
        C{status.history}).
    @param metrics: the Prometheus metrics to update (default: new ones, in
        a registry of their own), served at C{/metrics} unless
        C{status.metrics} is false.
    @param store: where 'once' flags and the signing key live (default:
        C{policy.state_file}, else memory).
    @param leases: where DHCP leases live with C{dhcp.mode: full}
        (default: C{dhcp.lease_file}).
    @return: the service; its child named C{"policy"} is the
        L{PolicyRuntime}, whose C{reload()} switches to the configuration
        file as it is now.
    """
    reactor = given_or_global(reactor)
    metrics = metrics if metrics is not None else Metrics()
    shared = None
    if config.state.url is not None:
        # Several pxed, one database: flags, key and timelines are shared.
        from pxed.pg import open_shared_state

        shared = open_shared_state(config, reactor, metrics)
        store = store if store is not None else shared.store
        boot_log = boot_log if boot_log is not None else shared.boot_log
        # Full DHCP mode: two pxed never hand out one address twice.
        leases = leases if leases is not None else shared.leases
    store = store if store is not None else make_store(config)
    if config.companions and config.dhcp.mode == "proxy":
        # The one thing the Secure Boot chain needs from the site.
        log.info("x64 UEFI clients boot shim and Debian's signed GRUB, which finds pxed only if "
                 "the LAN's DHCP server names pxed as next-server (or set dhcp.mode: full)")
    observing = config.status
    if boot_log is None:
        boot_log = MemoryBootLog(observing.machines, observing.events, clock=reactor.seconds)
    # Every stage of every boot goes through the recorder: it keeps the
    # timeline in boot_log, the metrics, and watches for loops.
    recorder = BootRecorder(boot_log, metrics, reactor, loop_after=observing.loop_after,
                            loop_window=observing.loop_window)
    boot_log = recorder
    server = config.server
    address = server.advertised()
    for name in server.interfaces:
        if not interface_exists(name):
            # Not an error: a VLAN or bridge may be made after pxed starts,
            # and its requests are answered from then on.
            log.warn("server.interfaces names {interface}, which this host does not have: "
                     "DHCP requests are answered on it once it exists", interface=name)
    bind = ""
    device = server.interface
    # HTTP has no per-datagram interface check: with server.interface it
    # listens on that interface's address only.
    http_bind = ""
    if server.interface is not None:
        http_bind = interface_address(server.interface) or ""
        if not http_bind:
            raise ConfigError(config.source, "server.interface",
                              f"interface {server.interface} has no IPv4 address to serve "
                              "HTTP on")
    budget = fit_descriptors(config.http.max_connections, config.tftp.max_transfers)
    http_limits = config.http
    if budget.note is not None:
        log.warn("{note}", note=budget.note)
        http_limits = replace(http_limits, max_connections=budget.max_connections,
                              max_per_client=min(http_limits.max_per_client,
                                                 budget.max_connections))

    top = service.MultiService()
    top.setName("pxed")
    if shared is not None:
        shared.service.setServiceParent(top)
    # The runtime builds the parts the configuration decides (policy,
    # programs, signer, ...) and swaps them on reload; every protocol
    # reads them through runtime.parts.
    # GRUB clients (Secure Boot, ARM64) read their configuration by TFTP,
    # from a GrubSource made for each set of parts.
    grub = functools.partial(GrubSource, recorder, server.ports.http, address)
    runtime = PolicyRuntime(config, store=store, reactor=reactor, override=policy, grub=grub)
    parts = runtime.parts
    responder = BootResponder(parts=parts, http_port=server.ports.http, boot_log=boot_log)

    offers: DatagramProtocol
    if config.dhcp.full:
        # pxed is the DHCP server: port 67 hands out addresses, with the
        # boot information in the same offer and ACK.
        server_protocol, lease_store = make_dhcp_server(config, responder, address, reactor,
                                                        leases, top, metrics)
        server_protocol.observer = recorder
        offers = server_protocol
        dhcp = UDPService(server.ports.dhcp, offers, bind, device, reactor)
        dhcp.setName("dhcp")
    else:
        lease_store = None
        proxy = ProxyDHCPProtocol(responder, address, server.relays, server.interfaces,
                                  log_packets=server.log_packets)
        proxy.observer = recorder
        offers = proxy
        dhcp = UDPService(server.ports.dhcp, offers, bind, device, reactor)
        dhcp.setName("proxydhcp")
    dhcp.setServiceParent(top)

    acks = BootServerProtocol(responder, address, server.relays, server.interfaces,
                              log_packets=server.log_packets)
    acks.observer = recorder
    pxe = UDPService(server.ports.pxe, acks, bind, device, reactor)
    pxe.setName("bootserver")
    pxe.setServiceParent(top)

    transfers = TFTPServerProtocol(runtime.tftp, reactor=reactor,
                                   on_transfer_start=recorder.tftp_started,
                                   on_transfer_end=recorder.tftp_ended,
                                   on_not_found=recorder.tftp_not_found,
                                   **{**config.tftp.protocol_options(),
                                      "max_transfers": budget.max_transfers})
    metrics.track_tftp(lambda: transfers.active_transfers)
    tftp = UDPService(server.ports.tftp, transfers, bind, device, reactor)
    tftp.setName("tftp")
    tftp.setServiceParent(top)

    # HTTP Boot clients fetch the same programs TFTP serves, by file name.
    web = BootHTTP(boot_log=boot_log, address=address, parts=parts, reload=runtime.reload,
                   clock=reactor)
    status = StatusPages(recorder, reactor, page=observing.page, api=observing.api,
                         file_urls=observing.api_file_urls,
                         metrics=metrics if observing.metrics else None, leases=lease_store)
    root = MeteredResource(status.mount(web.resource()), recorder, reactor,
                           status_page=observing.page)
    site = GuardedSite(root, http_limits, reactor=reactor)
    http = TCPService(server.ports.http, site, http_bind, reactor)
    http.setName("http")
    http.setServiceParent(top)

    runtime.setServiceParent(top)
    return top
