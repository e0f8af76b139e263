"""OpenVPN 2.6 in static point-to-point mode over UDP, no crypto, no DCO: a mature userspace tunnel.

No TLS, `--cipher none --auth none` (p2p mode without TLS has no data-ciphers negotiation),
`--disable-dco` so the data path stays in userspace like the others, compression off, and no MSS
clamping (`--mssfix 0`), so that TCP runs with the same segment size as in the other tunnels. The
gateway end has no --remote: it takes the first peer that talks, through the MN's NAT.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import psutil

from bench import tunnel_lab as tl
from bench.scenarios.base import CLIENT, GATEWAY, Scenario, Tunnel
from m6t.lab import GW, GW_WAN, HA, HA_LINK, MN, StandardLab

PORT = 1194
IFNAME = "ovpn0"
MTU = 1472
GW_INNER = "fd00:e::1"
MN_INNER = "fd00:e::2"
READY_LINE = "Initialization Sequence Completed"
READY_TIMEOUT = 20.0


def _common() -> list[str]:
    return [
        "openvpn",
        "--dev",
        IFNAME,
        "--dev-type",
        "tun",
        "--proto",
        "udp4",
        "--disable-dco",
        "--cipher",
        "none",
        "--auth",
        "none",
        "--allow-compression",
        "no",
        "--tun-mtu",
        str(MTU),
        "--mssfix",
        "0",
        "--verb",
        "3",
    ]


class OpenVpnScenario(Scenario):
    """openvpn --dev tun, UDP, p2p, no crypto, on the MN and on the gateway host."""

    name = "openvpn"
    title = "OpenVPN 2.6 p2p UDP, no crypto, no DCO"
    tools = ("openvpn",)

    @contextlib.contextmanager
    def up(self, lab: StandardLab, logdir: Path) -> Iterator[Tunnel]:
        """Start both ends, wait for their initialisation, route the HA link; all undone on exit."""
        with contextlib.ExitStack() as stack:
            for host in (GW, MN):
                stack.enter_context(tl.tun_device(lab, host, IFNAME, MTU))
            gw_log = logdir / "openvpn-gw.log"
            gw_argv = [*_common(), "--local", GW_WAN, "--lport", str(PORT), "--float"]
            gw_argv += ["--ifconfig-ipv6", f"{GW_INNER}/64", MN_INNER]
            gw = stack.enter_context(tl.process(lab, GW, gw_argv, log=gw_log))
            tl.wait_for(lambda: tl.udp_listening(lab, GW, PORT), what="openvpn to listen on the gateway", timeout=10)
            mn_log = logdir / "openvpn-mn.log"
            mn_argv = [*_common(), "--remote", GW_WAN, str(PORT), "--nobind"]
            mn_argv += ["--ifconfig-ipv6", f"{MN_INNER}/64", GW_INNER]
            mn = stack.enter_context(tl.process(lab, MN, mn_argv, log=mn_log))

            def ready() -> bool:
                tl.check_alive(gw, "openvpn on the gateway", gw_log)
                tl.check_alive(mn, "openvpn on the MN", mn_log)
                return all(READY_LINE in tl.tail(log, 200) for log in (gw_log, mn_log))

            tl.wait_for(ready, what="both OpenVPN ends to initialise", timeout=READY_TIMEOUT, interval=0.1)
            stack.enter_context(tl.route(lab, MN, HA_LINK, "dev", IFNAME))
            yield Tunnel(
                target=HA,
                full_size_ping=MTU - 48,
                mtu=MTU,
                processes={CLIENT: psutil.Process(mn.pid), GATEWAY: psutil.Process(gw.pid)},
                tun={MN: IFNAME, GW: IFNAME},
            )
