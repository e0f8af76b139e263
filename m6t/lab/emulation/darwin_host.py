"""The Linux host under the emulated macOS: rtnetlink calls, rtnetlink change events, TUN devices.

The emulated macOS applies every change to the mobile node's Linux namespace, so that packets really flow:
a utun is a Linux TUN, an ``SIOCAIFADDR_IN6`` a netlink address, an ``RTM_ADD`` a netlink route.

pyroute2's synchronous ``IPRoute`` drives an event loop of its own and therefore cannot be called from the
helper's running loop; the macOS calls it stands for are synchronous system calls, so each one is handed to
a thread of ours and waited for (:class:`Netlink`).  The change events are read by another thread
(:class:`NetlinkEvents`), as the XNU kernel produces routing messages independently of their readers.

The lab runs only on Linux: ``fcntl`` is looked up at run time, so that this module type-checks for every
platform the project is checked for.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import struct
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink import rtnl
from pyroute2.netlink.exceptions import NetlinkError

from m6t.lab.emulation.darwin_abi import IFF_MULTICAST, oserror

TUN_PATH = "/dev/net/tun"
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
LINUX_IFF_MULTICAST = 0x1000
"""Linux's IFF_MULTICAST; the lower flags (UP, BROADCAST, LOOPBACK, POINTOPOINT, RUNNING, NOARP) share
their values with macOS's net/if.h."""
_SHARED_FLAGS = 0x1 | 0x2 | 0x8 | 0x10 | 0x40 | 0x80
O_NONBLOCK = 0o4000
"""Linux's value (the os module's name for it is missing from typeshed's Windows view)."""

EVENT_GROUPS = (
    rtnl.RTMGRP_LINK
    | rtnl.RTMGRP_IPV4_IFADDR
    | rtnl.RTMGRP_IPV6_IFADDR
    | rtnl.RTMGRP_IPV4_ROUTE
    | rtnl.RTMGRP_IPV6_ROUTE
)


def darwin_flags(linux_flags: int) -> int:
    """A Linux link's flags as macOS spells them (only IFF_MULTICAST moves)."""
    flags = linux_flags & _SHARED_FLAGS
    return flags | IFF_MULTICAST if linux_flags & LINUX_IFF_MULTICAST else flags


class Netlink:
    """Synchronous rtnetlink calls from any thread, carried out on one thread of their own.

    A netlink error comes back as the ``OSError`` the macOS call would raise, with the same errno.
    """

    def __init__(self) -> None:
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="emulated-netlink", initializer=self._open)

    def _open(self) -> None:
        self._local.ipr = IPRoute()

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        def run() -> Any:
            return getattr(self._local.ipr, method)(*args, **kwargs)

        try:
            return self._pool.submit(run).result()
        except NetlinkError as exc:
            raise oserror(exc.code) from None

    def link(self, index: int) -> Any:
        return self.call("link", "get", index=index)[0]

    def close(self) -> None:
        def shut() -> None:
            ipr = getattr(self._local, "ipr", None)
            if ipr is not None:
                ipr.close()

        with contextlib.suppress(Exception):
            self._pool.submit(shut).result()
        self._pool.shutdown(wait=False)


class NetlinkEvents:
    """Reads rtnetlink change events on a thread of its own and hands each message to ``on_message``."""

    def __init__(self, on_message: Callable[[Any], None]) -> None:
        self._on_message = on_message
        self._ready = threading.Event()
        # A daemon: it blocks in a netlink read until the process ends, which takes its socket with it.
        self._thread = threading.Thread(target=self._run, name="emulated-rtnetlink-events", daemon=True)

    def start(self) -> None:
        self._thread.start()
        # Subscribed before the first system call is answered: no change made after it goes unannounced.
        self._ready.wait(5.0)

    def _run(self) -> None:
        ipr = IPRoute()
        try:
            ipr.bind(groups=EVENT_GROUPS)
        finally:
            self._ready.set()
        while True:
            for message in ipr.get():
                self._on_message(message)


def open_tun(name: str) -> int:
    """A blocking fd for a new, non-persistent Linux TUN called ``name`` (bare packets, no header).

    ``OSError(EBUSY)`` if a TUN of that name is already attached to another fd.
    """
    fcntl: Any = importlib.import_module("fcntl")
    fd = os.open(TUN_PATH, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), IFF_TUN | IFF_NO_PI))
    except BaseException:
        os.close(fd)
        raise
    return fd


def set_nonblocking(fd: int) -> None:
    fcntl: Any = importlib.import_module("fcntl")
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags | O_NONBLOCK)


def set_sysctl(path: str, value: str) -> bool:
    """Best effort: a lab namespace may have a read-only /proc/sys."""
    try:
        with open(path, "w") as file:
            file.write(value)
    except OSError:
        return False
    return True


def read_sysctl(path: str) -> str | None:
    try:
        with open(path) as file:
            return file.read().strip()
    except OSError:
        return None
