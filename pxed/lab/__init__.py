# -*- test-case-name: tests.test_lab -*-
"""
A development tool, not part of the server: a throw-away boot LAN in
network namespaces with QEMU machines, dnsmasq and a real pxed, for the
end-to-end tests, C{./scripts/demo} and C{python -m pxed.lab}.

Nothing in pxed's services imports it.  It ships in the package so the
demo and the tests run from an installed pxed too; it needs root, QEMU and
the Debian packages C{scripts/setup} installs.
"""
