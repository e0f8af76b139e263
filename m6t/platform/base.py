"""The one interface every OS backend implements (Linux TUN, macOS utun, Windows Wintun).

Everything above ``m6t.platform`` talks to the OS only through these classes, so a new OS adds
modules here and changes nothing above.  The shapes are chosen so that all three OSes fit:

* packet sources are *callback registrations* on an asyncio loop, because Linux/macOS expose a
  pollable fd (``loop.add_reader``) while Wintun exposes a read-wait event that a thread must
  block on and hand over with ``call_soon_threadsafe``;
* TUN packets cross this boundary as bare IPv6 packets: macOS's 4-byte address-family header
  and Wintun's ring framing stay inside their backends;
* address/route/MTU changes are coroutines, because netlink (pyroute2's AsyncIPRoute), the
  routing socket and the IP Helper API all complete asynchronously or must not block the loop.
"""

from __future__ import annotations

import asyncio
import errno
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv4Address, IPv6Address

from m6t.protocol.values import Attachment, PmtuEvidence, Route

PacketsCallback = Callable[[Sequence[bytes]], None]
"""Receives a batch of packets read in one wakeup (read until EAGAIN / ring empty)."""


class PlatformErrorCode(StrEnum):
    """What kind of failure a :class:`PlatformError` is, said where it happens so nobody reads its text.

    The client maps these to its own numbered error codes; the platform knows nothing of those.
    """

    TUN_MISSING = "tun_missing"
    """No usable TUN driver (Linux ``/dev/net/tun``, the macOS utun control, Windows' wintun.dll)."""
    IPV6_DISABLED = "ipv6_disabled"
    PERMISSION_DENIED = "permission_denied"
    """The process lacks the privileges (root, CAP_NET_ADMIN, Administrator) the operation needs."""
    INTERFACE_BUSY = "interface_busy"
    """Another program holds the tunnel interface's name."""
    OTHER = "other"

    @classmethod
    def of_errno(cls, number: int | None) -> PlatformErrorCode:
        """``PERMISSION_DENIED`` for EPERM/EACCES, ``OTHER`` for every other errno."""
        return cls.PERMISSION_DENIED if number in (errno.EPERM, errno.EACCES) else cls.OTHER


class PlatformError(Exception):
    """An OS operation failed; ``hint`` tells the user how to fix it when we know, ``code`` what kind it is."""

    def __init__(
        self, message: str, hint: str | None = None, *, code: PlatformErrorCode = PlatformErrorCode.OTHER
    ) -> None:
        super().__init__(message)
        self.hint = hint
        self.code = code


ChangeCallback = Callable[[], None]
"""Called on the loop when the OS reports something that may move the path toward the gateway."""


class TunDevice(ABC):
    """A layer-3 tunnel interface carrying bare IPv6 packets."""

    name: str

    @abstractmethod
    def start_reading(self, loop: asyncio.AbstractEventLoop, on_packets: PacketsCallback) -> None:
        """Deliver every packet the OS routes into the interface, in batches, on ``loop``."""

    @abstractmethod
    def stop_reading(self) -> None: ...

    @abstractmethod
    def write(self, packet: bytes) -> None:
        """Inject one IPv6 packet into the OS stack; drops silently when the OS queue is full."""

    @abstractmethod
    def close(self) -> None:
        """Release the device; a non-persistent device disappears with it."""


