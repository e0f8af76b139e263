"""Running the gateway: TUN, routes and sockets up, the data path until SIGTERM/SIGINT, everything down again.

The gateway runs on Linux only: this is where it takes the Linux backend and hands the Linux platform
objects (TUN, sockets) to its driver; ``m6t-gateway run`` refuses other systems before importing it.
The TUN is non-persistent: it lives exactly as long as this process holds its descriptor, so a crash
(or SIGKILL) removes it and the routes through it.  The state table is what survives: restored from the
state directory before the sockets listen, saved there a few seconds after it changes and once more at
stop (:mod:`m6t.gateway.persistence`), so a restart keeps every mobile node reachable.  The fast
lane's nftables table is installed before the sockets open (no datagram reaches them unpoliced) and
removed on the way out; one a crash left behind is replaced at the next start, and the restored states'
mobile nodes are in its established set before the first datagram is read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import asdict

from m6t.gateway.access import open_access, reload_keys
from m6t.gateway.config import GatewayConfig
from m6t.gateway.core import GatewayCore, settings_from_config
from m6t.gateway.counters import Counter
from m6t.gateway.driver import GatewayDriver
from m6t.gateway.fastlane import FastLane, lane_limits
from m6t.gateway.metrics import render
from m6t.gateway.metrics_server import MetricsServer
from m6t.gateway.persistence import StateSaver, prepare_directory, restore
from m6t.platform.base import PlatformError
from m6t.platform.linux.backend import LinuxBackend
from m6t.platform.linux.netlink import get_sysctl, set_sysctl
from m6t.platform.linux.nftables import FastLaneRules, NftFastLane, delete_table, table_name
from m6t.platform.linux.tun import LinuxTun
from m6t.platform.linux.udp import open_udp_listener, udp_stats
from m6t.protocol.values import Route

log = logging.getLogger(__name__)

ROUTE_METRIC = 1024
"""The kernel's own default for IPv6 routes: an administrator's more specific or cheaper route still wins."""
SOCKET_BUFFER_BYTES = 4 << 20
"""Asked for SO_RCVBUF/SO_SNDBUF; the kernel caps it at net.core.[rw]mem_max."""
ADDR_GEN_MODE_NONE = 1


def _enable_forwarding() -> None:
    if get_sysctl("net/ipv6/conf/all/forwarding") != "1":
        set_sysctl("net/ipv6/conf/all/forwarding", 1)
        log.info("IPv6 forwarding enabled (net.ipv6.conf.all.forwarding=1)")


def _quiet_tun(name: str) -> None:
    # Without a link-local address the kernel sends nothing of its own (DAD, MLD) into the tunnel,
    # which would only show up as drops; forwarding does not need an address on the device.
    for key, value in ((f"net/ipv6/conf/{name}/disable_ipv6", 0), (f"net/ipv6/conf/{name}/addr_gen_mode", 1)):
        try:
            set_sysctl(key, value)
        except PlatformError as exc:
            log.debug("%s", exc)


def open_fast_lane(config: GatewayConfig) -> NftFastLane | None:
    """The kernel fast lane as the configuration asks: ``required`` raises PlatformError when it cannot be had."""
    table = table_name(config.tunnel.interface)
    mode = config.fastlane.mode
    if mode == "off":
        with contextlib.suppress(PlatformError):
            delete_table(table)  # a table left by an earlier run with the lane on would police a lane-less gateway
        log.info('fast lane off ([fastlane] mode = "off"): floods are policed by the gateway process only')
        return None
    limits = lane_limits(config)
    rules = FastLaneRules(
        table=table, listen_address=str(config.listen.address), ports=config.listen.ports, **asdict(limits)
    )
    try:
        lane = NftFastLane(rules)
    except PlatformError as exc:
        if mode == "required":
            raise PlatformError(f"the fast lane is required ([fastlane] mode) but {exc}", hint=exc.hint) from exc
        log.warning(
            "fast lane unavailable, running without it: %s%s; a flood of new sources can then crowd out "
            'established mobile nodes (set [fastlane] mode = "off" to silence this)',
            exc,
            f" (hint: {exc.hint})" if exc.hint else "",
        )
        return None
    log.info(
        "fast lane on: nftables table inet %s; unknown sources %d/s (burst %d) per IPv4, %d/s (burst %d) in all",
        table,
        limits.per_ipv4_per_s,
        limits.per_ipv4_burst,
        limits.total_per_s,
        limits.total_burst,
    )
    return lane


async def serve(
    config: GatewayConfig,
    *,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[GatewayDriver], None] | None = None,
) -> None:
    """Run the gateway until ``stop`` is set or SIGTERM/SIGINT arrives; always tears down what it set up.

    An enrolled gateway's key file is read before anything is set up: :class:`ConfigError` if unusable."""
    loop = asyncio.get_running_loop()
    stop = stop if stop is not None else asyncio.Event()
    access = open_access(config.access)
    saver: StateSaver | None = None
    saved = False
    core = GatewayCore(settings_from_config(config), time.monotonic(), access=access)
    if config.states.state_directory is not None:
        directory = prepare_directory(config.states.state_directory)
        # Before any socket listens: the first packet from the Home Agent side already finds its state.
        report, refused = restore(directory, core, config.listen.ports)
        saver = StateSaver(
            core, config.listen.ports, directory, config.states.save_interval_s, restored=report, refused=refused
        )
    _enable_forwarding()
    backend = LinuxBackend()
    tun: LinuxTun | None = None
    sockets: list[socket.socket] = []
    routes_added: list[str] = []
    driver: GatewayDriver | None = None
    metrics: MetricsServer | None = None
    lane: NftFastLane | None = None
    handled: list[signal.Signals] = []
    try:
        tun = backend.open_tun(config.tunnel.interface)
        _quiet_tun(tun.name)
        await backend.set_mtu(tun.name, config.tunnel.mtu)
        await backend.set_link_up(tun.name)
        for prefix in config.tunnel.prefixes:
            await backend.replace_route(tun.name, Route(prefix, ROUTE_METRIC))
            routes_added.append(str(prefix))
        lane = open_fast_lane(config)
        for port in config.listen.ports:
            sockets.append(open_udp_listener(str(config.listen.address), port, buffer_bytes=SOCKET_BUFFER_BYTES))

        fastlane = FastLane(core, lane, config.listen.ports) if lane is not None else None
        running = driver = GatewayDriver(core, tun, sockets, fastlane=fastlane)
        if saver is not None:
            saver.start(loop)
            driver.on_change = saver.changed
        driver.start(loop)
        if config.metrics.listen is not None:
            keeping = saver

            def current() -> str:
                return render(running.metrics() + (keeping.metrics() if keeping is not None else []))

            metrics = MetricsServer(config.metrics.listen, current)
            await metrics.start()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
            handled.append(signum)
        # SIGHUP re-reads the key file; states stay (an open gateway just says there is nothing to read).
        loop.add_signal_handler(signal.SIGHUP, reload_keys, access, config.access)
        handled.append(signal.SIGHUP)

        gso = all(udp_stats(s).gso for s in sockets)
        gro = all(udp_stats(s).gro for s in sockets)
        log.info(
            "m6t gateway up: UDP %s port%s %s, TUN %s (MTU %d) for %s, Home Agent%s %s, GSO %s, GRO %s%s",
            config.listen.address,
            "s" if len(config.listen.ports) > 1 else "",
            ", ".join(map(str, config.listen.ports)),
            tun.name,
            config.tunnel.mtu,
            ", ".join(routes_added),
            "s" if len(config.tunnel.home_agents) > 1 else "",
            ", ".join(map(str, config.tunnel.home_agents)),
            "on" if gso else "off",
            "on" if gro else "off",
            f", metrics on {config.metrics.listen}" if metrics else "",
        )
        if on_ready is not None:
            on_ready(driver)
        await stop.wait()
        log.info("stopping")
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
        if driver is not None:
            driver.stop()
            if saver is not None:
                saved = await saver.close()
        if metrics is not None:
            await metrics.close()
        if tun is not None:
            for prefix in config.tunnel.prefixes:
                if str(prefix) in routes_added:
                    with contextlib.suppress(PlatformError):
                        await backend.remove_route(tun.name, Route(prefix, ROUTE_METRIC))
        for sock in sockets:
            sock.close()
        if lane is not None:
            try:
                lane.close()
            except PlatformError as exc:
                log.warning("%s", exc)
        if tun is not None:
            tun.close()
        await backend.close()
    if driver is not None:
        log.info(
            "stopped: %d packets to the Home Agent side, %d to mobile nodes, %d states at exit%s",
            core.counters[Counter.TO_HA_PACKETS],
            core.counters[Counter.TO_MN_PACKETS],
            len(core.table),
            "" if saver is None else f", {saver.last_states} saved to {saver.path}" if saved else ", NOT saved",
        )
