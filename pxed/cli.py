# -*- test-case-name: tests.test_cli -*-
"""
The pxed command: tools around the server (which "twistd pxed" runs).

  pxed check --config FILE
      validate a configuration, as startup would, and exit
  pxed explain --config FILE (--pcap CAPTURE | --hex PACKET) [--address A]
               [--interface NAME]
      print what pxed would answer to each DHCP packet, without a socket
  pxed doctor --config FILE [--interface NAME] [--mac MAC]
      broadcast a PXE DISCOVER (BIOS and UEFI), list every server that
      answers, check ports, files, TFTP and HTTP; exit 1 if a boot would fail
  pxed reinstall MAC --config FILE [--rule NAME]
      clear the machine's 'once' flags (through the running server when
      policy.admin is set, else in the state file)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from pxed import __version__
from pxed.config import Config, ConfigError, check_host, load_config

__all__ = ["main"]

DEFAULT_CONFIG = "/etc/pxed/pxed.yaml"


def _address(value: str) -> str:
    import ipaddress

    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an IPv4 address") from None


def _mac(value: str) -> str:
    import re

    mac = value.strip().lower().replace("-", ":")
    if not re.fullmatch(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}", mac):
        raise argparse.ArgumentTypeError(f"{value!r} is not a MAC address like 52:54:00:12:34:56")
    return mac


def _parser() -> argparse.ArgumentParser:
    # The docstring is plain text: it is the --help text.
    parser = argparse.ArgumentParser(prog="pxed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"pxed {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="validate a configuration file")
    check.add_argument("--config", "-c", default=DEFAULT_CONFIG)
    ex = sub.add_parser("explain", help="what pxed would answer to captured DHCP packets")
    ex.add_argument("--config", "-c", default=DEFAULT_CONFIG)
    source = ex.add_mutually_exclusive_group(required=True)
    source.add_argument("--pcap", type=Path, help="a pcap or pcapng capture")
    source.add_argument("--hex", help="one DHCP packet (the UDP payload) in hex")
    ex.add_argument("--port", type=int, default=None,
                    help="with --hex: the port it was sent to (default: the DHCP port)")
    ex.add_argument("--source", default="0.0.0.0:68",
                    help="with --hex: the sender as ADDRESS:PORT (default 0.0.0.0:68)")
    ex.add_argument("--address", type=_address, default=None,
                    help="the address of the interface the packets arrived on")
    ex.add_argument("--interface", default=None,
                    help="the name of the interface the packets arrived on")
    doctor = sub.add_parser("doctor", help="find what would stop machines from booting: other "
                                           "boot servers, ports, files, TFTP, HTTP")
    doctor.add_argument("--config", "-c", default=DEFAULT_CONFIG)
    doctor.add_argument("--interface", default=None,
                        help="the interface the clients are on (default: server.interface, or "
                             "the one with server.address)")
    doctor.add_argument("--mac", type=_mac, default=None,
                        help="ask as this machine (default: the interface's own MAC)")
    doctor.add_argument("--wait", type=float, default=3.0,
                        help="seconds to collect offers (default 3)")
    again = sub.add_parser("reinstall", help="clear a machine's 'once' flags, so its next boot "
                                             "goes through its 'once' rules again")
    again.add_argument("mac", type=_mac)
    again.add_argument("--config", "-c", default=DEFAULT_CONFIG)
    again.add_argument("--rule", default=None, help="clear only this rule's flag")
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None,
         err: TextIO | None = None) -> int:
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(f"pxed: bad configuration: {e}", file=err)
        return 1
    if args.command == "check":
        try:
            check_host(config)
        except ConfigError as e:
            print(f"pxed: bad configuration: {e}", file=err)
            return 1
        print(f"pxed: {args.config} is valid", file=out)
        return 0
    if args.command == "doctor":
        from pxed.doctor import diagnose

        return diagnose(config, out, args.interface, args.mac, min(max(args.wait, 0.5), 30.0))
    if args.command == "reinstall":
        from pxed.admin import reinstall

        ok, message = reinstall(config, args.mac, args.rule)
        print(f"pxed: {message}", file=out if ok else err)
        return 0 if ok else 1
    return _explain(args, config, out, err)


def _explain(args: argparse.Namespace, config: Config, out: TextIO, err: TextIO) -> int:
    from pxed.explain import CaptureError, Datagram, explain, read_capture, render

    if args.pcap is not None:
        try:
            datagrams = read_capture(args.pcap)
        except CaptureError as e:
            print(f"pxed: {e}", file=err)
            return 1
    else:
        try:
            payload = bytes.fromhex(args.hex.replace(":", "").replace(" ", ""))
            host, _, port = args.source.rpartition(":")
            source = (_address(host), int(port))
        except (ValueError, argparse.ArgumentTypeError) as e:
            print(f"pxed: {e}", file=err)
            return 1
        dport = args.port if args.port is not None else config.server.ports.dhcp
        broadcast = dport == config.server.ports.dhcp
        dest = args.address or ("255.255.255.255" if broadcast else "0.0.0.0")
        datagrams = [Datagram(1, source, (dest, dport), payload)]
    count = 0
    for result in explain(datagrams, config, args.address, args.interface):
        if count:
            print(file=out)
        print(render(result), file=out)
        count += 1
    if count == 0:
        print("pxed: no DHCP packets found", file=err)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
