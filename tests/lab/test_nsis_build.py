"""The Windows installer, compiled here with Debian's makensis by the real build-installer.sh.

The programs PyInstaller makes on Windows cannot be built on Linux: the PyInstaller output is made of
**stand-ins**, files at the places and with the names the NSIS script packages, good for this compile
check only (the helper's stand-in carries just the PE header fields the build reads: its machine type).
wintun.dll is the real one, staged by installers/windows/stage_wintun.py from the pytun-pmd3 wheel pinned
in installers/windows/wintun.toml.  So a syntax error in m6t.nsi, a file it names that the build does not
make, or a DLL that is not the pinned one fails here; what the installer does on Windows is checked by the
release workflow's smoke test (.github/workflows/release.yml).

Needs makensis and 7zz (apt-get install nsis 7zip) and PyPI for the wheel.
"""

from __future__ import annotations

import hashlib
import shutil
import struct
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Sequence
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[2]
WINDOWS = ROOT / "installers" / "windows"
STAGE = WINDOWS / "stage_wintun.py"
BUILD = WINDOWS / "build-installer.sh"
MACHINES = {"amd64": 0x8664, "arm64": 0xAA64, "x86": 0x014C, "arm": 0x01C4}

with (WINDOWS / "wintun.toml").open("rb") as _f:
    PINS = tomllib.load(_f)


def run(argv: Sequence[str | Path], *, ok: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout, check=False)
    if ok:
        assert done.returncode == 0, f"{argv} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done


def stand_in_program(arch: str) -> bytes:
    """Not a program: the MZ header, the offset of the PE header, and that header's machine type."""
    image = bytearray(0x100)
    image[:2] = b"MZ"
    struct.pack_into("<I", image, 0x3C, 0x80)
    image[0x80:0x84] = b"PE\0\0"
    struct.pack_into("<H", image, 0x84, MACHINES[arch])
    return bytes(image)


def stand_in_dist(where: Path, arch: str = "amd64") -> Path:
    """A PyInstaller output with the layout scripts/build-pyinstaller.sh makes, of stand-ins."""
    dist = where / "pyinstaller"
    helper, tray = dist / "m6t-helper", dist / "m6t-tray"
    (helper / "_internal").mkdir(parents=True)
    (tray / "_tray").mkdir(parents=True)
    (helper / "m6t-helper.exe").write_bytes(stand_in_program(arch))
    (helper / "m6t.exe").write_bytes(stand_in_program(arch))
    (helper / "_internal" / "python3.dll").write_text("stand-in\n")
    (tray / "m6t-tray.exe").write_bytes(stand_in_program(arch))
    (tray / "_tray" / "Qt6Core.dll").write_text("stand-in\n")
    return dist


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def tools() -> None:
    missing = [tool for tool in ("makensis", "7zz") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"missing {', '.join(missing)} (apt-get install nsis 7zip; scripts/setup.sh does)")