class UdpChannel(ABC):
    """A UDP socket toward the tunnel gateway, with the outer IPv4 DF bit never set (draft 2.6)."""

    @property
    @abstractmethod
    def local_address(self) -> tuple[str, int]: ...

    @property
    @abstractmethod
    def remote_address(self) -> tuple[str, int]: ...

    @abstractmethod
    def start_reading(
        self,
        loop: asyncio.AbstractEventLoop,
        on_datagrams: Callable[[Sequence[tuple[bytes, tuple[str, int]]]], None],
        on_pmtu: Callable[[PmtuEvidence], None],
    ) -> None:
        """Deliver received datagrams with their source address, and PMTU evidence about our flow."""

    @abstractmethod
    def stop_reading(self) -> None: ...

    @abstractmethod
    def send(self, datagrams: Sequence[bytes]) -> None:
        """Send datagrams to the gateway, batching (e.g. UDP GSO) where the OS allows it.

        A full socket buffer drops; an oversize datagram reports ``PmtuEvidence("emsgsize")``
        through ``on_pmtu`` instead of raising.
        """

    @abstractmethod
    def send_probe(self, datagram: bytes) -> None:
        """Send one path MTU probe (RFC 8899) with DF set on its outer IPv4 header; data keeps DF clear.

        The OS must neither fragment it nor refuse it for a path MTU it cached (the probe is what finds the
        path MTU out).  A probe the outgoing link cannot carry reports ``PmtuEvidence("emsgsize")``, an ICMP
        fragmentation-needed answering it ``PmtuEvidence("icmp")`` (with the router's MTU and the quote where
        the OS hands them over), both through ``on_pmtu``; nothing raises.
        """

    @abstractmethod
    def close(self) -> None: ...


class ConnectivityMonitor(ABC):
    """The OS's side of watching the IPv4 path toward one gateway: a change source and path look-ups.

    It decides nothing: the client's connectivity tracker debounces the changes, asks for look-ups and
    probes, and decides when the attachment changed.
    """

    gateway: IPv4Address
    ignore_interface: str
    """Our own tunnel interface: its changes say nothing about the path toward the gateway."""
    uplink: str | None = None
    """The IPv4 interface this monitor answers for (one tunnel per uplink, draft 2.5): :meth:`lookup` and
    :meth:`probe` then describe the path toward the gateway through that interface only, as a socket bound to
    it (:meth:`Backend.open_udp` with ``uplink``) would take it.  ``None``: the path the OS prefers."""

    @abstractmethod
    async def start(self, on_change: ChangeCallback) -> None:
        """Subscribe to the OS's change notifications: ``on_change()`` runs on the running loop after each
        batch that may concern the path (those about ``ignore_interface`` excepted).  Once this returns no
        change is missed, so a look-up made afterwards sees every later change announced."""

    @abstractmethod
    async def lookup(self) -> Attachment | None:
        """The path the OS would use toward the gateway now: egress IPv4 address, interface, next hop
        (``None``: no usable IPv4 path).  With :attr:`uplink` set, the path through that interface only:
        ``None`` when it has no IPv4 address or no route toward the gateway (another interface's route
        never answers for it)."""

    @abstractmethod
    def probe(self) -> Attachment | None:
        """The cheap backstop for lost notifications: the source a UDP socket connected toward the gateway
        gets (nothing is sent) and the interface holding it; the next hop is not looked for.  With
        :attr:`uplink` set, scoped to that interface as :meth:`lookup` is."""

    @abstractmethod
    async def uplinks(self, *, ignore: Collection[str] = ()) -> tuple[Attachment, ...]:
        """Every IPv4 interface with a usable route toward the gateway, each as the path through it (egress
        address, interface, next hop): the one the OS prefers first, then the others in a stable order (the
        OS's route metric where it has one, then the name).  Not scoped by :attr:`uplink`.

        Tunnel interfaces are left out: :attr:`ignore_interface`, and every name in ``ignore`` (the caller's
        other tunnels, whose routes must never count as a way to the gateway).  Interfaces that are down, or
        have no IPv4 address, or whose routes do not reach the gateway, are not uplinks."""

    @abstractmethod
    async def stop(self) -> None:
        """Unsubscribe and release the OS handles."""


# --------------------------------------------------------------------------- what the desktop tells
#
# Hints some systems give about power and the network's reachability (Linux: logind and NetworkManager on
# the system D-Bus; macOS: IOKit's root power domain, SCNetworkReachability not used yet; Windows: the SCM's
# SERVICE_CONTROL_POWEREVENT through the service host, the NLM not used yet).  Optional: without them the
# client behaves as it always did (the wall-clock check notices sleeps, and a portal is only a gateway that
# does not answer).


