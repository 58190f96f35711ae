# -*- test-case-name: tests.test_lab -*-
"""
QEMU command lines for the two kinds of lab client.

Kept apart from the namespace plumbing so the firmware choices (which were
found by trial on these machines, see docs/pxe-facts.md) live in one place:

  - C{bios}: SeaBIOS has no PXE stack of its own; the e1000's option ROM that
    QEMU loads from /usr/lib/ipxe/qemu/ is iPXE, so the client speaks as iPXE
    from its first DHCP packet.
  - C{uefi}: OVMF with EDK2's own PXE on virtio-net (C{romfile=} empty, or the
    client would be iPXE's EFI driver instead); it uses the 4011 boot server
    path, fetches an iPXE binary by TFTP, and that iPXE does its own DHCP.
  - C{arm64}: an ARM64 machine (C{virt}, Cortex-A57) with AAVMF, EDK2's
    PXE on virtio-net again (architecture 11), console on C{ttyAMA0}; it
    boots the GRUB image pxed builds.

KVM is deliberately never used: on these machines guests hang under KVM and
C{-cpu host} aborts, so everything runs under TCG.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pxed.machine import is_mac

QEMU = "qemu-system-x86_64"
QEMU_ARM64 = "qemu-system-aarch64"
AAVMF_CODE = Path("/usr/share/AAVMF/AAVMF_CODE.fd")
AAVMF_VARS = Path("/usr/share/AAVMF/AAVMF_VARS.fd")
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
#: OVMF built for Secure Boot with Microsoft's keys enrolled and Secure Boot
#: on (it needs SMM, and its variables in the secure flash).
OVMF_SB_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.ms.fd")
OVMF_SB_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.ms.fd")
IPXE_QEMU_ROMS = Path("/usr/lib/ipxe/qemu")
FIRMWARES = ("bios", "uefi")
#: Also accepted by L{qemu_argv}: OVMF doing UEFI HTTP Boot (no PXE), an
#: ARM64 machine with AAVMF, and OVMF with Secure Boot enforced.
ALL_FIRMWARES = (*FIRMWARES, "uefi-http", "arm64", "arm64-http", "uefi-sb")



def check_mac(mac: str) -> str:
    """
    Return C{mac} lower-cased, or raise C{ValueError}.

    A multicast MAC (low bit of the first octet set) is refused because QEMU
    accepts it but no DHCP server will answer such a client, which would look
    like a server bug.
    """
    mac = mac.lower()
    if not is_mac(mac):
        raise ValueError(f"not a MAC address: {mac!r}")
    if int(mac[:2], 16) & 1:
        raise ValueError(f"multicast MAC address: {mac!r}")
    return mac


def _common(qemu: str, serial_log: Path, tap: str, memory_mb: int) -> list[str]:
    return [
        qemu,
        "-accel", "tcg",
        "-m", str(memory_mb),
        "-smp", "1",
        "-nographic",
        "-monitor", "none",
        "-parallel", "none",
        "-serial", f"file:{serial_log}",
        "-no-reboot",
        "-netdev", f"tap,id=net0,ifname={tap},script=no,downscript=no",
    ]  # fmt: skip


def _arm64_argv(serial_log: Path, mac: str, workdir: Path, tap: str, memory_mb: int) -> list[str]:
    """
    An ARM64 UEFI machine: QEMU's C{virt} board, AAVMF's code read-only and
    a fresh copy of its variables, EDK2's own PXE on virtio-net.
    """
    if shutil.which(QEMU_ARM64) is None:
        raise FileNotFoundError(f"{QEMU_ARM64} not found: install the Debian package "
                                "qemu-system-arm")
    for path in (AAVMF_CODE, AAVMF_VARS):
        if not path.is_file():
            raise FileNotFoundError(f"{path} missing: install the Debian package "
                                    "qemu-efi-aarch64")
    variables = workdir / f"AAVMF_VARS-{mac.replace(':', '')}.fd"
    shutil.copyfile(AAVMF_VARS, variables)
    return [
        *_common(QEMU_ARM64, serial_log, tap, memory_mb),
        "-machine", "virt",
        "-cpu", "cortex-a57",
        "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={AAVMF_CODE}",
        "-drive", f"if=pflash,format=raw,unit=1,file={variables}",
        "-device", f"virtio-net-pci,netdev=net0,mac={mac},romfile=,bootindex=1",
        "-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=no",
    ]  # fmt: skip


def qemu_argv(
    firmware: str,
    serial_log: Path,
    mac: str,
    workdir: Path,
    tap: str = "tap0",
    memory_mb: int = 512,
) -> list[str]:
    """
    Build the QEMU command line for one network boot.

    For UEFI a fresh copy of OVMF_VARS is written into C{workdir} for every
    call: a variable store left over from an earlier boot can hold a changed
    boot order and make runs differ.

    @raise ValueError: unknown firmware or bad MAC.
    @raise FileNotFoundError: QEMU or OVMF missing (names the package).
    """
    mac = check_mac(mac)
    for path in (serial_log, workdir):
        # QEMU option syntax splits on commas; a path with one would be cut.
        if "," in str(path):
            raise ValueError(f"QEMU cannot take a path containing a comma: {path}")
    if firmware in ("arm64", "arm64-http"):
        argv = _arm64_argv(serial_log, mac, workdir, tap, memory_mb)
        if firmware == "arm64-http":
            # No PXE: AAVMF's first network boot option is "UEFI HTTPv4".
            argv += ["-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=no"]
        return argv
    if shutil.which(QEMU) is None:
        raise FileNotFoundError(f"{QEMU} not found: install the Debian package qemu-system-x86")
    argv = [*_common(QEMU, serial_log, tap, memory_mb), "-vga", "none"]
    if firmware == "bios":
        if not IPXE_QEMU_ROMS.is_dir():
            raise FileNotFoundError(f"{IPXE_QEMU_ROMS} missing: install the Debian package ipxe")
        argv += [
            "-machine", "pc",
            "-device", f"e1000,netdev=net0,mac={mac},bootindex=1",
        ]  # fmt: skip
    elif firmware in ("uefi", "uefi-http", "uefi-sb"):
        secure = firmware == "uefi-sb"
        code, template = (OVMF_SB_CODE, OVMF_SB_VARS) if secure else (OVMF_CODE, OVMF_VARS)
        for path in (code, template):
            if not path.is_file():
                raise FileNotFoundError(f"{path} missing: install the Debian package ovmf")
        variables = workdir / f"OVMF_VARS-{mac.replace(':', '')}.fd"
        shutil.copyfile(template, variables)
        if secure:
            # The Secure Boot build keeps its variables behind SMM.
            argv += ["-global", "driver=cfi.pflash01,property=secure,value=on"]
        argv += [
            "-machine", "q35,smm=on" if secure else "q35",
            "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
            "-drive", f"if=pflash,format=raw,unit=1,file={variables}",
            "-device", f"virtio-net-pci,netdev=net0,mac={mac},romfile=,bootindex=1",
            # Skip EDK2's IPv6 PXE attempt; keep IPv4 (disabling that removes
            # the PXEv4 boot entry too).
            "-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=no",
        ]  # fmt: skip
        if firmware == "uefi-http":
            # No PXE at all, so OVMF's first network boot option is "UEFI
            # HTTPv4": EDK2's HTTP Boot client with vendor class HTTPClient.
            argv += ["-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=no"]
    else:
        raise ValueError(f"unknown firmware {firmware!r}: expected one of {ALL_FIRMWARES}")
    return argv
