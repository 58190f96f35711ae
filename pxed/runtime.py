# -*- test-case-name: tests.test_reload -*-
"""
The policy-dependent parts of a running pxed, and how a reload swaps them.

L{pxed.service.makeBootService} wires the protocols once; what a new
configuration can change (the policy, the files TFTP may serve for it,
the HTTP server's exports, hostnames and remote-file mode, the boot
programs) is built here as one L{pxed.parts.BootParts} value, which the
protocols read through one L{pxed.parts.LiveParts} reference.  A reload
builds a complete new value first and assigns it only if the whole new
configuration is valid, between two reactor events: a request that began
before the swap finishes with the objects it started with, and open TFTP
transfers and HTTP downloads keep their open files.

The state file is re-read on reload (an operator deletes a machine's flag
there to install it again); what a reload cannot change (ports,
addresses, the state file's path) is only reported: those need a restart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from treq.client import HTTPClient
from twisted.application import service
from twisted.internet.defer import Deferred, gatherResults
from twisted.logger import Logger, LogLevel
from twisted.web.client import Agent, HTTPConnectionPool

from pxed.config import ARM64Config, Config, ConfigError, load_config
from pxed.grub.image import GrubImageCache
from pxed.grub.imagesource import GrubImageSource
from pxed.grub.source import GrubSource
from pxed.http.files import FileCatalog
from pxed.http.proxy import RemoteFetcher
from pxed.parts import BootParts, LiveParts, LiveSource
from pxed.policy import Chain, IBootPolicy, IRule, Rule, RulePolicy
from pxed.policy.actions import firmware_directory
from pxed.policy.api import APIRule
from pxed.policy.rules import boot_section_rules
from pxed.signing import Signer
from pxed.store import FileStateStore, IStateStore, MemoryStateStore, StateFileError
from pxed.tftp.source import (
    ChainSource,
    DirectorySource,
    FilesystemSource,
    IFileSource,
    MappingSource,
)

__all__ = ["PolicyRuntime", "build_parts", "image_cache", "make_store", "policy_from_config",
           "tftp_source"]

log = Logger()


def make_store(config: Config) -> IStateStore:
    """
    The state store the configuration asks for: the state file, or memory.

    @raise ConfigError: the state file is unusable (loading the
        configuration checked it, but it may have changed since).
    """
    if config.policy.state_file is not None:
        try:
            return FileStateStore(config.policy.state_file)
        except StateFileError as e:
            raise ConfigError(config.source, "policy.state_file", str(e)) from None
    return MemoryStateStore()


def policy_from_config(
    config: Config, store: IStateStore | None = None, api: IRule | None = None
) -> RulePolicy:
    """
    The configuration's rules, in the order they are tried: C{boot.machines}
    (one rule per MAC), C{policy.rules}, the API (if configured and given),
    then C{boot.default}.
    """
    first, last = boot_section_rules(config.machines, config.default)
    rules: list[IRule] = [*first, *config.policy.rules]
    if api is not None:
        rules.append(api)
    rules += last
    return RulePolicy(rules, store)


def _chained_files(config: Config) -> Iterator[str]:
    for rule in config.policy.rules:
        action = rule.action if isinstance(rule, Rule) else None
        if isinstance(action, Chain) and action.firmware_file() is not None:
            yield action.target


def image_cache(settings: ARM64Config, reactor: Any = None,
                eager: bool = True) -> GrubImageCache | None:
    """
    The GRUB image cache the C{arm64:} section asks for, or C{None} when
    building is switched off.
    """
    if not settings.build:
        return None
    return GrubImageCache(settings.cache_dir, settings.modules, settings.mkimage, reactor=reactor,
                          eager=eager)


def tftp_source(config: Config, images: GrubImageCache | None = None,
                grub: IFileSource | None = None) -> IFileSource:
    """
    What TFTP serves: the boot programs under their file names, files that
    rules chain PXE firmware into with their directories (under their
    L{firmware_directory}, so the files beside them load too), the GRUB
    images pxed builds (and their modules), GRUB's configurations and the
    files they name (C{grub}, a L{pxed.grub.source.GrubSource}), then the
    files of C{tftp.root} (read-only; it cannot shadow the names before).
    """
    programs = MappingSource(config.programs())
    chained = DirectorySource({firmware_directory(path): Path(path).parent
                               for path in _chained_files(config)})
    sources: list[IFileSource] = [programs, chained]
    if images is not None:
        sources.append(GrubImageSource(images))
    if grub is not None:
        sources.append(grub)
    if config.tftp.root is not None:
        sources.append(FilesystemSource(config.tftp.root))
    return ChainSource(sources)


def build_parts(
    config: Config,
    store: IStateStore,
    reactor: Any,
    override: IBootPolicy | None = None,
    images: GrubImageCache | None = None,
    grub: Callable[..., GrubSource] | None = None,
    signing_key: bytes | None = None,
) -> BootParts:
    """
    Every part C{config} decides, built anew (see L{pxed.parts}).

    @param override: an embedding program's own policy, used instead of
        the configuration's rules.
    @param images: the GRUB image cache to use (it outlives a reload that
        leaves C{arm64:} unchanged: see L{PolicyRuntime}).
    @param grub: makes the L{GrubSource} TFTP serves GRUB clients from,
        given these parts' C{policy}, C{catalog}, C{store}, C{hostnames}
        and C{exports} (the service binds the rest).
    @param signing_key: the key to sign with, when the caller has read it
        already (C{pxed explain}, which must not make one); default:
        C{policy.signing_key}, else the store's.
    @raise ConfigError: a part cannot be built from C{config}.
    """
    pools = []
    api = None
    if config.policy.api is not None:
        settings = config.policy.api
        pool = HTTPConnectionPool(reactor, persistent=True)
        pools.append(pool)
        client = HTTPClient(Agent(reactor, connectTimeout=settings.timeout, pool=pool))
        api = APIRule(client, settings.url, reactor, settings.timeout, settings.cache,
                      files=settings.files)
    fetcher = None
    remote = config.policy.remote
    if remote.proxy:
        fetcher = RemoteFetcher(reactor, remote.connect_timeout, remote.idle_timeout)
        pools.append(fetcher.pool)
    policy = override or policy_from_config(config, store, api)
    signer = Signer(signing_key or config.policy.signing_key or store.signing_key())
    catalog = FileCatalog(signer, proxy_remote=remote.proxy,
                          max_age=config.policy.signing_max_age)
    exports = dict(config.policy.exports)
    hostnames = dict(config.policy.hostnames)
    grub_source = None
    if grub is not None:
        grub_source = grub(policy=policy, catalog=catalog, store=store, hostnames=hostnames,
                           exports=exports)
    return BootParts(
        policy=policy,
        catalog=catalog,
        signer=signer,
        bootloaders=dict(config.bootloaders),
        programs=config.programs(),
        menu=config.server.menu,
        fetcher=fetcher,
        exports=exports,
        hostnames=hostnames,
        admin_token=config.policy.admin_token,
        store=store,
        images=images,
        grub=grub_source,
        tftp=tftp_source(config, images, grub_source),
        dhcp=config.dhcp,
        pools=tuple(pools),
    )


class PolicyRuntime(service.Service):
    """
    Owns the parts a configuration decides (L{pxed.parts.BootParts}) and
    replaces them, as one reference, on L{reload}.

    @ivar parts: the one reference the protocols and the web app read
        their parts from.
    @ivar tftp: the TFTP server's source, reading the current parts.
    @param override: an embedding program's own policy, kept across
        reloads instead of the configuration's.
    @param grub: makes the GRUB clients' TFTP source for each set of
        parts (see L{build_parts}).
    """

    name = "policy"

    def __init__(
        self,
        config: Config,
        *,
        store: IStateStore,
        reactor: Any,
        override: IBootPolicy | None = None,
        load: Callable[[str], Config] = load_config,
        grub: Callable[..., GrubSource] | None = None,
    ) -> None:
        self.config = config
        self.grub = grub
        self.store = store
        self.reactor = reactor
        self.override = override
        self.load = load
        self.parts = LiveParts(self._build(config, None))
        self.tftp = LiveSource(self.parts)

    def _build(self, config: Config, previous: BootParts | None) -> BootParts:
        if previous is not None and config.arm64 == self.config.arm64:
            # The images built so far stay valid: keep the cache.
            images = previous.images
        else:
            images = image_cache(config.arm64, self.reactor)
        return build_parts(config, self.store, self.reactor, self.override, images, self.grub)

    def apply(self, config: Config, parts: BootParts | None = None) -> None:
        """
        Build everything for C{config} (unless already built), then hand
        it out in one go.
        """
        parts = parts if parts is not None else self._build(config, self.parts.current)
        old, self.parts.current = self.parts.current, parts
        self.config = config
        self.retire(old)

    @staticmethod
    def retire(old: BootParts) -> None:
        """
        Release what parts no longer in use hold: idle connections only;
        downloads in flight keep theirs.
        """
        for pool in old.pools:
            pool.closeCachedConnections()

    def _restart_only(self, new: Config) -> list[str]:
        old = self.config
        changed = []
        if new.server != old.server:
            changed.append("server")
        if new.policy.state_file != old.policy.state_file:
            changed.append("policy.state_file")
        if new.status != old.status:
            changed.append("status")
        for key in ("mode", "ping", "lease_file"):
            # The rest of dhcp: (ranges, options, lease time, clients) is a
            # part, switched on reload.
            if getattr(new.dhcp, key) != getattr(old.dhcp, key):
                changed.append(f"dhcp.{key}")
        if new.state != old.state:
            changed.append("state")  # the database and its timers
        if replace(new.tftp, root=None) != replace(old.tftp, root=None):
            changed.append("tftp")  # its limits; tftp.root switches on reload
        if new.http != old.http:
            # Its limits are given to the listening site once, at start-up.
            changed.append("http")
        return changed

    def reload(self) -> tuple[bool, str]:
        """
        Load the configuration file again and switch to it; a bad file is
        rejected with the same message as at start-up, and the running
        configuration keeps serving.
        """
        source = self.config.source
        try:
            new = self.load(source)
            parts = self._build(new, self.parts.current)  # everything the new parts need must work
        except ConfigError as e:
            log.error("reload rejected: bad configuration: {error}; still serving the "
                      "configuration loaded before", error=str(e))
            return False, f"bad configuration: {e}; kept the running configuration"
        except Exception as e:
            # One line; the traceback only for --log-level debug.
            log.failure("reload rejected", level=LogLevel.debug)
            log.error("reload rejected: {error}; still serving the configuration loaded before",
                      error=f"{type(e).__name__}: {e}")
            return False, f"reload failed: {type(e).__name__}: {e}; kept the running configuration"
        later = self._restart_only(new)
        if new.dhcp.mode != self.parts.current.dhcp.mode:
            # Port 67 runs the protocol of the mode pxed started in: it keeps
            # the settings of that mode until the restart.
            parts = replace(parts, dhcp=self.parts.current.dhcp)
        self.apply(new, parts)
        note = f" ({', '.join(later)} changes need a restart)" if later else ""
        log.info("reloaded the configuration from {source}{note}", source=source, note=note)
        return True, f"reloaded {source}{note}{self._reload_store()}"

    def _reload_store(self) -> str:
        """
        Re-read the state store; on failure keep the state in memory and
        say so (the configuration itself was good and is in use).
        """
        try:
            self.store.reload()
        except StateFileError as e:
            log.error("reload: cannot re-read the state file: {error}; keeping the 'once' flags "
                      "from before (the next change rewrites the file from them)", error=str(e))
            return f"; state file not re-read: {e}; kept the state from before"
        return ""

    def startService(self) -> None:
        super().startService()
        self._prepare_images()

    def _prepare_images(self) -> None:
        """
        Say once, at start-up, why ARM64 clients will get no answer, if
        the GRUB image cannot be built.  (Images are built for the
        addresses pxed answers from, when it first does.)
        """
        images, config = self.parts.current.images, self.config
        if images is None or "arm64-uefi" in config.bootloaders:
            return
        problem = images.problem()
        if problem is not None:
            log.warn("ARM64 UEFI clients will get no answer: {problem} (or name a program "
                     "under bootloaders.arm64-uefi; arm64: false silences this)", problem=problem)

    def stopService(self) -> Deferred[Any]:
        super().stopService()
        pools = self.parts.current.pools
        return gatherResults([pool.closeCachedConnections() for pool in pools])

