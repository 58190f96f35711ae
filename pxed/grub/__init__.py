# -*- test-case-name: tests.test_grub_image -*-
"""
GRUB as a boot program pxed serves: the ARM64 image it builds itself
(L{pxed.grub.image}).
"""
