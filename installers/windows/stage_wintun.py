#!/usr/bin/env python3
"""Stages wintun.dll for the Windows installer, from the pytun-pmd3 wheel pinned in wintun.toml.

  stage_wintun.py [--dist DIR] [--wheel FILE]
      Downloads the pinned wheel with pip (or takes FILE), checks its sha256, takes the wintun.dll built for
      the processor of DIR/m6t-helper/m6t-helper.exe (read from its PE header), checks that DLL's sha256, and
      writes it as DIR/m6t-helper/wintun.dll, next to Wintun's license (wintun-LICENSE.txt).
  stage_wintun.py --check [--dist DIR]
      Checks that DIR/m6t-helper/wintun.dll is the pinned DLL for m6t-helper.exe's processor, and prints that
      architecture (amd64, arm64, x86 or arm).  build-installer.sh runs it before makensis.

DIR defaults to dist/pyinstaller, what scripts/build-pyinstaller.sh makes.  Any mismatch stops it with a
message and exit status 1, before anything is written.  Python >= 3.11 and pip, on any OS.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import struct
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PINS = HERE / "wintun.toml"
DLL = "wintun.dll"
LICENSE = "wintun-LICENSE.txt"
HELPER = "m6t-helper.exe"

MACHINES = {0x8664: "amd64", 0xAA64: "arm64", 0x014C: "x86", 0x01C4: "arm"}
"""IMAGE_FILE_MACHINE_* of the PE/COFF header, named as the wheel names its folders."""


class Refused(Exception):
    """A check failed: the message says which and what to do."""


@dataclass(frozen=True)
class Pins:
    name: str
    version: str
    file: str
    sha256: str
    dll_path: str
    license_path: str
    dlls: dict[str, str]

    @classmethod
    def load(cls, path: Path = PINS) -> Pins:
        with path.open("rb") as f:
            pins = tomllib.load(f)
        wheel = pins["wheel"]
        return cls(
            name=wheel["name"],
            version=wheel["version"],
            file=wheel["file"],
            sha256=wheel["sha256"],
            dll_path=wheel["dll_path"],
            license_path=wheel["license_path"],
            dlls=dict(pins["dll"]),
        )

    def dll_sha256(self, arch: str) -> str:
        if arch not in self.dlls:
            raise Refused(f"{PINS.name} pins no wintun.dll for {arch}")
        return self.dlls[arch]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pe_machine(data: bytes, name: str) -> str:
    """The architecture a PE file (program or DLL) is built for: the Machine field of its COFF header."""
    if len(data) < 0x40 or data[:2] != b"MZ":
        raise Refused(f"{name} is not a Windows program (no MZ header)")
    (pe,) = struct.unpack_from("<I", data, 0x3C)
    if len(data) < pe + 6 or data[pe : pe + 4] != b"PE\0\0":
        raise Refused(f"{name} is not a Windows program (no PE header)")
    (machine,) = struct.unpack_from("<H", data, pe + 4)
    if machine not in MACHINES:
        raise Refused(f"{name} is built for machine type {machine:#06x}, for which Wintun has no DLL")
    return MACHINES[machine]


def build_arch(helper_dir: Path) -> str:
    helper = helper_dir / HELPER
    if not helper.is_file():
        raise Refused(f"{helper} is missing: run scripts/build-pyinstaller.sh on Windows first")
    with helper.open("rb") as f:
        head = f.read(4096)  # PE headers sit within the first page
    return pe_machine(head, str(helper))


def download(pins: Pins, into: Path) -> Path:
    """The pinned wheel, downloaded by pip, which itself refuses a file with another sha256."""
    requirement = into / "requirement.txt"
    requirement.write_text(f"{pins.name}=={pins.version} --hash=sha256:{pins.sha256}\n", encoding="utf-8")
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--require-hashes"]
    done = subprocess.run([*pip, "--dest", str(into), "-r", str(requirement)], check=False)
    if done.returncode != 0:
        raise Refused(f"pip could not download {pins.name}=={pins.version} with the pinned sha256 (see above)")
    return into / pins.file


def wheel_members(pins: Pins, wheel: Path, arch: str) -> tuple[bytes, bytes]:
    """(wintun.dll for ``arch``, the license), from ``wheel`` once every pin is checked."""
    if not wheel.is_file():
        raise Refused(f"{wheel} is missing")
    data = wheel.read_bytes()
    if sha256(data) != pins.sha256:
        raise Refused(f"{wheel} has sha256 {sha256(data)}, not {pins.sha256} as pinned for {pins.file} in {PINS.name}")
    member = pins.dll_path.format(arch=arch)
    with zipfile.ZipFile(wheel) as archive:
        try:
            dll = archive.read(member)
            license_text = archive.read(pins.license_path)
        except KeyError as exc:
            raise Refused(f"{pins.file} has no {exc.args[0]}") from None
    check_dll(pins, dll, arch, f"{member} in {pins.file}")
    return dll, license_text


def check_dll(pins: Pins, dll: bytes, arch: str, name: str) -> None:
    pinned = pins.dll_sha256(arch)
    if sha256(dll) != pinned:
        raise Refused(f"{name} has sha256 {sha256(dll)}, not {pinned} as pinned for {arch} in {PINS.name}")
    # Also a check of the pins themselves: a hash filed under the wrong architecture.
    built_for = pe_machine(dll, name)
    if built_for != arch:
        raise Refused(f"{name} is built for {built_for}, not {arch}")


def write(path: Path, data: bytes) -> None:
    # Replaced in one step: a failed run never leaves half a DLL for makensis to package.
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as f:
        f.write(data)
    os.chmod(f.name, 0o644)  # as any other file of the build, not the temporary file's 0600
    os.replace(f.name, path)


def stage(dist: Path, wheel: Path | None) -> str:
    pins = Pins.load()
    helper_dir = dist / "m6t-helper"
    arch = build_arch(helper_dir)
    if wheel is not None:
        dll, license_text = wheel_members(pins, wheel, arch)
    else:
        with tempfile.TemporaryDirectory(prefix="m6t-wintun.") as downloads:
            dll, license_text = wheel_members(pins, download(pins, Path(downloads)), arch)
    write(helper_dir / LICENSE, license_text)
    write(helper_dir / DLL, dll)
    return arch


def check(dist: Path) -> str:
    pins = Pins.load()
    helper_dir = dist / "m6t-helper"
    arch = build_arch(helper_dir)
    staged = helper_dir / DLL
    if not staged.is_file():
        raise Refused(f"{staged} is missing: stage it with installers/windows/stage_wintun.py")
    check_dll(pins, staged.read_bytes(), arch, str(staged))
    return arch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="stage_wintun.py",
        description="Stage (or --check) the pinned wintun.dll next to m6t-helper.exe in the PyInstaller output.",
    )
    parser.add_argument("--dist", type=Path, default=ROOT / "dist" / "pyinstaller", help="PyInstaller output")
    parser.add_argument("--wheel", type=Path, help="take this wheel file instead of downloading it (still checked)")
    parser.add_argument("--check", action="store_true", help="check what is staged; print its architecture")
    args = parser.parse_args(argv)
    try:
        if args.check:
            if args.wheel is not None:
                parser.error("--check takes no --wheel")
            print(check(args.dist))
        else:
            arch = stage(args.dist, args.wheel)
            print(f"staged {DLL} ({arch}) in {args.dist / 'm6t-helper'}", file=sys.stderr)
    except Refused as exc:
        print(f"stage_wintun.py: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
