"""A throwaway Debian machine for the installed-system test: booted with systemd-nspawn inside a lab namespace.

The machine's root is built by mmdebstrap from Debian's archive once per set of inputs and kept in
:data:`ROOT_CACHE` under a key that hashes all of them (release, mirror, architecture, packages, users and
this recipe's version): later runs boot at once, a change of any input builds a new root.  Each boot
writes into an overlay of its own whose upper layer is a directory of the test's, mounted in a private mount
namespace that ends with the machine: the cached root is never written and no mount outlives the boot.

Needs root, systemd-nspawn (Debian's systemd-container) and, to build a root, mmdebstrap and the archive.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Final

import psutil

assert sys.platform == "linux", "systemd-nspawn machines are Linux's"  # and tells mypy the rest is Linux-only
ROOT_CACHE: Final = Path(os.environ.get("M6T_TEST_ROOT_CACHE", "/var/cache/m6t-test/roots"))
"""Built roots, one directory per key; M6T_TEST_ROOT_CACHE moves it."""
RECIPE_VERSION: Final = 1
"""Raise when the way a root is built changes, so that older cached roots are not used."""
KEEP_ROOTS: Final = 2
"""Roots kept in the cache besides the one in use (another branch's dependencies, say)."""
DEBIAN_MIRROR: Final = "http://deb.debian.org/debian"
MACHINE_TOOLS: Final = ("systemd-nspawn", "nsenter", "unshare", "setpriv")
ROOT_TOOLS: Final = ("mmdebstrap",)
BASE_PACKAGES: Final = ("systemd", "systemd-sysv", "dbus", "polkitd", "iproute2", "procps")
"""What a Debian desktop's system side has that minbase lacks: systemd as init, the system bus and polkit."""
QUIET_TIMERS: Final = (
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
)
"""Masked in the root: nothing runs apt or writes backups behind the test's back."""
BOOT_TIMEOUT_S: Final = 120.0
POWEROFF_TIMEOUT_S: Final = 30.0
ROOT_BUILD_TIMEOUT_S: Final = 1800.0
NSPAWN_RUNTIME: Final = Path("/run/systemd/nspawn")
CGROUP_PREFIX: Final = "m6t-machine-"


class MachineError(Exception):
    """The machine could not be built, booted or reached; the message carries what its tools printed."""


def unavailable_reason(*, build: bool) -> str | None:
    """Why machines cannot run here (``build``: nor roots be built), or None."""
    tools = MACHINE_TOOLS + (ROOT_TOOLS if build else ())
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        return f"missing {', '.join(missing)} (apt-get install systemd-container mmdebstrap util-linux)"
    return None


# ------------------------------------------------------------------------------------------- roots


@dataclass(frozen=True)
class RootRecipe:
    """Everything a root is made from; its :meth:`key` names the cached copy."""

    packages: tuple[str, ...]
    users: tuple[str, ...] = ()
    release: str = "bookworm"
    mirror: str = DEBIAN_MIRROR
    architecture: str = ""

    def key(self) -> str:
        fields = {**asdict(self), "packages": sorted(set(self.packages)), "recipe": RECIPE_VERSION}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:20]


def package_names(relations: str) -> list[str]:
    """The packages a Depends/Recommends field names, the first of each set of alternatives, without versions."""
    names = []
    for relation in relations.split(","):
        first = relation.split("|")[0].strip()
        if first:
            names.append(re.split(r"[\s(:\[]", first, maxsplit=1)[0])
    return names


@dataclass(frozen=True)
class BuiltRoot:
    path: Path
    built_now: bool
    seconds: float
    """How long building took (0 when it came from the cache)."""


