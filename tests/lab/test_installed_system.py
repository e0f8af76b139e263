"""The packages as a user gets them: built with the tray, checked, installed into a booted Debian 12, purged.

``scripts/build-deb.sh`` builds both packages as they ship (the client with PySide6 and pyqtgraph).  lintian
finds no error and no warning in them (the packages' own overrides, each with its reason, are the only
exceptions), the desktop and autostart entries pass ``desktop-file-validate`` and the icons sit in the
hicolor theme at the sizes their directories say.

Then the installed system: a Debian 12 root (built once by mmdebstrap and cached, see :mod:`tests.lab.machine`)
booted twice with ``systemd-nspawn --boot``, inside the lab's gateway and mobile-node namespaces.  The gateway
package is installed, configured and enabled as an administrator would; on the laptop, ``apt-get install`` of
the client package, with nothing to download, starts ``m6t-helper.service`` under systemd with its sandbox;
an unprivileged user reads the status, is refused ``m6t up`` with a clear message, is let in by a polkit rule
and brings up a tunnel that reaches the Home Agent; ``apt-get purge`` leaves no unit, interface, route,
address, group or file behind, on either machine.  Then again with the gateway enrolled: keys made with
``m6t-gateway keys``, the laptop's in a root-only file, and keys changed by ``systemctl reload`` while the
mobile node keeps its state.

Needs root, the lab, dpkg-dev, lintian, desktop-file-utils, systemd-container, mmdebstrap and the package
archives (PyPI for the venvs, Debian's archive for the first root); ``scripts/setup.sh`` installs the tools.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from m6t.gateway.config import AccessMode, AccessSection
from m6t.lab import GW, HA, MN, LabError, StandardLab, configs, wait_until

if sys.platform != "linux":
    pytest.skip("Debian packages install on Linux", allow_module_level=True)
assert sys.platform == "linux"  # never fails (skipped above); tells mypy the rest is Linux-only

from tests.lab import machine as m  # noqa: E402 - Linux-only

pytestmark = [pytest.mark.lab, pytest.mark.timeout(2400)]

ROOT = Path(__file__).resolve().parents[2]
BUILD_DEB = ROOT / "scripts" / "build-deb.sh"
USER = "alice"
"""The desktop user of the machine: no member of the m6t group, allowed to connect by a polkit rule only."""
RULE_PATH = "/etc/polkit-1/rules.d/50-m6t-alice.rules"
RULE = """\
polkit.addRule(function(action, subject) {
    if (action.id == "org.m6t.connect" && subject.user == "alice") return polkit.Result.YES;
});
"""
DEBS_INSIDE = "/srv/m6t-debs"
HELPER_SOCKET = "/run/m6t/helper.sock"
CAP_CHOWN, CAP_FOWNER, CAP_NET_BIND_SERVICE, CAP_NET_ADMIN, CAP_NET_RAW = 0, 3, 10, 12, 13
HELPER_CAPABILITIES = (CAP_CHOWN, CAP_FOWNER, CAP_NET_ADMIN, CAP_NET_RAW)
"""m6t-helper.service's CapabilityBoundingSet."""
GATEWAY_PORTS = (3544, 4500)
"""The ports of the client's example configuration (its gateway address is the lab's too)."""

# What an install and a purge change that is theirs to change: apt's and dpkg's own records, logs and caches,
# and what systemd and the system's daemons keep while running.  Everything else the package touched must be
# as it was before it came.
VOLATILE = (
    "/var/cache/apt/",
    "/var/cache/debconf/",
    "/var/cache/ldconfig/",
    "/var/lib/apt/",
    "/var/lib/dpkg/",
    "/var/log/",
    "/var/lib/systemd/",
    "/run/systemd/",
    "/run/user/",
    "/run/udev/",
    "/tmp/systemd-private-",
    "/var/tmp/systemd-private-",
    "/var/lib/polkit-1/",
    "/run/adduser",  # adduser's lock file, left by every addgroup
)
KEPT = ("/var/lib/systemd/deb-systemd-helper-enabled/", "/var/lib/systemd/deb-systemd-helper-masked/")
"""Inside VOLATILE, what the package's scripts write and purge must undo."""


