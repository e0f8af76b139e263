"""A running lab: its namespaces, the processes started in it, impairments, and a guaranteed teardown."""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Literal, Self, overload

from m6t.lab import builder, netns, nftables, processes, registry, shell
from m6t.lab.conntrack import NatMapping, parse_udp_entries
from m6t.lab.errors import LabError
from m6t.lab.polling import wait_until
from m6t.lab.topology import Topology

if TYPE_CHECKING:
    from m6t.lab.standard import StandardLab

File = int | IO[Any] | None
Direction = Literal["both", "in", "out"]
TimeoutMethod = Literal["auto", "sysctl", "nft"]

_SYSCTL_KEY = re.compile(r"^[A-Za-z0-9_.\-/]+$")
_UDP_TIMEOUT = "net.netfilter.nf_conntrack_udp_timeout"
_UDP_TIMEOUT_STREAM = "net.netfilter.nf_conntrack_udp_timeout_stream"

# Labs still open, so that the interpreter's exit can tear them down; guarded because tests may
# open labs from several threads.
_live: set[Lab] = set()
_live_lock = threading.Lock()


class Lab:
    """A set of network namespaces built from a Topology; use as a context manager, or start() and close()."""

    def __init__(self, topology: Topology) -> None:
        """Describe a lab; nothing is created until start() (or `with`)."""
        topology.validate()
        self._topology = topology
        self._record: registry.RunRecord | None = None
        self._names: dict[str, str] = {}
        self._procs: list[subprocess.Popen[Any]] = []
        self._started = False
        self._closed = False
        self._owner_pid = os.getpid()

    @classmethod
    def standard(cls, *, udp_timeout: int | None = None) -> StandardLab:
        """The standard m6t lab (mn, nat1, nat2, gw, ha, wan2), not yet started."""
        from m6t.lab.standard import StandardLab

        return StandardLab(udp_timeout=udp_timeout)

    # Lifecycle

    @property
    def topology(self) -> Topology:
        """The description this lab was built from."""
        return self._topology

    @property
    def run_id(self) -> str:
        """The run's random id (6 hex digits), as in its namespace names and /run/m6t-lab/<id>.json."""
        return self._require_record().run_id

    @property
    def prefix(self) -> str:
        """The run's namespace name prefix, e.g. 'm6t-a1b2c3-'."""
        return self._require_record().prefix

    @property
    def running(self) -> bool:
        """True between a successful start() and close()."""
        return self._started and not self._closed

    def start(self) -> Self:
        """Create the namespaces and everything in them; on failure, undo whatever was made and raise."""
        if self._started or self._closed:
            raise LabError("a Lab can be started only once")
        self._started = True
        _register(self)
        try:
            self._record = registry.new_record()
            self._names = {node: f"{self._record.prefix}{node}" for node in self._topology.node_names()}
            builder.build(self._topology, self._names)
            self._after_build()
        except BaseException as exc:
            try:
                self.close()
            except (LabError, KeyboardInterrupt) as teardown_error:
                exc.add_note(f"lab teardown after the failed start also failed: {teardown_error}")
            raise
        return self

    def _after_build(self) -> None:
        """Setup that needs the namespaces to exist (NAT timeouts)."""
        for nat in self._topology.nats:
            if nat.udp_timeout is not None:
                self.set_udp_timeout(nat.host, nat.udp_timeout)

    def close(self) -> None:
        """Kill every process started in the lab and delete its namespaces; safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        errors: list[str] = []
        interrupted = False

        def attempt(step: Callable[[], object], what: str) -> None:
            # A Ctrl-C landing in the middle of teardown must not leave namespaces behind: the step is
            # retried once and the interrupt re-raised when everything is gone.
            nonlocal interrupted
            for _ in range(2):
                try:
                    step()
                    return
                except KeyboardInterrupt:
                    interrupted = True
                except Exception as exc:
                    errors.append(f"{what}: {exc}")
                    return
            errors.append(f"{what}: interrupted twice")

        def stop_processes() -> None:
            survivors = processes.stop_all(self._procs)
            if survivors:
                raise LabError(f"processes {survivors} survived SIGKILL")

        attempt(stop_processes, "stopping processes")
        for proc in self._procs:
            processes.close_pipes(proc)
        record = self._record
        if record is not None:
            names_left: list[str] = []

            def list_ours() -> None:
                names_left[:] = registry.namespaces_of(record)

            attempt(list_ours, "listing namespaces")
            # Also catches namespaces a failed start() created before it could remember them.
            for name in reversed(names_left):
                attempt(functools.partial(netns.delete, name), f"deleting {name}")
            if not errors:
                # Keep the record on failure: cleanup_stale() finishes the job once this process is gone.
                attempt(lambda: registry.remove_record(record), "removing the run record")
        with _live_lock:
            _live.discard(self)
        if errors:
            raise LabError("lab teardown incomplete:\n    " + "\n    ".join(errors))
        if interrupted:
            raise KeyboardInterrupt

    def __enter__(self) -> Self:
        """Start the lab unless already started."""
        if not self._started:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Tear the lab down; a teardown failure is attached as a note to an exception already in flight."""
        if exc is None:
            self.close()
            return
        try:
            self.close()
        except (LabError, KeyboardInterrupt) as teardown_error:
            exc.add_note(f"lab teardown also failed: {teardown_error}")

    # Running things inside

    def ns(self, host: str) -> str:
        """The actual namespace name of a host (or switch)."""
        self._require_running()
        try:
            return self._names[host]
        except KeyError:
            raise LabError(f"no host {host!r} in this lab (hosts: {', '.join(self._names)})") from None

    def run(
        self,
        host: str,
        *argv: str,
        check: bool = True,
        timeout: float = shell.DEFAULT_TIMEOUT,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in a host's namespace to completion; with check, failure raises LabError."""
        return shell.run(shell.in_netns(self.ns(host), argv), check=check, timeout=timeout, input=input)

    @overload
    def spawn(
        self,
        host: str,
        argv: Sequence[str],
        *,
        text: Literal[True] = True,
        stdin: File = subprocess.DEVNULL,
        stdout: File = None,
        stderr: File = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        pass_fds: Collection[int] = (),
    ) -> subprocess.Popen[str]: ...

    @overload
    def spawn(
        self,
        host: str,
        argv: Sequence[str],
        *,
        text: Literal[False],
        stdin: File = subprocess.DEVNULL,
        stdout: File = None,
        stderr: File = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        pass_fds: Collection[int] = (),
    ) -> subprocess.Popen[bytes]: ...

    def spawn(
        self,
        host: str,
        argv: Sequence[str],
        *,
        text: bool = True,
        stdin: File = subprocess.DEVNULL,
        stdout: File = None,
        stderr: File = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        pass_fds: Collection[int] = (),
    ) -> subprocess.Popen[Any]:
        """Start a long-running process in a host's namespace; the lab kills it at teardown."""
        command = shell.in_netns(self.ns(host), argv)
        try:
            proc: subprocess.Popen[Any] = subprocess.Popen(
                command,
                text=text,
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                env=env,
                cwd=cwd,
                pass_fds=pass_fds,
                # Out of the terminal's process group: Ctrl-C reaches the test runner, whose teardown
                # then stops lab processes in order.
                start_new_session=True,
            )
        except OSError as exc:
            raise LabError(f"could not start: {exc}", command=command) from exc
        self._procs.append(proc)
        return proc

    def etc_file(self, host: str, name: str, text: str) -> contextlib.AbstractContextManager[Path]:
        """A context in which processes started in a host (run, spawn) see ``text`` as ``/etc/<name>`` (e.g. a
        hosts file of its own), through ``ip netns exec``'s ``/etc/netns``; the machine's ``/etc`` is untouched."""
        return netns.etc_file(self.ns(host), name, text)

    def read_file(self, host: str, path: str) -> str:
        """The contents of a file as seen from a host's namespace (/proc/sys/net and /sys are per-netns)."""
        return self.run(host, "cat", path).stdout

    def read_sysctl(self, host: str, key: str) -> str:
        """A sysctl value in a host's namespace, e.g. read_sysctl('gw', 'net.ipv6.conf.all.forwarding')."""
        return self.read_file(host, _sysctl_path(key)).strip()

    def write_sysctl(self, host: str, key: str, value: str | int) -> None:
        """Set a sysctl in a host's namespace."""
        _sysctl_path(key)
        self.run(host, "sysctl", "-q", "-w", f"{key}={value}")

    def ping(self, host: str, destination: str, *, count: int = 1, timeout: float = 2.0) -> bool:
        """True when `count` pings from host to destination (IPv4 or IPv6) are all answered in time."""
        wait = max(1, round(timeout))
        result = self.run(
            host,
            "ping",
            "-n",
            "-q",
            "-c",
            str(count),
            "-i",
            "0.2",
            "-W",
            str(wait),
            destination,
            check=False,
            timeout=timeout + count * 0.2 + 5.0,
        )
        return result.returncode == 0

    def addresses(self, host: str, ifname: str) -> list[str]:
        """The addresses (no prefix length) on an interface of a host, IPv4 first."""
        state = builder.link_states(self.ns(host)).get(ifname)
        if state is None:
            raise LabError(f"no interface {ifname!r} on {host}")
        infos = sorted(state.get("addr_info", []), key=lambda info: info.get("family") != "inet")
        return [str(info["local"]) for info in infos if "local" in info]

    def wait_interface_ready(self, host: str, ifname: str, timeout: float = 5.0) -> None:
        """Wait (bounded) until an interface has carrier and no tentative address."""
        namespace = self.ns(host)
        wait_until(
            lambda: builder.interface_ready(builder.link_states(namespace).get(ifname, {})),
            what=f"{host}/{ifname} to come up",
            timeout=timeout,
        )

    def load_nft(self, host: str, ruleset: str) -> None:
        """Load an nftables ruleset into a host's namespace as one transaction."""
        builder.load_nft(self.ns(host), ruleset)

    # Impairments

    def fail_host(self, host: str) -> None:
        """Take every interface of a host down, as a machine that died (its processes keep running, cut off)."""
        self._topology.host(host)
        links = [f"link set {end.ifname} down" for end in self._topology.endpoints() if end.host == host]
        shell.ip_batch(links, self.ns(host))

    def drop_share(self, host: str, ifname: str, percent: int, direction: Direction = "both") -> None:
        """Drop percent % of packets at random on a host's interface (0 removes the impairment)."""
        if percent == 0:
            self.clear_drop_share(host, ifname)
            return
        self.load_nft(host, nftables.drop_share(ifname, percent, direction))

    def clear_drop_share(self, host: str, ifname: str) -> None:
        """Stop dropping packets on a host's interface."""
        self.load_nft(host, nftables.delete_table("inet", nftables.drop_table(ifname)))

    def block_udp_port(self, nat: str, port: int) -> None:
        """Make a NAT drop UDP to and from remote port `port`, as a restrictive network would."""
        box = self._topology.nat(nat)
        self.load_nft(nat, nftables.block_udp_port(box.inside, box.outside, port))

    def unblock_udp_port(self, nat: str, port: int) -> None:
        """Undo block_udp_port."""
        self._topology.nat(nat)
        self.load_nft(nat, nftables.delete_table("inet", nftables.block_table(port)))

    # NAT state

    def nat_mappings(self, nat: str) -> list[NatMapping]:
        """The NAT's current UDP mappings (conntrack entries)."""
        self._topology.nat(nat)
        return parse_udp_entries(self.run(nat, "conntrack", "-L", "-p", "udp").stdout)

    def flush_nat(self, nat: str) -> None:
        """Forget every connection a NAT tracks (its mappings), as a NAT reboot or a timeout would."""
        self._topology.nat(nat)
        self.run(nat, "conntrack", "-F")

    def rebind_nat(self, nat: str, remote_addr: str) -> list[NatMapping]:
        """Flush a NAT and make its next mappings toward ``remote_addr`` use other public ports.

        A plain flush on Linux masquerade hands the same public port back to the same flow, so nothing
        upstream notices; real NATs rebooting or timing out usually pick a new port.  To get that, each
        forgotten public port is claimed at once by a datagram the NAT itself sends from it.  Returns the
        mappings that were forgotten.
        """
        forgotten = [m for m in self.nat_mappings(nat) if m.remote_addr == remote_addr]
        self.flush_nat(nat)
        claim = (
            "import socket,sys; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); "
            "s.bind((sys.argv[1],int(sys.argv[2]))); s.sendto(b'x',(sys.argv[3],int(sys.argv[4])))"
        )
        for mapping in forgotten:
            self.run(
                nat,
                sys.executable,
                "-c",
                claim,
                mapping.outside_addr,
                str(mapping.outside_port),
                mapping.remote_addr,
                str(mapping.remote_port),
            )
        return forgotten

    def set_udp_timeout(
        self,
        nat: str,
        seconds: int,
        stream_seconds: int | None = None,
        *,
        method: TimeoutMethod = "auto",
    ) -> str:
        """Set a NAT's UDP mapping timeouts (stream defaults to seconds); return the method used.

        "sysctl" writes nf_conntrack_udp_timeout(_stream) in the NAT's namespace: per-netns on current
        kernels, and it applies at once to existing mappings too. "nft" installs a ct timeout policy,
        which only applies to mappings created afterwards. "auto" uses sysctl when writing it in the NAT's
        namespace works (it does on this project's kernels, 6.x), nft otherwise.
        """
        self._topology.nat(nat)
        stream = seconds if stream_seconds is None else stream_seconds
        if seconds < 1 or stream < 1:
            raise LabError("UDP timeouts must be at least 1 s")
        settings = [f"{_UDP_TIMEOUT}={seconds}", f"{_UDP_TIMEOUT_STREAM}={stream}"]
        if method == "auto":
            # Where the sysctl is not per-netns it is absent (or read-only) in the NAT's namespace; the
            # read-back guards against a write that silently did nothing.
            written = self.run(nat, "sysctl", "-q", "-w", *settings, check=False).returncode == 0
            method = "sysctl" if written and self.udp_timeouts(nat) == (seconds, stream) else "nft"
            if method == "sysctl":
                return method
        if method == "sysctl":
            self.run(nat, "sysctl", "-q", "-w", *settings)
        else:
            self.load_nft(nat, nftables.udp_ct_timeout(seconds, stream))
        return method

    def udp_timeouts(self, nat: str) -> tuple[int, int]:
        """The NAT namespace's UDP conntrack sysctls: (unreplied/single, stream)."""
        return int(self.read_sysctl(nat, _UDP_TIMEOUT)), int(self.read_sysctl(nat, _UDP_TIMEOUT_STREAM))

    # Internals

    def _require_record(self) -> registry.RunRecord:
        if self._record is None:
            raise LabError("the lab has not been started")
        return self._record

    def _require_running(self) -> None:
        if not self._started or self._closed or not self._names:
            raise LabError("the lab is not running (use `with` or start())")


def _sysctl_path(key: str) -> str:
    # Dotted keys only: an interface name containing a dot would need the slash form, and lab names have none.
    if not _SYSCTL_KEY.match(key) or ".." in key:
        raise LabError(f"bad sysctl key {key!r}")
    return "/proc/sys/" + key.replace(".", "/")


def _register(lab: Lab) -> None:
    with _live_lock:
        _live.add(lab)


def _close_all_at_exit() -> None:
    with _live_lock:
        labs = list(_live)
    for lab in labs:
        # A forked child inherits the parent's labs but must not tear them down when it exits.
        if lab._owner_pid != os.getpid():
            continue
        try:
            lab.close()
        except (LabError, KeyboardInterrupt) as exc:
            print(f"m6t.lab: teardown at exit failed: {exc}", file=sys.stderr)


atexit.register(_close_all_at_exit)
