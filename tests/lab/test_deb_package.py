"""The Debian packages of scripts/build-deb.sh: built, inspected, then installed, run and purged for real.

The build uses ``--no-gui`` (the client package without PySide6: seconds instead of minutes, a few MB
from PyPI instead of a hundred); the layout, the maintainer scripts and the venv relocation are the
same as in the full build.  Installing happens with dpkg inside a chroot on a throwaway overlay of
this very system, in a private mount namespace: the maintainer scripts really run (addgroup,
deb-systemd-helper, the configuration copy, bytecode compilation, purge), and the host is untouched.

Needs root, dpkg-dev (dpkg-shlibdeps), python3-venv, overlayfs, and PyPI for pyroute2 and psutil.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = [pytest.mark.lab, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
BUILD_DEB = ROOT / "scripts" / "build-deb.sh"
LINUX = ROOT / "installers" / "linux"
TOOLS = ("dpkg-deb", "dpkg-shlibdeps", "objdump", "unshare", "chroot", "mount")
ICON_SIZES = (16, 22, 24, 32, 48, 64, 128, 256)


@dataclass(frozen=True)
class Built:
    client: Path
    gateway: Path
    version: str
    arch: str
    python: str
    build_tmp: Path
    """TMPDIR of the build: its staging paths must not survive in the packages."""


def run(argv: Sequence[str | Path], timeout: float = 120, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout, env=env, check=False)
    assert done.returncode == 0, f"{argv} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"missing tools: {', '.join(missing)} (apt-get install dpkg-dev binutils util-linux)")
    if not Path("/usr/bin/python3").exists():
        pytest.skip("needs Debian's /usr/bin/python3")
    out = tmp_path_factory.mktemp("debs")
    build_tmp = tmp_path_factory.mktemp("build-tmp")
    run([BUILD_DEB, "--no-gui", "--out", out], timeout=240, env={**os.environ, "TMPDIR": str(build_tmp)})
    with (ROOT / "pyproject.toml").open("rb") as f:
        version = tomllib.load(f)["project"]["version"]
    arch = run(["dpkg", "--print-architecture"]).strip()
    python = "python" + run(["/usr/bin/python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"]).strip()
    return Built(
        client=out / f"m6t_{version}_{arch}.deb",
        gateway=out / f"m6t-gateway_{version}_{arch}.deb",
        version=version,
        arch=arch,
        python=python,
        build_tmp=build_tmp,
    )


def control(deb: Path) -> dict[str, str]:
    fields: dict[str, str] = {}
    key = ""
    for line in run(["dpkg-deb", "-f", deb]).splitlines():
        if line.startswith(" ") and key:
            fields[key] += "\n" + line
        else:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def depends(deb: Path) -> set[str]:
    """The package names in Depends, without versions."""
    return {item.split()[0] for item in control(deb)["Depends"].split(",")}


def extract(deb: Path, into: Path) -> Path:
    run(["dpkg-deb", "-x", deb, into])
    run(["dpkg-deb", "-e", deb, into / "DEBIAN"])
    return into


def in_overlay(debs: Sequence[Path], script: str, work: Path) -> str:
    """Run ``script`` (sh) as root in a chroot on a throwaway overlay of / holding ``debs`` in /root.

    Everything happens in a private mount namespace: the overlay, its tmpfs and every change made
    inside vanish with it.  Returns what the script printed; fails the test if it exits non-zero.
    """
    outer = work / "outer.sh"
    inner = work / "inner.sh"
    inner.write_text("set -eu\nexport DEBIAN_FRONTEND=noninteractive\n" + script, encoding="utf-8")
    copies = "\n".join(f'cp "{deb}" "$m/root/"' for deb in debs)
    outer.write_text(
        f"""set -eu