@dataclass(frozen=True)
class Packages:
    client: Path
    gateway: Path
    directory: Path


def run(argv: list[str], timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, check=False)


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> Packages:
    missing = [tool for tool in ("dpkg-deb", "dpkg-shlibdeps", "objdump") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"missing {', '.join(missing)} (apt-get install dpkg-dev binutils)")
    started = time.monotonic()
    prebuilt = os.environ.get("M6T_TEST_DEBS")
    if prebuilt:
        # While working on the tests only: packages built beforehand by scripts/build-deb.sh from this tree.
        out = Path(prebuilt)
        print(f"\npackages from M6T_TEST_DEBS={out}, not built")
    else:
        out = tmp_path_factory.mktemp("debs")
        done = run([str(BUILD_DEB), "--out", str(out)], timeout=1200)
        assert done.returncode == 0, f"build-deb.sh failed:\n{done.stdout}\n{done.stderr}"
        print(f"\nscripts/build-deb.sh (with the tray): {time.monotonic() - started:.0f} s")
    with (ROOT / "pyproject.toml").open("rb") as f:
        version = tomllib.load(f)["project"]["version"]
    arch = run(["dpkg", "--print-architecture"]).stdout.strip()
    return Packages(out / f"m6t_{version}_{arch}.deb", out / f"m6t-gateway_{version}_{arch}.deb", out)


def field(deb: Path, name: str) -> str:
    return run(["dpkg-deb", "--field", str(deb), name]).stdout.strip()


# ------------------------------------------------------------------------------------------ checks


def test_lintian_finds_no_error_or_warning(packages: Packages) -> None:
    if shutil.which("lintian") is None:
        pytest.skip("missing lintian (apt-get install lintian)")
    started = time.monotonic()
    done = run(
        [
            "lintian",
            "--fail-on",
            "error,warning",
            "--info",
            str(packages.client),
            str(packages.gateway),
        ],
        timeout=1500,
    )
    print(f"\nlintian ({time.monotonic() - started:.0f} s, exit {done.returncode}):\n{done.stdout}{done.stderr}")
    tags = [line for line in done.stdout.splitlines() if line[:2] in ("E:", "W:")]
    assert done.returncode == 0 and not tags, f"lintian:\n{done.stdout}\n{done.stderr}"
    # An override nothing needs any more hides the next real finding of its tag.
    assert "unused-override" not in done.stdout, done.stdout


def test_desktop_entries_validate_and_name_the_hicolor_icon(packages: Packages, tmp_path: Path) -> None:
    if shutil.which("desktop-file-validate") is None:
        pytest.skip("missing desktop-file-validate (apt-get install desktop-file-utils)")
    assert run(["dpkg-deb", "-x", str(packages.client), str(tmp_path)]).returncode == 0
    entries = [tmp_path / "usr/share/applications/m6t-tray.desktop", tmp_path / "etc/xdg/autostart/m6t-tray.desktop"]
    for entry in entries:
        done = run(["desktop-file-validate", str(entry)])
        # Warnings and hints print too, with exit 0: none is allowed.
        assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), f"{entry}:\n{done.stdout}{done.stderr}"
        text = entry.read_text()
        assert "\nIcon=m6t\n" in text and "\nExec=m6t-tray\n" in text
        assert (tmp_path / "usr/bin/m6t-tray").is_symlink()

    icons = tmp_path / "usr/share/icons/hicolor"
    pngs = sorted(icons.glob("*/apps/m6t.png"))
    # 48x48 is the size the icon theme specification requires every application to install.
    assert icons / "48x48/apps/m6t.png" in pngs
    for png in pngs:
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", png
        width, height = struct.unpack(">II", data[16:24])
        assert f"{width}x{height}" == png.parent.parent.name, f"{png} is {width}x{height}"
    svg = icons / "scalable/apps/m6t.svg"
    assert ET.parse(svg).getroot().tag == "{http://www.w3.org/2000/svg}svg"
    # Nothing under hicolor but the m6t icons, nowhere else (pixmaps are the old place).
    listing = run(["dpkg-deb", "-c", str(packages.client)]).stdout
    icon_files = [line.split()[-1] for line in listing.splitlines() if line.split()[-1].endswith((".png", ".svg"))]
    outside_venv = [path for path in icon_files if not path.startswith("./opt/")]
    assert sorted(outside_venv) == sorted(f"./{p.relative_to(tmp_path)}" for p in [*pngs, svg])


