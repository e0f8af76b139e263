"""socat TUN ⇄ UDP on both ends: the minimal C userspace tunnel, the yardstick of the targets.

socat moves one packet per read and one per write through a buffer of -b bytes (8192 by default, which
already holds a 1472-byte packet; -b 65536 is set anyway so that no size can ever be truncated). The
gateway end waits for the MN's first datagram and then talks to that one NATed address and port only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import psutil

from bench import tunnel_lab as tl
from bench.scenarios.base import CLIENT, GATEWAY, Scenario, Tunnel
from m6t.lab import GW, GW_WAN, HA, HA_LINK, MN, StandardLab

PORT = 5500
IFNAME = "sc0"
MTU = 1472
NET_PREFIX = 64
GW_INNER = "fd00:5c::1"
MN_INNER = "fd00:5c::2"
BUFFER = 65536


def _tun_spec() -> str:
    return f"TUN,tun-name={IFNAME},tun-type=tun,iff-no-pi,iff-up"


class SocatScenario(Scenario):
    """socat -b 65536 UDP ⇄ TUN on the MN and on the gateway host."""

    name = "socat"
    title = "socat TUN⇄UDP (C, one packet per syscall)"
    tools = ("socat",)

    @contextlib.contextmanager
    def up(self, lab: StandardLab, logdir: Path) -> Iterator[Tunnel]:
        """Start both socat ends with their TUN devices and routes; stopped and deleted on exit."""
        with contextlib.ExitStack() as stack:
            for host, inner in ((GW, GW_INNER), (MN, MN_INNER)):
                stack.enter_context(tl.tun_device(lab, host, IFNAME, MTU))
                stack.enter_context(tl.address(lab, host, f"{inner}/{NET_PREFIX}", IFNAME))
            gw_log = logdir / "socat-gw.log"
            gw = stack.enter_context(
                tl.process(
                    lab,
                    GW,
                    ["socat", "-b", str(BUFFER), f"UDP-LISTEN:{PORT},bind={GW_WAN}", _tun_spec()],
                    log=gw_log,
                )
            )
            tl.wait_for(lambda: tl.udp_listening(lab, GW, PORT), what="socat to listen on the gateway", timeout=5)
            mn_log = logdir / "socat-mn.log"
            mn = stack.enter_context(
                tl.process(lab, MN, ["socat", "-b", str(BUFFER), f"UDP:{GW_WAN}:{PORT}", _tun_spec()], log=mn_log)
            )
            # socat brings a device up once it has opened it; the gateway's end opens its TUN only when the
            # MN's first datagram has told it who its peer is.
            tl.wait_for(lambda: tl.link_up(lab, MN, IFNAME), what=f"socat to bring {IFNAME} up on the MN", timeout=5)
            # The HA's default route already points at the gateway host, which forwards IPv6.
            stack.enter_context(tl.route(lab, MN, HA_LINK, "dev", IFNAME))
            tl.check_alive(gw, "socat on the gateway", gw_log)
            tl.check_alive(mn, "socat on the MN", mn_log)
            yield Tunnel(
                target=HA,
                full_size_ping=MTU - 48,
                mtu=MTU,
                processes={CLIENT: psutil.Process(mn.pid), GATEWAY: psutil.Process(gw.pid)},
                tun={MN: IFNAME, GW: IFNAME},
            )