def cached_root(recipe: RootRecipe, cache: Path = ROOT_CACHE) -> BuiltRoot:
    """The root for ``recipe``: from the cache, or built now by mmdebstrap (one build at a time per cache)."""
    cache.mkdir(parents=True, exist_ok=True)
    entry = cache / recipe.key()
    with (cache / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (entry / "complete").exists():
            os.utime(entry)
            return BuiltRoot(entry / "root", built_now=False, seconds=0.0)
        started = time.monotonic()
        partial = cache / f".{recipe.key()}.partial"
        if partial.exists():
            shutil.rmtree(partial)
        partial.mkdir()
        _mmdebstrap(recipe, partial / "root", partial / "build.log")
        (partial / "recipe.json").write_text(json.dumps(asdict(recipe), indent=1) + "\n")
        (partial / "complete").touch()
        partial.rename(entry)
        _prune(cache, keep=entry)
        return BuiltRoot(entry / "root", built_now=True, seconds=time.monotonic() - started)


def _mmdebstrap(recipe: RootRecipe, target: Path, log: Path) -> None:
    hooks = [f'chroot "$1" useradd --create-home --user-group --shell /bin/sh {shlex.quote(u)}' for u in recipe.users]
    hooks.append('systemctl --root="$1" mask ' + " ".join(QUIET_TIMERS))
    argv = [
        "mmdebstrap",
        "--mode=root",
        "--variant=minbase",
        "--format=directory",
        f"--include={','.join(sorted(set(recipe.packages)))}",
        *(["--architectures=" + recipe.architecture] if recipe.architecture else []),
        *(f"--customize-hook={hook}" for hook in hooks),
        recipe.release,
        str(target),
        recipe.mirror,
    ]
    with log.open("w") as out:
        try:
            done = subprocess.run(
                argv,
                check=False,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=ROOT_BUILD_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired as exc:
            raise MachineError(f"mmdebstrap took over {ROOT_BUILD_TIMEOUT_S:g} s; see {log}") from exc
    if done.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise MachineError(f"mmdebstrap failed ({done.returncode}): {shlex.join(argv)}\n{tail}")


def _prune(cache: Path, keep: Path) -> None:
    """Remove all but the newest few roots (and partial builds a killed run left)."""
    entries = sorted(
        (p for p in cache.iterdir() if p.is_dir() and p != keep),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    complete = [p for p in entries if (p / "complete").exists()]
    for path in [p for p in entries if p not in complete] + complete[KEEP_ROOTS - 1 :]:
        shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------------------------------- machines


class Machine:
    """A booted machine: ``run`` commands in it as root or as a user, ``close`` powers it off.

    The machine shares the network namespace at ``netns_path`` (a lab host's) and gets what a VPN client
    needs there: CAP_NET_ADMIN, /proc/sys/net writable and /dev/net/tun.  ``binds`` are host directories
    shown read-only inside.
    """

    def __init__(
        self, root: Path, *, name: str, netns_path: str, workdir: Path, binds: Mapping[Path, str] | None = None
    ) -> None:
        self.root = root
        self.name = name
        self.netns_path = netns_path
        self.workdir = workdir
        self.binds = dict(binds or {})
        self.console_log = workdir / "console.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._leader: int | None = None
        self._cgroups: list[Path] = []

    @property
    def leader(self) -> int:
        """The machine's init, as this system numbers it."""
        if self._leader is None:
            raise MachineError("the machine is not running")
        return self._leader

    def boot(self, timeout: float = BOOT_TIMEOUT_S) -> float:
        """Start the machine and wait until systemd says the boot is over; returns the seconds it took."""
        started = time.monotonic()
        layers = self.workdir / "layers"
        merged = self.workdir / "merged"
        for path in (layers / "upper", layers / "work", merged):
            path.mkdir(parents=True)
        nspawn = [
            "systemd-nspawn",
            "--boot",
            f"--directory={merged}",
            f"--machine={self.name}",
            # No systemd-machined on the host to register with, nor a scope to create.
            "--register=no",
            "--keep-unit",
            f"--network-namespace-path={self.netns_path}",
            "--capability=CAP_NET_ADMIN",
            *(f"--bind-ro={host}:{inside}" for host, inside in self.binds.items()),
            "--resolv-conf=off",
            "--timezone=off",
            "--link-journal=no",
            "--console=pipe",
        ]
        # A cgroup of its own in each hierarchy, which nspawn splits into "supervisor" and "payload": two
        # machines never share one, and nothing of theirs is left in this process's cgroup afterwards.
        hierarchies = _own_cgroups()
        for hierarchy in hierarchies:
            _remove_stale_cgroups(hierarchy)
        self._cgroups = [hierarchy / f"{CGROUP_PREFIX}{self.name}" for hierarchy in hierarchies]
        for cgroup in self._cgroups:
            cgroup.mkdir()
        script = (
            "set -eu\n"
            + "".join(f"echo $$ >{shlex.quote(str(cgroup / 'cgroup.procs'))}\n" for cgroup in self._cgroups)
            + f"mount -t overlay m6t-machine -o lowerdir={shlex.quote(str(self.root))},"
            f"upperdir={shlex.quote(str(layers / 'upper'))},workdir={shlex.quote(str(layers / 'work'))} "
            f"{shlex.quote(str(merged))}\n"
            # /proc/sys/net writable, as nspawn makes it for the private networks it creates itself: the
            # namespace is the machine's own, and its services set their interfaces' sysctls.
            f"SYSTEMD_NSPAWN_API_VFS_WRITABLE=network exec {shlex.join(nspawn)}\n"
        )
        self._log = self.console_log.open("wb")
        self._process = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = started + timeout
        state = ""
        for _ in range(int(timeout / 0.1) + 1):
            # Until nspawn's child has become systemd and systemd answers (it says "offline" before).
            self._leader = self._find_leader()
            if self._leader is not None:
                remaining = max(1.0, deadline - time.monotonic())
                state = self.run(["systemctl", "is-system-running", "--wait"], check=False, timeout=remaining).stdout
                state = state.strip()
                if state not in ("", "offline"):
                    break
            self._check_alive("while booting")
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if self._leader is None:
            raise MachineError(f"systemd did not start in the machine within {timeout:g} s\n{self.console()}")
        if state != "running":
            failed = self.run(["systemctl", "--failed", "--no-legend", "--plain"], check=False).stdout
            raise MachineError(f"the boot ended {state!r}; failed units:\n{failed}\n{self.console()}")
        # nspawn copies /dev/net/tun with this host's mode, which is 0600 where no udev runs; a Debian system
        # has it 0666 (udev's 50-udev-default.rules), which unprivileged services with CAP_NET_ADMIN rely on.
        self.run(["chmod", "0666", "/dev/net/tun"])
        return time.monotonic() - started

    def _find_leader(self) -> int | None:
        """The descendant of systemd-nspawn that is pid 1 of its own pid namespace."""
        assert self._process is not None
        with contextlib.suppress(psutil.NoSuchProcess):
            for child in psutil.Process(self._process.pid).children(recursive=True):
                with contextlib.suppress(OSError, psutil.NoSuchProcess):
                    status = Path(f"/proc/{child.pid}/status").read_text()
                    nspid = next((line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:")), [])
                    if len(nspid) > 1 and nspid[-1] == "1" and child.name() == "systemd":
                        return int(child.pid)
        return None

    def _check_alive(self, when: str) -> None:
        if self._process is None or self._process.poll() is not None:
            code = None if self._process is None else self._process.returncode
            raise MachineError(f"systemd-nspawn exited ({code}) {when}\n{self.console()}")

    def console(self) -> str:
        """The last of what the machine printed on its console (systemd's boot messages)."""
        if self._log is not None:
            self._log.flush()
        text = self.console_log.read_text(errors="replace") if self.console_log.exists() else ""
        return f"--- console of {self.name}\n{text[-4000:]}"

    def command(self, argv: Sequence[str], *, user: str | None = None) -> list[str]:
        """The host's argv that runs ``argv`` in the machine (its namespaces, a clean environment)."""
        inside = ["env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", *argv]
        if user is not None:
            # The user's own ids and groups, HOME and the like, no capabilities: as after a login.
            inside = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--reset-env", *argv]
        namespaces = ["--mount", "--uts", "--ipc", "--net", "--pid", "--cgroup"]
        # -r and -w: init's root and working directory, "/" of the machine.
        return ["nsenter", f"--target={self.leader}", *namespaces, "-r", "-w", *inside]

    def run(
        self,
        argv: Sequence[str],
        *,
        user: str | None = None,
        check: bool = True,
        timeout: float = 60.0,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in the machine to completion (as ``user`` when given); ``check`` raises on failure."""
        self._check_alive(f"before {shlex.join(argv)}")
        command = self.command(argv, user=user)
        try:
            done = subprocess.run(
                command,
                check=False,
                input=input,
                stdin=None if input is not None else subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as exc:
            raise MachineError(f"{shlex.join(argv)} took over {timeout:g} s in {self.name}") from exc
        if check and done.returncode != 0:
            who = f" as {user}" if user else ""
            raise MachineError(
                f"{shlex.join(argv)}{who} failed ({done.returncode}) in {self.name}:\n{done.stdout}\n{done.stderr}"
            )
        return done

    def close(self) -> None:
        """Power the machine off (its services stop as on a real shutdown), killing it if it will not go."""
        process, self._process = self._process, None
        leader, self._leader = self._leader, None
        if process is not None and process.poll() is None:
            # systemd-nspawn turns SIGTERM into the container's poweroff request when it booted init.
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(POWEROFF_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                # Killing init ends every process of the machine's pid namespace; then nspawn itself.
                for pid in [leader] if leader is not None else []:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None
        for cgroup in self._cgroups:
            _remove_empty_tree(cgroup)  # with the cgroups its systemd made, empty by now
        self._cgroups = []
        # What systemd-nspawn made on this host (/run/systemd/nspawn), if no other machine uses it.
        _remove_empty_tree(NSPAWN_RUNTIME, parent_too=True)


def _own_cgroups() -> list[Path]:
    """This process's cgroup in the unified hierarchy and in systemd's named v1 one (a hybrid host has both)."""
    mounts: dict[str, Path] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split(" - ")
        point, (fstype, _, options) = Path(fields[0].split()[4]), fields[1].split()[:3]
        if fstype == "cgroup2":
            mounts.setdefault("", point)
        elif fstype == "cgroup" and "name=systemd" in options.split(","):
            mounts.setdefault("name=systemd", point)
    found = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers in mounts:
            found.append(mounts[controllers] / path.lstrip("/"))
    return found


def _remove_stale_cgroups(hierarchy: Path) -> None:
    """The cgroups of machines whose run was killed before it could remove them: no process left in them."""
    for cgroup in hierarchy.glob(f"{CGROUP_PREFIX}*"):
        with contextlib.suppress(OSError):
            if not any(procs.read_text().strip() for procs in cgroup.rglob("cgroup.procs")):
                _remove_empty_tree(cgroup)  # with the cgroups its systemd made, empty by now


def _remove_empty_tree(top: Path, *, parent_too: bool = False) -> None:
    """Remove the directories under ``top``, deepest first, then ``top`` (and its parent): those left empty."""
    if not top.is_dir():
        return
    for path in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            path.rmdir()
    for path in (top, top.parent) if parent_too else (top,):
        with contextlib.suppress(OSError):
            path.rmdir()


@contextlib.contextmanager
def booted(
    root: Path, *, name: str, netns_path: str, workdir: Path, binds: Mapping[Path, str] | None = None
) -> Iterator[Machine]:
    """A machine booted for the block, powered off after it whatever happens."""
    machine = Machine(root, name=name, netns_path=netns_path, workdir=workdir, binds=binds)
    try:
        machine.boot()
        yield machine
    finally:
        machine.close()