# --------------------------------------------------------------------------------- installed system


def test_a_root_is_keyed_by_every_input_and_needs_what_the_packages_name() -> None:
    relations = "python3.11, libc6 (>= 2.34), libgl1 | libgl1-mesa-glx, libstdc++6:amd64 (>= 11) , "
    assert m.package_names(relations) == ["python3.11", "libc6", "libgl1", "libstdc++6"]
    recipe = m.RootRecipe(packages=("systemd", "dbus"), users=(USER,), architecture="amd64")
    assert recipe.key() == m.RootRecipe(packages=("dbus", "systemd", "dbus"), users=(USER,), architecture="amd64").key()
    others = [
        m.RootRecipe(packages=("systemd",), users=(USER,), architecture="amd64"),
        m.RootRecipe(packages=("systemd", "dbus"), users=(), architecture="amd64"),
        m.RootRecipe(packages=("systemd", "dbus"), users=(USER,), architecture="arm64"),
        m.RootRecipe(packages=("systemd", "dbus"), users=(USER,), architecture="amd64", release="trixie"),
    ]
    assert len({recipe.key(), *(other.key() for other in others)}) == 1 + len(others)


@pytest.fixture(scope="module")
def root(packages: Packages) -> Path:
    reason = m.unavailable_reason(build=True)
    if reason is not None:
        pytest.skip(reason)
    needed = list(m.BASE_PACKAGES)
    for deb in (packages.client, packages.gateway):
        needed += m.package_names(field(deb, "Depends")) + m.package_names(field(deb, "Recommends"))
    arch = run(["dpkg", "--print-architecture"]).stdout.strip()
    recipe = m.RootRecipe(packages=tuple(sorted(set(needed))), users=(USER,), architecture=arch)
    built = m.cached_root(recipe)
    how = f"built in {built.seconds:.0f} s" if built.built_now else "from the cache"
    print(f"\nmachine root {built.path} ({len(recipe.packages)} packages asked for): {how}")
    return built.path


@dataclass(frozen=True)
class Snapshot:
    files: frozenset[str]
    groups: frozenset[str]
    units: str
    links: frozenset[str]
    addresses: frozenset[str]
    routes: frozenset[str]
    rules: frozenset[str]


def snapshot(machine: m.Machine) -> Snapshot:
    """What the package may leave behind, as seen in the machine."""
    found = machine.run(
        ["find", "/", "/run", "/tmp", "/var/tmp", "-xdev", "-path", "/proc", "-prune", "-o", "-print"], timeout=120
    ).stdout.splitlines()
    files = frozenset(p for p in found if not p.startswith(VOLATILE) or p.startswith(KEPT))
    groups = frozenset(line.split(":")[0] for line in machine.run(["getent", "group"]).stdout.splitlines())
    units = machine.run(["systemctl", "list-units", "--all", "--plain", "--no-legend", "m6t*"]).stdout
    units += machine.run(["systemctl", "list-unit-files", "--plain", "--no-legend", "m6t*"], check=False).stdout

    def ip(*argv: str) -> list[dict[str, Any]]:
        parsed: list[dict[str, Any]] = json.loads(machine.run(["ip", "-j", *argv]).stdout or "[]")
        return parsed

    links = frozenset(link["ifname"] for link in ip("link", "show"))
    addresses = frozenset(
        f"{link['ifname']} {info['local']}/{info['prefixlen']}"
        for link in ip("address", "show")
        for info in link.get("addr_info", [])
    )
    routes = frozenset(
        f"{family} {r.get('table', 'main')} {r['dst']} via {r.get('gateway', '-')} dev {r.get('dev', '-')}"
        for family in ("-4", "-6")
        for r in ip(family, "route", "show", "table", "all")
    )
    rules = frozenset(json.dumps(r, sort_keys=True) for family in ("-4", "-6") for r in ip(family, "rule", "show"))
    return Snapshot(files, groups, units, links, addresses, routes, rules)


