# -*- test-case-name: tests.test_testing -*-
"""
Fakes and builders for testing pxed, and programs that embed it, with
trial: what pxed's own tests use, so test modules need not import each
other.

  - L{pxed.testing.packets}: DHCP requests as firmware and iPXE send them,
    a packet with fields changed, a datagram transport that records
    replies sent out of an interface.
  - L{pxed.testing.tftp}: a fake reactor (a L{twisted.internet.task.Clock}
    whose C{listenUDP} hands out recording transports), a TFTP client
    driven by that clock with no socket at all, and a raw UDP client and a
    trial test case for a server on 127.0.0.1.
  - L{pxed.testing.http}: an in-memory HTTP client for pxed's web
    resources (L{treq.testing.StubTreq}).
  - L{pxed.testing.policy}: policies and match helpers tests share.
  - L{pxed.testing.dhcp}: an address prober for the DHCP server, on a clock.
  - L{pxed.testing.leases}: the contract every lease store keeps, as a
    mixin your own store's tests can run.
  - L{pxed.testing.postgres}: a throw-away PostgreSQL server (Debian's
    binaries, a temporary directory, a free port on 127.0.0.1) for tests
    of the shared state.

Nothing here is used by the server itself.
"""