class PowerEvent(StrEnum):
    SLEEPING = "sleeping"
    """The system is about to sleep (suspend or hibernate)."""
    RESUMED = "resumed"
    """The system woke up: NAT mappings and gateway states may have expired meanwhile."""


class NetworkReachability(StrEnum):
    """How far the OS says this host's network reaches (NetworkManager's ``NMConnectivityState``)."""

    UNKNOWN = "unknown"
    NONE = "none"
    PORTAL = "portal"
    """A captive portal holds the network until the user signs in (usually in a browser)."""
    LIMITED = "limited"
    FULL = "full"


PowerCallback = Callable[[PowerEvent], None]
ReachabilityCallback = Callable[[NetworkReachability], None]


class PowerEvents(ABC):
    """The OS's sleep and resume announcements."""

    @abstractmethod
    async def start(self, on_event: PowerCallback) -> bool:
        """Subscribe: ``on_event`` runs on the running loop for each announcement.  ``False`` when the OS
        service is not there (no bus, nobody owns the name): nothing will ever be announced then."""

    @abstractmethod
    async def stop(self) -> None: ...


class ReachabilityHints(ABC):
    """The OS's own verdict on whether the network reaches the Internet (captive portals included)."""

    @abstractmethod
    async def start(self, on_change: ReachabilityCallback) -> NetworkReachability | None:
        """Subscribe and return the verdict now (``None``: the OS service is not there, nothing will be
        announced); ``on_change`` runs on the running loop each time it changes afterwards."""

    @abstractmethod
    async def stop(self) -> None: ...


class Backend(ABC):
    """One OS's implementation; chosen once by :func:`m6t.platform.default_backend`."""

    name: str
    source_routes: bool = False
    """Whether a tunnel of several needs a source-specific route (:attr:`Route.source`) so that what is sent from
    its address leaves through it: an OS whose routes follow the destination alone (Linux).  Windows (the strong
    host model, the default for IPv6) and macOS (scoped routing: a source address scopes the route lookup to its
    interface) already send a packet through the interface holding its source."""

    @abstractmethod
    def check(self) -> list[PlatformError]:
        """Start-up checks (TUN driver present, IPv6 enabled, ...), each with a fix hint."""

    @abstractmethod
    def open_tun(self, name: str) -> TunDevice: ...

    @abstractmethod
    async def set_mtu(self, ifname: str, mtu: int) -> None: ...

    @abstractmethod
    async def set_link_up(self, ifname: str) -> None: ...

    @abstractmethod
    async def replace_address(self, ifname: str, address: IPv6Address, prefixlen: int) -> None:
        """Install the address (idempotent: installing an existing address is not an error)."""

    @abstractmethod
    async def remove_address(self, ifname: str, address: IPv6Address, prefixlen: int) -> None:
        """Remove the address; removing an absent one is not an error."""

    @abstractmethod
    async def replace_route(self, ifname: str, route: Route) -> None: ...

    @abstractmethod
    async def remove_route(self, ifname: str, route: Route) -> None: ...

    @abstractmethod
    def interface_exists(self, ifname: str) -> bool: ...

    def uplink_problem(self, uplink: str) -> PlatformError | None:
        """What in this host's settings keeps a tunnel bound to ``uplink`` from working, for the user to change
        (``None``: nothing known)."""
        return None

    @abstractmethod
    def open_udp(self, gateway: tuple[IPv4Address, int], *, uplink: str | None = None) -> UdpChannel:
        """A channel toward the gateway.  ``uplink``: the IPv4 interface (named as the monitor's
        :attr:`Attachment.interface <m6t.protocol.values.Attachment.interface>` names it) the socket is bound
        to: its datagrams leave through that interface whatever the routing table prefers, and it receives
        only what arrives there; ``None``: wherever the OS routes.  Raises :class:`PlatformError` when the
        interface is unknown."""

    @abstractmethod
    def connectivity_monitor(
        self, gateway: IPv4Address, ignore_interface: str, *, uplink: str | None = None
    ) -> ConnectivityMonitor:
        """A monitor of the path toward ``gateway``; ``uplink``: look-ups and probes answer for the path
        through that interface only (see :attr:`ConnectivityMonitor.uplink`)."""

    def power_events(self) -> PowerEvents | None:
        """The OS's sleep/resume announcements, where this backend has them."""
        return None

    def reachability_hints(self) -> ReachabilityHints | None:
        """The OS's verdict on the network (captive portal, full), where this backend has it."""
        return None

    @abstractmethod
    async def close(self) -> None:
        """Release OS handles (netlink sockets, ...)."""