def differences(before: Snapshot, after: Snapshot) -> list[str]:
    found = []
    for name in ("files", "groups", "links", "addresses", "routes", "rules"):
        old, new = getattr(before, name), getattr(after, name)
        if new - old:
            found.append(f"{name} left behind: {sorted(new - old)[:40]}")
        if old - new:
            found.append(f"{name} gone that were there before: {sorted(old - new)[:40]}")
    if after.units.strip():
        found.append(f"units left behind:\n{after.units}")
    return found


def status(machine: m.Machine) -> dict[str, Any]:
    done = machine.run(["m6t", "status", "--json"], user=USER)
    parsed: dict[str, Any] = json.loads(done.stdout)
    return parsed


def main_pid(machine: m.Machine, unit: str) -> str:
    return machine.run(["systemctl", "show", "--property=MainPID", "--value", unit]).stdout.strip()


def process(machine: m.Machine, unit: str | None) -> dict[str, str]:
    """A service's main process (the machine's init for None) as the kernel sees it: its /proc status fields,
    and for each mount point ``mount <point>`` (the mount's options) and ``root <point>`` (what of its file
    system is mounted there)."""
    pid = "1"
    if unit is not None:
        pid = main_pid(machine, unit)
        assert pid not in ("", "0"), f"{unit} has no main process"
    fields = {
        key: value.strip()
        for key, _, value in (
            line.partition(":") for line in machine.run(["cat", f"/proc/{pid}/status"]).stdout.splitlines()
        )
    }
    for line in machine.run(["cat", f"/proc/{pid}/mountinfo"]).stdout.splitlines():
        parts = line.split()
        fields[f"mount {parts[4]}"] = parts[5]
        fields[f"root {parts[4]}"] = parts[3]
    return fields


def exposure(machine: m.Machine, unit: str) -> str:
    """systemd-analyze security's verdict on a unit, e.g. "3.0 OK"."""
    report = machine.run(["systemd-analyze", "security", "--no-pager", unit]).stdout
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+ \w+)", report)
    assert match is not None, report
    return match.group(1)


def capability_mask(*bits: int) -> int:
    mask = 0
    for bit in bits:
        mask |= 1 << bit
    return mask


def journal(machine: m.Machine, unit: str) -> str:
    return machine.run(["journalctl", "--no-pager", "--unit", unit], check=False).stdout[-4000:]


def start_gateway(gateway: m.Machine, config: str) -> str:
    """What the administrator does after installing the gateway package: its configuration written, the
    service (installed disabled) enabled and started; checked running in its sandbox.  Its exposure rating."""
    assert gateway.run(["systemctl", "is-enabled", "m6t-gateway.service"], check=False).stdout.strip() == "disabled"
    gateway.run(["sh", "-c", "cat >/etc/m6t/gateway.toml"], input=config)
    gateway.run(["systemctl", "enable", "--now", "m6t-gateway.service"], check=False)  # a failure: its journal below
    try:
        wait_until(lambda: "m6tgw0" in gateway.run(["ip", "-o", "link"]).stdout, what="the gateway's TUN", timeout=30)
    except LabError as exc:
        raise AssertionError(journal(gateway, "m6t-gateway.service")) from exc
    init = process(gateway, None)  # nspawn's own seccomp filters apply to every process of a machine
    proc = process(gateway, "m6t-gateway.service")
    assert proc["Uid"].split()[0] != "0", "DynamicUser=yes"
    assert proc["NoNewPrivs"] == "1"
    assert int(proc["Seccomp_filters"]) > int(init["Seccomp_filters"]), "SystemCallFilter="
    assert int(proc["CapEff"], 16) == capability_mask(CAP_NET_ADMIN, CAP_NET_BIND_SERVICE), proc["CapEff"]
    return exposure(gateway, "m6t-gateway.service")


def wait_for_helper(laptop: m.Machine) -> None:
    """Type=exec: systemd calls the helper started once it runs, a moment before its socket listens."""
    try:
        wait_until(lambda: laptop.run(["test", "-S", HELPER_SOCKET], check=False).returncode == 0, what="the socket")
    except LabError as exc:
        raise AssertionError(journal(laptop, "m6t-helper.service")) from exc


