# -*- test-case-name: tests.test_grub_image -*-
"""
The GRUB images of a L{pxed.grub.image.GrubImageCache} as TFTP content,
with the module directory GRUB falls back to for what an image lacks.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from zope.interface import implementer

from pxed.grub.image import GrubImageCache, GrubImageError
from pxed.tftp.source import FileNotFound, FilesystemSource, IFileSource, MappingSource, name_parts

__all__ = ["GrubImageSource"]


@implementer(IFileSource)
class GrubImageSource:
    """
    What TFTP serves of a L{GrubImageCache}: the image for each advertised
    address under L{GrubImageCache.name}, and the platform's modules under
    C{grub/arm64-efi/} (GRUB loads a module a configuration names but the
    image lacks from C{$prefix/arm64-efi/}).

    Only addresses the cache was told pxed advertises are built on a
    client's request: a client naming other addresses makes no new files.
    """

    def __init__(self, cache: GrubImageCache) -> None:
        self.cache = cache

    def _modules(self, parts: list[str], filename: str) -> Deferred[Any]:
        try:
            directory = self.cache.modules_dir()
        except GrubImageError:
            return defer.fail(FileNotFound(filename))
        return FilesystemSource(directory).open("/".join(parts), ("", 0))

    def open(self, filename: str, peer: tuple[str, int]) -> Deferred[Any]:
        try:
            parts = name_parts(filename)
        except Exception:
            return defer.fail()
        if parts[:2] == ["grub", self.cache.platform] and len(parts) > 2:
            return self._modules(parts[2:], filename)
        address = self.cache.address_of("/".join(parts))
        if address is None or not self.cache.servable(address):
            return defer.fail(FileNotFound(filename))
        d = self.cache.image(address)
        d.addCallback(lambda path: MappingSource({filename: path}).open(filename, peer))
        return d