# --------------------------------------------------------------------------- the control transport
#
# How the privileged helper and its local clients (CLI, tray, scripts) reach each other: a Unix socket
# on Linux and macOS, a named pipe on Windows.  Chosen once per OS by :func:`m6t.platform.control_transport`;
# everything above speaks JSON lines over the asyncio streams or the blocking stream it hands out.


class ControlAddressInUse(PlatformError):
    """Another helper serves the control address, or something that is not ours occupies it."""


class ControlServerUntrusted(PlatformError):
    """What a client reached at the control address is not the helper as the OS vouches for it (a program that
    took a Windows pipe name first): nothing may be sent to it."""


class PeerIdentity(ABC):
    """Who is on the other end of a control connection, as the OS vouches for it at connect time.

    Facts only (is this the superuser, does it hold that group): what each peer may do is the client's
    policy (:mod:`m6t.client.api.authorization`), which never needs to know how the OS answered.
    """

    __slots__ = ()

    pid: int | None
    """The peer process, when the OS says (logs; with ``uid`` and its start time, polkit's subject)."""
    uid: int | None
    """The POSIX user id; ``None`` where accounts are not numbers (Windows names them by SID)."""
    start_time: int | None = None
    """When ``pid`` started, in the OS's own unit (Linux: clock ticks since boot, ``/proc/PID/stat`` field 22),
    read at connect time: with it a desktop authority tells the peer from a later process given the same pid."""

    @property
    @abstractmethod
    def is_superuser(self) -> bool:
        """root on POSIX; on Windows a member of Administrators, elevated or not."""

    @abstractmethod
    def in_group(self, name: str) -> bool:
        """Whether the peer holds the group ``name`` (primary or supplementary; on Windows a token group)."""


@dataclass(frozen=True, slots=True)
class ControlConnection:
    """One accepted client: its byte streams and who it is (``None`` when the OS cannot tell)."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    peer: PeerIdentity | None


ConnectionHandler = Callable[[ControlConnection], Awaitable[None]]
"""Serves one client; runs as its own task, and the connection ends when it returns."""


class ControlListener(ABC):
    """The helper's end: accepts local clients at one address, each with its peer's identity."""

    address: str
    """What clients connect to (a socket path, a pipe name): for logs and the status."""

    @abstractmethod
    async def start(self, on_connection: ConnectionHandler) -> None:
        """Listen, every local user may connect; raises :class:`ControlAddressInUse` when another helper
        already listens there, and :class:`OSError` when the address cannot be served."""

    @abstractmethod
    def close(self) -> None:
        """Stop accepting (clients already connected stay until their handlers return)."""

    @abstractmethod
    async def wait_closed(self) -> None:
        """Release the address once accepting has stopped: a newer helper's address is left alone."""


class ControlStream(ABC):
    """A client's blocking end of a control connection (the CLI and scripts)."""

    @abstractmethod
    def send(self, data: bytes, timeout: float | None) -> None:
        """Send all of ``data``; raises :class:`TimeoutError` or :class:`OSError`."""

    @abstractmethod
    def receive(self, timeout: float | None) -> bytes:
        """The next bytes the helper sent, ``b""`` once it closed; raises :class:`TimeoutError` or :class:`OSError`."""

    @abstractmethod
    def close(self) -> None: ...