def connected(laptop: m.Machine, logs: Callable[[], str]) -> str:
    """Waits for the laptop's state to be connected (``logs`` shown if it is not); its address."""
    try:
        wait_until(lambda: status(laptop)["state"] == "connected", what="the state connected", timeout=15)
    except LabError as exc:
        raise AssertionError(f"{status(laptop)}\n{logs()}") from exc
    address: str = status(laptop)["address"]
    return address


def purge_leaves_nothing(gateway: tuple[m.Machine, Snapshot], laptop: tuple[m.Machine, Snapshot]) -> None:
    """Both packages purged as an administrator would; each machine as it was before they came."""
    purge(laptop[0], "m6t")
    purge(gateway[0], "m6t-gateway")
    problems = [f"laptop: {p}" for p in differences(laptop[1], snapshot(laptop[0]))]
    problems += [f"gateway: {p}" for p in differences(gateway[1], snapshot(gateway[0]))]
    assert not problems, "\n".join(problems)


def install(machine: m.Machine, deb: Path) -> None:
    """apt-get install of a built package: every dependency must already be in the machine, whose apt has no
    package lists and whose network is the lab's (apt's --no-download refuses a .deb given by its path)."""
    done = machine.run(["apt-get", "install", "--yes", f"{DEBS_INSIDE}/{deb.name}"], timeout=600)
    print(f"\n{machine.name}: apt-get install {deb.name}\n{apt_output(done.stdout)}")


def purge(machine: m.Machine, package: str) -> None:
    done = machine.run(["apt-get", "purge", "--yes", package], timeout=300)
    print(f"{machine.name}: apt-get purge {package}\n{apt_output(done.stdout)}")


def apt_output(text: str) -> str:
    """What apt and the maintainer scripts said, without dpkg's progress lines."""
    lines = [line for line in text.replace("\r", "\n").splitlines() if line and not line.startswith("(Reading")]
    return "\n".join(lines[-25:])


@pytest.fixture
def machines(lab: StandardLab, root: Path, packages: Packages, tmp_path: Path) -> Iterator[tuple[m.Machine, m.Machine]]:
    """Two machines from the same root: the gateway's in the lab's gw namespace, the user's in mn."""
    reason = m.unavailable_reason(build=False)
    if reason is not None:
        pytest.skip(reason)

    def machine_in(host: str) -> contextlib.AbstractContextManager[m.Machine]:
        netns = f"/run/netns/{lab.ns(host)}"
        binds = {packages.directory: DEBS_INSIDE}
        return m.booted(root, name=f"m6t-{lab.run_id}-{host}", netns_path=netns, workdir=tmp_path / host, binds=binds)

    with machine_in(GW) as gateway, machine_in(MN) as laptop:
        yield gateway, laptop