@pytest.fixture(scope="module")
def staged(tools: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stand-in amd64 build with wintun.dll staged as a release build does: downloaded by pip."""
    dist = stand_in_dist(tmp_path_factory.mktemp("amd64"))
    run([sys.executable, STAGE, "--dist", dist])
    return dist


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pinned wheel, for the tests that stage again without downloading it each time."""
    into = tmp_path_factory.mktemp("wheel")
    requirement = into / "requirement.txt"
    wheel = PINS["wheel"]
    requirement.write_text(f"{wheel['name']}=={wheel['version']} --hash=sha256:{wheel['sha256']}\n")
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--require-hashes"]
    run([*pip, "--dest", into, "-r", requirement])
    return into / str(wheel["file"])


def test_pins_name_a_sha256_per_architecture() -> None:
    assert set(PINS["dll"]) == set(MACHINES)
    for digest in [PINS["wheel"]["sha256"], *PINS["dll"].values()]:
        assert len(digest) == 64
        int(digest, 16)
    assert PINS["wheel"]["file"].startswith(f"{PINS['wheel']['name'].replace('-', '_')}-{PINS['wheel']['version']}-")


def test_staged_wintun_is_the_pinned_signed_dll_for_the_helpers_processor(staged: Path) -> None:
    dll = staged / "m6t-helper" / "wintun.dll"
    assert sha256(dll) == PINS["dll"]["amd64"]
    image = dll.read_bytes()
    (pe,) = struct.unpack_from("<I", image, 0x3C)
    assert struct.unpack_from("<H", image, pe + 4)[0] == MACHINES["amd64"]
    # Authenticode: the certificate table (data directory 4 of a PE32+ optional header) is not empty.
    # That the signature verifies is for Windows to say (and osslsigncode, see wintun.toml).
    _offset, size = struct.unpack_from("<II", image, pe + 24 + 112 + 4 * 8)
    assert size > 0
    assert (staged / "m6t-helper" / "wintun-LICENSE.txt").read_text().startswith("Prebuilt Binaries License")
    assert run([sys.executable, STAGE, "--check", "--dist", staged]).stdout == "amd64\n"


def test_build_installer_compiles_the_setup_with_the_pinned_dll(staged: Path, tmp_path: Path) -> None:
    built = run(["bash", BUILD, "--python", sys.executable, "--dist", staged, "--out", tmp_path])
    setup = Path(built.stdout.strip().splitlines()[-1])
    with (ROOT / "pyproject.toml").open("rb") as f:
        version = tomllib.load(f)["project"]["version"]
    assert setup == tmp_path / f"m6t-{version}-setup.exe"
    assert setup.read_bytes()[:2] == b"MZ"
    # What the installer carries: every file of the build, and the pinned DLL unchanged.
    listing = run(["7zz", "l", "-ba", "-slt", setup]).stdout
    packaged = {line.removeprefix("Path = ") for line in listing.splitlines() if line.startswith("Path = ")}
    built_files = {
        path.relative_to(staged / part).as_posix()
        for part in ("m6t-helper", "m6t-tray")
        for path in (staged / part).rglob("*")
        if path.is_file()
    }
    assert built_files <= packaged, built_files - packaged
    run(["7zz", "e", f"-o{tmp_path / 'out'}", setup, "wintun.dll"])
    assert sha256(tmp_path / "out" / "wintun.dll") == PINS["dll"]["amd64"]


def test_build_installer_refuses_a_dll_that_is_not_pinned(staged: Path, tmp_path: Path) -> None:
    dist = tmp_path / "pyinstaller"
    shutil.copytree(staged, dist)
    dll = dist / "m6t-helper" / "wintun.dll"
    image = bytearray(dll.read_bytes())
    image[-1] ^= 1  # a byte of the signature
    dll.write_bytes(bytes(image))
    done = run(["bash", BUILD, "--python", sys.executable, "--dist", dist, "--out", tmp_path / "out"], ok=False)
    assert done.returncode != 0
    assert f"not {PINS['dll']['amd64']} as pinned for amd64" in done.stderr
    assert not (tmp_path / "out").exists()


def test_makensis_errors_fail_the_build(staged: Path, tmp_path: Path) -> None:
    dist = tmp_path / "pyinstaller"
    shutil.copytree(staged, dist)
    (dist / "m6t-tray" / "m6t-tray.exe").unlink()
    done = run(["bash", BUILD, "--python", sys.executable, "--dist", dist, "--out", tmp_path / "out"], ok=False)
    assert done.returncode != 0
    assert "m6t-tray.exe is missing" in done.stdout + done.stderr
    assert not list((tmp_path / "out").glob("*.exe"))


def test_stage_takes_the_dll_of_the_helpers_processor(tools: None, wheel: Path, tmp_path: Path) -> None:
    dist = stand_in_dist(tmp_path, arch="arm64")
    run([sys.executable, STAGE, "--dist", dist, "--wheel", wheel])
    assert sha256(dist / "m6t-helper" / "wintun.dll") == PINS["dll"]["arm64"]
    # The installer is made for the helper's processor: arm64 builds compile too.
    built = run(["bash", BUILD, "--python", sys.executable, "--dist", dist, "--out", tmp_path / "out"])
    assert Path(built.stdout.strip().splitlines()[-1]).is_file()


def test_installer_refuses_32_bit_builds(tools: None, wheel: Path, tmp_path: Path) -> None:
    dist = stand_in_dist(tmp_path, arch="x86")
    run([sys.executable, STAGE, "--dist", dist, "--wheel", wheel])
    assert sha256(dist / "m6t-helper" / "wintun.dll") == PINS["dll"]["x86"]
    done = run(["bash", BUILD, "--python", sys.executable, "--dist", dist, "--out", tmp_path / "out"], ok=False)
    assert done.returncode != 0
    assert "amd64 or arm64 only" in done.stdout + done.stderr


def test_check_refuses_a_dll_for_another_processor(staged: Path, tmp_path: Path) -> None:
    dist = tmp_path / "pyinstaller"
    shutil.copytree(staged, dist)
    (dist / "m6t-helper" / "m6t-helper.exe").write_bytes(stand_in_program("arm64"))
    done = run([sys.executable, STAGE, "--check", "--dist", dist], ok=False)
    assert done.returncode == 1
    assert "as pinned for arm64" in done.stderr


def test_stage_refuses_a_wheel_with_another_sha256(tools: None, tmp_path: Path) -> None:
    dist = stand_in_dist(tmp_path)
    fake = tmp_path / PINS["wheel"]["file"]
    with zipfile.ZipFile(fake, "w") as archive:
        archive.writestr(PINS["wheel"]["dll_path"].format(arch="amd64"), stand_in_program("amd64"))
        archive.writestr(PINS["wheel"]["license_path"], "no license\n")
    done = run([sys.executable, STAGE, "--dist", dist, "--wheel", fake], ok=False)
    assert done.returncode == 1
    assert f"not {PINS['wheel']['sha256']} as pinned" in done.stderr
    assert sorted(p.name for p in (dist / "m6t-helper").iterdir()) == ["_internal", "m6t-helper.exe", "m6t.exe"]


def test_stage_refuses_a_helper_that_is_not_a_windows_program(tools: None, wheel: Path, tmp_path: Path) -> None:
    dist = stand_in_dist(tmp_path)
    (dist / "m6t-helper" / "m6t-helper.exe").write_text("#!/bin/sh\n")
    done = run([sys.executable, STAGE, "--dist", dist, "--wheel", wheel], ok=False)
    assert done.returncode == 1
    assert "m6t-helper.exe is not a Windows program" in done.stderr
    assert not (dist / "m6t-helper" / "wintun.dll").exists()