class ControlTransport(ABC):
    """One OS's control channel, for both ends."""

    @abstractmethod
    def listener(self, address: str) -> ControlListener: ...

    @abstractmethod
    def connect(self, address: str, timeout: float | None) -> ControlStream:
        """Connect, blocking; raises :class:`OSError` (or :class:`ValueError` for an unusable address)."""

    @abstractmethod
    async def open_connection(self, address: str, *, limit: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Connect on the running loop; ``limit`` bounds a line.  Raises like :meth:`connect`."""

    @abstractmethod
    def verify_server(self, native: int) -> None:
        """Check, before anything is sent, that the server end of a client's connection is the helper as the OS
        vouches for it; ``native`` is the client end's OS handle (a socket descriptor, a pipe HANDLE), for a
        connection made by other code (the tray's QLocalSocket).  :meth:`connect` and :meth:`open_connection`
        do it themselves.  Raises :class:`ControlServerUntrusted`, or :class:`OSError` when the OS cannot say."""


# --------------------------------------------------------------------------- the desktop's authority
#
# Who else may decide what a local user may do: polkit on Linux desktops.  Chosen once per OS by
# :func:`m6t.platform.desktop_authority` (``None``: this OS has none, the client's own policy decides alone).
# It answers questions about one peer and one action; which action a request needs and what to tell the user
# is the client's policy (:mod:`m6t.client.api.authorization`).


class AuthorityAnswer(StrEnum):
    YES = "yes"
    """Authorized now."""
    CHALLENGE = "auth"
    """Authorized once someone authenticates (an administrator's password through the desktop's agent)."""
    NO = "no"


@dataclass(frozen=True, slots=True)
class AuthorityVerdict:
    answer: AuthorityAnswer
    dismissed: bool = False
    """The user closed the authentication dialog instead of answering it."""


class AuthorityUnavailable(PlatformError):
    """The authority is not on this host now (no system bus, nobody owns its name, our actions unknown to it)."""


class DesktopAuthority(ABC):
    name: str
    """What to call it in messages (``"polkit"``)."""

    @abstractmethod
    async def check(self, peer: PeerIdentity, action: str, *, interactive: bool, timeout: float) -> AuthorityVerdict:
        """May ``peer`` do ``action``?  ``interactive`` lets the authority ask the user to authenticate (the
        call then waits for them).  Raises :class:`AuthorityUnavailable` when there is nobody to ask,
        :class:`TimeoutError` when no answer came within ``timeout`` seconds (the question is withdrawn), and
        :class:`PlatformError` when the authority failed to answer (a peer it cannot identify included)."""

    @abstractmethod
    async def close(self) -> None: ...


# --------------------------------------------------------------------------- the service manager
#
# How the helper's process lives under the OS's service manager.  systemd and launchd only start a process
# and signal it (SIGTERM), so there the helper runs its coroutine directly; Windows' Service Control Manager
# takes the main thread for its dispatcher, wants the service's state reported as it changes, and sends
# stop, shutdown and power events to a handler (m6t.platform.windows.service).  Chosen by
# :func:`m6t.platform.service_host`.

ServiceReady = Callable[[], None]
"""Called by the service's coroutine, on the loop, once its control channel listens."""
ServiceMain = Callable[[ServiceReady, asyncio.Event], Awaitable[int]]
"""The service's coroutine: runs until the event is set (the manager's stop) and returns its exit status
(0, or the code of the start-up failure, which the manager records)."""


class ServiceHost(ABC):
    @abstractmethod
    def run(self, main: ServiceMain, on_resume: Callable[[], None]) -> int:
        """Run ``main`` on an asyncio loop to its end and return its exit status.  ``on_resume`` runs on that
        loop whenever the service manager announces that the system resumed from sleep."""


class DirectServiceHost(ServiceHost):
    """A console run, systemd or launchd: the coroutine on the main thread, stopped by its own signals."""

    def run(self, main: ServiceMain, on_resume: Callable[[], None]) -> int:
        async def body() -> int:
            return await main(lambda: None, asyncio.Event())

        return asyncio.run(body())