def test_installed_packages_under_systemd_polkit_decides_and_purge_leaves_nothing(
    lab: StandardLab, machines: tuple[m.Machine, m.Machine], packages: Packages
) -> None:
    started = time.monotonic()
    gateway, laptop = machines
    gateway_before, laptop_before = snapshot(gateway), snapshot(laptop)
    assert "m6t" not in laptop_before.groups

    # -- the gateway: installed disabled, configured, enabled by the administrator, sandboxed as its unit says
    install(gateway, packages.gateway)
    gateway_exposure = start_gateway(gateway, configs.gateway_config(ports=GATEWAY_PORTS))

    # -- the laptop: the helper starts under systemd with its sandbox
    install(laptop, packages.client)
    active = laptop.run(["systemctl", "is-active", "m6t-helper.service"], check=False).stdout.strip()
    assert active == "active", journal(laptop, "m6t-helper.service")
    assert laptop.run(["systemctl", "is-enabled", "m6t-helper.service"]).stdout.strip() == "enabled"
    laptop.run(["pkaction", "--action-id", "org.m6t.connect"])
    init = process(laptop, None)
    proc = process(laptop, "m6t-helper.service")
    assert proc["Uid"].split()[0] == "0"
    assert proc["NoNewPrivs"] == "1"
    assert int(proc["Seccomp_filters"]) > int(init["Seccomp_filters"]), "SystemCallFilter="
    assert int(proc["CapBnd"], 16) == capability_mask(*HELPER_CAPABILITIES), proc["CapBnd"]
    assert proc["mount /"].startswith("ro"), "ProtectSystem=strict: the tree is read-only"
    assert proc["mount /etc/m6t"].startswith("rw"), "ReadWritePaths=/etc/m6t"
    assert proc["mount /var/lib/m6t"].startswith("rw"), "StateDirectory=m6t"
    assert "inaccessible" in proc["root /home"], "ProtectHome=yes"
    assert "/systemd-private-" in proc["root /tmp"], "PrivateTmp=yes"
    helper_exposure = exposure(laptop, "m6t-helper.service")
    print(f"systemd-analyze security: m6t-helper {helper_exposure}, m6t-gateway {gateway_exposure}")
    assert helper_exposure.endswith(("SAFE", "OK")) and gateway_exposure.endswith(("SAFE", "OK"))

    # -- an unprivileged user reads the status; polkit (no rule, no local session) wants a password
    wait_for_helper(laptop)
    first = status(laptop)
    assert first["state"] == "disconnected", first
    assert first["permissions"] == {"connect": "auth", "configure": "auth"}, first
    refused = laptop.run(["m6t", "up"], user=USER, check=False)
    assert refused.returncode == 4, refused  # the CLI's "not allowed"
    assert "polkit wants an administrator's password before you may bring the tunnel up" in refused.stderr
    assert "ask an administrator to allow org.m6t.connect for you" in refused.stderr
    unchanged = status(laptop)
    assert unchanged["state"] == "disconnected" and unchanged["wanted"] == "down", unchanged
    assert not [a for a in snapshot(laptop).addresses if a.startswith("m6t0 fd6d:")]

    # -- the administrator's rule lets them connect; the tunnel reaches the Home Agent
    laptop.run(["sh", "-c", f"cat >{RULE_PATH}"], input=RULE)
    granted = None
    for _ in range(50):  # polkitd rereads its rules when their directory changes (inotify): a bounded wait
        granted = laptop.run(["m6t", "up"], user=USER, check=False)
        if granted.returncode != 4:
            break
        time.sleep(0.2)
    assert granted is not None and granted.returncode == 0, f"{granted}\n{journal(laptop, 'm6t-helper.service')}"

    # The example configuration names no probe: the first packet the Home Agent answers confirms the address.
    def logs() -> str:
        return f"{journal(laptop, 'm6t-helper.service')}\n{journal(gateway, 'm6t-gateway.service')}"

    assert lab.ping(MN, HA, count=3, timeout=10), f"no answer from the HA through the tunnel\n{logs()}"
    connected(laptop, logs)
    assert status(laptop)["permissions"]["connect"] == "yes"

    # -- purge, as an administrator would (the rule they wrote removed first): nothing of m6t is left
    laptop.run(["rm", RULE_PATH])
    purge_leaves_nothing((gateway, gateway_before), (laptop, laptop_before))
    print(f"installed-system test body: {time.monotonic() - started:.0f} s")


KEY_FILE = "/etc/m6t/gateway-keys.toml"
"""[access] key_file's default, where ``m6t-gateway keys`` writes."""
CLIENT_KEY_FILE = "/etc/m6t/access.key"
"""The laptop's key, headless style (access.key_file): the administrator's choice of path."""


