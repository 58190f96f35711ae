# -*- test-case-name: tests.test_service -*-
"""
The parts of a running pxed that a configuration decides and a reload
replaces, as one typed value (L{BootParts}) behind one reference
(L{LiveParts}).

Why one value: a reload must switch everything at once or nothing.  The
protocols and the web app never keep a part of their own; they read
C{parts.current.<part>} when a request comes in, so one assignment to
C{current} (between two reactor events) moves every port to the new
configuration, and a request that began before it finishes with the value
it read.

Adding a part (a lease store, a generated GRUB configuration, ...):

  1. add a field to L{BootParts}, with a default when a bare
     L{pxed.dhcp.responder.BootResponder} or L{pxed.http.app.BootHTTP}
     built by a test or a small embedder can do without it;
  2. build it from the configuration in L{pxed.runtime.build_parts} (raise
     L{pxed.config.ConfigError} there if it cannot be built: the reload is
     then refused and the running parts stay);
  3. read it as C{self.parts.current.NAME} where it is used (give that
     object the L{LiveParts} when L{pxed.service.makeBootService} builds
     it), or expose it with L{part} as an attribute;
  4. if what it holds must be released when a reload retires it (sockets,
     connection pools), do that in L{pxed.runtime.PolicyRuntime.retire};
     if a reload cannot change it, have C{PolicyRuntime} report it as
     needing a restart.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar, overload

from twisted.internet.defer import Deferred
from twisted.web.client import HTTPConnectionPool
from zope.interface import implementer

from pxed.config.dhcp import DHCPConfig
from pxed.dhcp.menu import PXEMenu
from pxed.grub.image import GrubImageCache
from pxed.http.files import FileCatalog
from pxed.http.proxy import RemoteFetcher
from pxed.policy import IBootPolicy
from pxed.signing import Signer
from pxed.store import IStateStore, MemoryStateStore
from pxed.tftp.source import ChainSource, IFileSource

__all__ = ["BootParts", "LiveParts", "LiveSource", "part"]


def _throwaway_catalog() -> FileCatalog:
    # For parts built without a configuration (tests, small embedders):
    # file IDs signed with a key nobody else has, valid in this process.
    return FileCatalog(Signer(os.urandom(32)))


@dataclass(frozen=True)
class BootParts:
    """
    Everything a configuration decides that the protocols use, built
    together and replaced together.

    @ivar policy: decides what each machine boots.
    @ivar catalog: signs and resolves the file URLs in scripts.
    @ivar signer: signs the network context in iPXE script URLs
        (L{pxed.policy.request.sign_context}); C{None} leaves it out, so
        rules matching on the network do not apply to scripts.  The
        service sets the catalog's signer.
    @ivar bootloaders: architecture slug to the network bootstrap program.
    @ivar programs: file name to program, for HTTP Boot's C{/_/boot/}.
    @ivar menu: the PXE boot menu for BIOS firmware, if configured.
    @ivar fetcher: proxies remote files when C{policy.remote.proxy} is on.
    @ivar exports: exported directories by name.
    @ivar hostnames: MAC to host name, for templates.
    @ivar admin_token: the bearer token of C{/_/admin/}, or C{None}
        (off).
    @ivar store: 'once' flags and the signing key (not replaced by a
        reload: its path needs a restart; it is here so the web app reads
        it where it reads the rest).
    @ivar images: the GRUB images pxed builds for ARM64 clients
        (L{pxed.grub.image}), or C{None} when C{arm64.build} is off; kept
        across reloads that leave the C{arm64:} section as it was.
    @ivar grub: GRUB clients' configurations and files over TFTP (a
        L{pxed.grub.source.GrubSource}, part of C{tftp}; built for these
        parts' policy, catalog, store, hostnames and exports).
    @ivar tftp: what TFTP serves.
    @ivar dhcp: the C{dhcp:} section, for pxed as the DHCP server: its
        ranges, router, DNS, lease time and C{clients} switch on reload
        (the mode, the probe and the lease file need a restart).
    @ivar pools: HTTP connection pools these parts opened (the policy
        API's, the fetcher's): their idle connections are closed when a
        reload retires the parts.
    """

    policy: IBootPolicy
    catalog: FileCatalog = field(default_factory=_throwaway_catalog)
    signer: Signer | None = None
    bootloaders: Mapping[str, Path] = field(default_factory=dict)
    programs: Mapping[str, Path] = field(default_factory=dict)
    menu: PXEMenu | None = None
    fetcher: RemoteFetcher | None = None
    exports: Mapping[str, Path] = field(default_factory=dict)
    hostnames: Mapping[str, str] = field(default_factory=dict)
    admin_token: str | None = None
    store: IStateStore = field(default_factory=MemoryStateStore)
    images: GrubImageCache | None = None
    grub: IFileSource | None = None
    tftp: IFileSource = field(default_factory=lambda: ChainSource([]))
    dhcp: DHCPConfig = field(default_factory=DHCPConfig)
    pools: tuple[HTTPConnectionPool, ...] = ()


class LiveParts:
    """
    The one reference to the parts in use: L{pxed.runtime.PolicyRuntime}
    assigns C{current}; everything else reads it.
    """

    def __init__(self, current: BootParts) -> None:
        self.current = current


class _HasParts(Protocol):
    parts: LiveParts


T = TypeVar("T")


class part(Generic[T]):  # noqa: N801 - used like property
    """
    An attribute of a part's consumer that reads (and, for tests and
    embedders that change one part by hand, replaces) the part of the same
    name in C{self.parts.current}.
    """

    name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> part[T]: ...

    @overload
    def __get__(self, obj: _HasParts, objtype: type | None = None) -> T: ...

    def __get__(self, obj: _HasParts | None, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        return getattr(obj.parts.current, self.name)

    def __set__(self, obj: _HasParts, value: T) -> None:
        changes: dict[str, Any] = {self.name: value}
        obj.parts.current = replace(obj.parts.current, **changes)


@implementer(IFileSource)
class LiveSource:
    """
    The TFTP server's L{IFileSource}: new transfers open from the current
    parts' source, running ones keep the file they opened.
    """

    def __init__(self, parts: LiveParts) -> None:
        self.parts = parts

    def open(self, filename: str, peer: tuple[str, int]) -> Deferred[Any]:
        return self.parts.current.tftp.open(filename, peer)