t="{work}/overlay"
mkdir -p "$t"
mount -t tmpfs tmpfs "$t"
mkdir "$t/upper" "$t/work" "$t/merged"
m="$t/merged"
mount -t overlay overlay -o lowerdir=/,upperdir="$t/upper",workdir="$t/work" "$m"
mount --rbind /dev "$m/dev"
mount -t proc proc "$m/proc"
mount -t tmpfs tmpfs "$m/run"
{copies}
cp "{inner}" "$m/root/inner.sh"
chroot "$m" /bin/sh /root/inner.sh
""",
        encoding="utf-8",
    )
    return run(["unshare", "--mount", "--propagation", "private", "/bin/sh", outer], timeout=180)


# --------------------------------------------------------------------------------------- control


def test_client_package_control(built: Built) -> None:
    fields = control(built.client)
    assert fields["Package"] == "m6t"
    assert fields["Version"] == built.version
    assert fields["Architecture"] == built.arch
    assert {built.python, "adduser", "iproute2", "libc6"} <= depends(built.client)
    assert int(fields["Installed-Size"]) > 1000


def test_gateway_package_control(built: Built) -> None:
    fields = control(built.gateway)
    assert fields["Package"] == "m6t-gateway"
    assert fields["Version"] == built.version
    deps = depends(built.gateway)
    assert {built.python, "procps"} <= deps  # procps: the unit's ExecStartPre runs sysctl
    # Nothing of the desktop: a gateway is a server.
    assert not [d for d in deps if d.startswith(("libx", "libgl", "libegl", "libwayland", "adduser"))]
    # The kernel fast lane's binding: recommended, linked into the venv (the gateway runs without it).
    assert fields["Recommends"] == "python3-nftables"


def test_maintainer_scripts_and_conffiles(built: Built, tmp_path: Path) -> None:
    for deb, name in ((built.client, "m6t"), (built.gateway, "m6t-gateway")):
        tree = extract(deb, tmp_path / name)
        for script in ("postinst", "prerm", "postrm"):
            path = tree / "DEBIAN" / script
            assert path.read_bytes() == (LINUX / "debian" / name / script).read_bytes()
            assert path.stat().st_mode & 0o777 == 0o755
            run(["sh", "-n", path])
        assert (tree / "DEBIAN" / "md5sums").stat().st_size > 0
    # The autostart entry is the only file in /etc; the configuration is not a conffile (see postinst).
    conffiles = (tmp_path / "m6t" / "DEBIAN" / "conffiles").read_text(encoding="utf-8").split()
    assert conffiles == ["/etc/xdg/autostart/m6t-tray.desktop"]
    assert not (tmp_path / "m6t-gateway" / "DEBIAN" / "conffiles").exists()


# ------------------------------------------------------------------------------------------ files


def test_client_package_files(built: Built, tmp_path: Path) -> None:
    tree = extract(built.client, tmp_path)
    for script in ("m6t", "m6t-helper", "m6t-tray"):
        link = tree / "usr" / "bin" / script
        assert link.is_symlink()
        assert os.readlink(link) == f"/opt/m6t/bin/{script}"
        assert (tree / "opt" / "m6t" / "bin" / script).read_text(encoding="utf-8").startswith("#!/opt/m6t/bin/python\n")
    assert (tree / "lib/systemd/system/m6t-helper.service").read_bytes() == (LINUX / "m6t-helper.service").read_bytes()
    assert (tree / "usr/share/applications/m6t-tray.desktop").read_bytes() == (LINUX / "m6t-tray.desktop").read_bytes()
    autostart = tree / "etc/xdg/autostart/m6t-tray.desktop"
    assert autostart.read_bytes() == (LINUX / "m6t-tray-autostart.desktop").read_bytes()
    for size in ICON_SIZES:
        assert (tree / f"usr/share/icons/hicolor/{size}x{size}/apps/m6t.png").is_file(), size
    assert (tree / "usr/share/icons/hicolor/scalable/apps/m6t.svg").is_file()
    example = tree / "usr/share/m6t/client.example.toml"
    assert example.read_bytes() == (LINUX / "client.example.toml").read_bytes()
    for page in ("man1/m6t.1.gz", "man8/m6t-helper.8.gz"):
        assert (tree / "usr/share/man" / page).is_file(), page
    for doc in ("copyright", "changelog.gz"):
        assert (tree / "usr/share/doc/m6t" / doc).is_file(), doc
    assert (tree / "usr/share/lintian/overrides/m6t").is_file()
    # The venv links to Debian's interpreter by its versioned name.
    assert os.readlink(tree / "opt/m6t/bin" / built.python) == f"/usr/bin/{built.python}"


def test_gateway_package_files(built: Built, tmp_path: Path) -> None:
    tree = extract(built.gateway, tmp_path)
    assert os.readlink(tree / "usr/bin/m6t-gateway") == "/opt/m6t-gateway/bin/m6t-gateway"
    assert sorted(p.name for p in (tree / "usr/bin").iterdir()) == ["m6t-gateway"]
    unit = tree / "lib/systemd/system/m6t-gateway.service"
    assert unit.read_bytes() == (LINUX / "m6t-gateway.service").read_bytes()
    example = tree / "usr/share/m6t-gateway/gateway.example.toml"
    assert example.read_bytes() == (LINUX / "gateway.example.toml").read_bytes()
    assert (tree / "usr/share/man/man8/m6t-gateway.8.gz").is_file()
    assert not (tree / "opt/m6t-gateway/lib" / built.python / "site-packages/PySide6").exists()
    binding = tree / "opt/m6t-gateway/lib" / built.python / "site-packages/nftables"
    assert os.readlink(binding) == "/usr/lib/python3/dist-packages/nftables"


def test_packages_are_relocated_and_owned_by_root(built: Built, tmp_path: Path) -> None:
    for deb in (built.client, built.gateway):
        listing = run(["dpkg-deb", "-c", deb]).splitlines()
        assert listing
        assert all(line.split()[1] == "root/root" for line in listing)
        tree = extract(deb, tmp_path / deb.stem)
        staging = str(built.build_tmp).encode()
        leftovers = [
            p for p in (tree / "opt").rglob("*") if p.is_file() and not p.is_symlink() and staging in p.read_bytes()
        ]
        assert not leftovers, f"the build's staging path is left in {leftovers[:5]}"
        assert not list((tree / "opt").rglob("__pycache__"))
        assert not list((tree / "opt").rglob("direct_url.json"))


# ------------------------------------------------------------------------ install, run, purge


def test_client_install_run_and_purge(built: Built, tmp_path: Path) -> None:
    output = in_overlay(
        [built.client],
        f"""