def gateway_metric(gateway: m.Machine, sample: str) -> float:
    """One sample of the running gateway's metrics, as ``m6t-gateway status --raw`` shows them."""
    text = gateway.run(["m6t-gateway", "status", "--raw"]).stdout
    match = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_enrolled_gateway_under_its_unit_takes_keys_at_reload_and_keeps_states(
    lab: StandardLab, machines: tuple[m.Machine, m.Machine], packages: Packages
) -> None:
    started = time.monotonic()
    gateway, laptop = machines
    gateway_before, laptop_before = snapshot(gateway), snapshot(laptop)

    # -- the administrator enrols the laptop (the key file is root's alone) and starts the gateway enrolled
    install(gateway, packages.gateway)
    alice = gateway.run(["m6t-gateway", "keys", "add", "alice"]).stdout.strip()
    assert gateway.run(["stat", "--format", "%U %a", KEY_FILE]).stdout.split() == ["root", "600"]
    enrolled = AccessSection(mode=AccessMode.ENROLLED, key_file=KEY_FILE)
    config = configs.gateway_config(ports=GATEWAY_PORTS, metrics="127.0.0.1:9477", access=enrolled)
    rating = start_gateway(gateway, config)
    print(f"systemd-analyze security: m6t-gateway (enrolled) {rating}")
    assert rating.endswith(("SAFE", "OK"))
    unit = "m6t-gateway.service"
    keys_metric = "m6t_gateway_access_keys"
    assert gateway_metric(gateway, keys_metric) == 1, journal(gateway, unit)

    # -- the laptop: the key in a root-only file (the headless path), given as the CLI gives it
    install(laptop, packages.client)
    wait_for_helper(laptop)
    done = laptop.run(["m6t", "config", "set", "access.key_id", "alice"], check=False)
    assert done.returncode == 0, f"{done}\n{journal(laptop, 'm6t-helper.service')}"
    laptop.run(["m6t", "config", "set", "access.key_file", CLIENT_KEY_FILE])
    laptop.run(["m6t", "key", "set", "--stdin"], input=f"{alice}\n")
    assert laptop.run(["stat", "--format", "%U %a", CLIENT_KEY_FILE]).stdout.split() == ["root", "600"]
    laptop.run(["m6t", "up"])

    def logs() -> str:
        return f"{journal(laptop, 'm6t-helper.service')}\n{journal(gateway, unit)}"

    assert lab.ping(MN, HA, count=3, timeout=10), f"no answer from the HA through the enrolled gateway\n{logs()}"
    address = connected(laptop, logs)

    # -- keys changed, reloaded the documented way: the same process, the MN's state kept
    pid = main_pid(gateway, unit)
    bob = gateway.run(["m6t-gateway", "keys", "add", "bob"]).stdout.strip()
    gateway.run(["m6t-gateway", "keys", "remove", "alice"])
    gateway.run(["systemctl", "reload", unit])
    try:  # systemctl returns once the SIGHUP is sent; the gateway handles it a moment later
        wait_until(lambda: "reloaded: 1 key(s) for 1 mobile node(s)" in journal(gateway, unit), what="the reload")
    except LabError as exc:
        raise AssertionError(journal(gateway, unit)) from exc
    assert main_pid(gateway, unit) == pid, "a reload, not a restart"
    assert gateway_metric(gateway, keys_metric) == 1
    assert lab.ping(MN, HA, count=3, timeout=10), f"the MN lost its state at the reload\n{logs()}"
    assert status(laptop)["address"] == address and status(laptop)["state"] == "connected"

    # -- the reload took effect: alice's key creates no state any more, bob's does
    refused = 'm6t_gateway_drops_total{side="mn",reason="auth_unknown_key"}'
    laptop.run(["m6t", "down"])
    laptop.run(["m6t", "up"], check=False)
    # The example configuration names no probe: the MN's own traffic is what would create the state.
    assert not lab.ping(MN, HA, count=2, timeout=4), "a removed key still creates states"
    assert gateway_metric(gateway, refused) > 0, logs()
    assert status(laptop)["state"] != "connected"
    laptop.run(["m6t", "key", "set", "--stdin"], input=f"{bob}\n")
    laptop.run(["m6t", "down"])
    laptop.run(["m6t", "up"])
    assert lab.ping(MN, HA, count=3, timeout=10), f"bob's key did not get through\n{logs()}"
    connected(laptop, logs)

    # -- a key file others may read: the reload fails, says why, and the keys in force stay
    gateway.run(["chmod", "0640", KEY_FILE])
    failed = gateway.run(["systemctl", "reload", unit], check=False)
    assert failed.returncode != 0
    assert "chmod 600" in journal(gateway, unit)
    assert main_pid(gateway, unit) == pid and gateway_metric(gateway, keys_metric) == 1
    assert lab.ping(MN, HA, count=3, timeout=10), logs()

    # -- purge (the laptop's key file, the administrator's own choice of path, removed by them first)
    laptop.run(["m6t", "down"])
    laptop.run(["rm", CLIENT_KEY_FILE])
    purge_leaves_nothing((gateway, gateway_before), (laptop, laptop_before))
    print(f"enrolled installed-system test body: {time.monotonic() - started:.0f} s")
