# -*- test-case-name: tests.test_cli -*-
"""
pxed: a network boot server (ProxyDHCP, PXE boot server, TFTP, HTTP) on
Twisted.  C{__version__} is the installed distribution's version.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pxed")
except PackageNotFoundError:  # run from a checkout that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