dpkg -i /root/{built.client.name}
echo "group: $(getent group m6t | cut -d: -f1)"
echo "config: $(cmp /etc/m6t/client.toml /usr/share/m6t/client.example.toml && echo copied)"
echo "enabled: $(readlink /etc/systemd/system/multi-user.target.wants/m6t-helper.service)"
echo "compiled: $(find /opt/m6t -name '*.pyc' | wc -l)"
echo "verify: [$(dpkg --verify m6t)]"
echo "version: $(/opt/m6t/bin/python -c 'import importlib.metadata as m; print(m.version("m6t"))')"
m6t-helper --help | head -n 1
# The helper for real, in a network namespace of its own: its socket answers the CLI.
unshare --net sh -c '
  m6t-helper --config /etc/m6t/client.toml --socket /tmp/h.sock --state-dir /tmp/state --foreground \
    2>/tmp/helper.log &
  pid=$!
  for _ in $(seq 100); do [ -S /tmp/h.sock ] && break; sleep 0.1; done
  m6t --socket /tmp/h.sock status --json >/tmp/status.json || true
  kill -TERM $pid
  wait $pid || true
'
echo "status: $(tr '\\n' ' ' </tmp/status.json)"
echo "helper log: $(tr '\\n' ' ' </tmp/helper.log)"
# An operator's edit survives an upgrade (here a reinstall): the configuration is not replaced.
echo "# edited" >>/etc/m6t/client.toml
dpkg -i /root/{built.client.name}
echo "kept: $(tail -n 1 /etc/m6t/client.toml)"
dpkg --purge m6t
echo "after purge: group=$(getent group m6t || echo none) etc=$(ls /etc/m6t 2>/dev/null | wc -l) \
opt=$(test -e /opt/m6t && echo left || echo gone) \
enabled=$(test -e /etc/systemd/system/multi-user.target.wants/m6t-helper.service && echo yes || echo no)"
""",
        tmp_path,
    )
    lines = {line.partition(": ")[0]: line.partition(": ")[2] for line in output.splitlines() if ": " in line}
    assert lines["group"] == "m6t"
    assert lines["config"] == "copied"
    assert lines["enabled"] == "/lib/systemd/system/m6t-helper.service"
    assert int(lines["compiled"]) > 50
    assert lines["verify"] == "[]"
    assert lines["version"] == built.version
    assert "usage: m6t-helper" in output
    assert '"state"' in lines["status"], output
    assert lines["kept"] == "# edited"
    assert lines["after purge"] == "group=none etc=0 opt=gone enabled=no"


def test_gateway_install_configure_and_purge(built: Built, tmp_path: Path) -> None:
    output = in_overlay(
        [built.gateway],
        f"""
dpkg -i /root/{built.gateway.name}
echo "config: $(cmp /etc/m6t/gateway.toml /usr/share/m6t-gateway/gateway.example.toml && echo copied)"
echo "enabled: $(test -e /etc/systemd/system/multi-user.target.wants/m6t-gateway.service && echo yes || echo no)"
# The unit's ExecStartPre, as systemd would run it.
/usr/bin/m6t-gateway check --config /etc/m6t/gateway.toml >/dev/null && echo "check: ok"
echo "verify: [$(dpkg --verify m6t-gateway)]"
dpkg --purge m6t-gateway
echo "after purge: etc=$(ls /etc/m6t 2>/dev/null | wc -l) opt=$(test -e /opt/m6t-gateway && echo left || echo gone)"
""",
        tmp_path,
    )
    lines = {line.partition(": ")[0]: line.partition(": ")[2] for line in output.splitlines() if ": " in line}
    assert lines["config"] == "copied"
    assert lines["enabled"] == "no"
    assert lines["check"] == "ok"
    assert lines["verify"] == "[]"
    assert lines["after purge"] == "etc=0 opt=gone"
