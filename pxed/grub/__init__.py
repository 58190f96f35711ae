# -*- test-case-name: tests.test_grub_config -*-
"""
GRUB clients: the ARM64 image pxed builds itself (L{pxed.grub.image}),
the configuration pxed generates for every GRUB client from the policy
(L{pxed.grub.config}, pure) and the TFTP source that serves it with the
files and beacon it names (L{pxed.grub.source}).
"""
