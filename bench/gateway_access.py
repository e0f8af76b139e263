"""Enrolled access in the gateway core: what the check costs, against the open core in the same run.

    python -m bench.gateway_access [--packets N]

Per packet, CPU time (best of three) of: data for existing states through an open core (the baseline) and
through an enrolled one (the same path: no header once a state exists); forged headers refused for an
unknown key (a parse and a lookup) and for a bad MAC under a known key (one HMAC-SHA256); and sealed first
packets that pass and create a state.  Nothing here asserts a time: the ratios are the result.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from ipaddress import IPv6Address, IPv6Network
from typing import Final

from m6t.gateway.core import CoreSettings, GatewayCore
from m6t.protocol import build_echo_request
from m6t.protocol.access import AccessVerifier, Sealer

BASE: Final = int(IPv6Address("fd6d:3674:a1b2:0:1::"))
HA: Final = IPv6Address("fd00:ab::1")
KEY: Final = bytes(range(32))
WALL: Final = 1_767_225_600.0
BATCH: Final = 256


def _core(enrolled: bool, n: int) -> GatewayCore:
    settings = CoreSettings(
        prefixes=(IPv6Network("fd6d:3674:a1b2::/48"),),
        home_agents=(HA,),
        max_temporary=n * 2,
        max_states=n * 4,
        new_states_per_ipv4_per_s=1e9,
        new_states_per_ipv4_burst=n * 4,
    )
    access = AccessVerifier([KEY], wall_offset=WALL, replay_capacity=n * 8) if enrolled else None
    return GatewayCore(settings, 0.0, access=access)


def _time(core: GatewayCore, stream: list[tuple[bytes, int, int]]) -> float:
    start = time.process_time()
    from_mn = core.datagram_from_mn
    for offset in range(0, len(stream), BATCH):
        for data, ipv4, port in stream[offset : offset + BATCH]:
            from_mn(data, ipv4, port, 0, 0.0)
        core.to_ha.clear()
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packets", type=int, default=200_000)
    n = parser.parse_args().packets
    rng = random.Random(3)
    sources = [IPv6Address(BASE | rng.getrandbits(48)) for _ in range(1000)]
    sealer = Sealer(KEY)
    data = [build_echo_request(s.packed, HA.packed, 1, 1, data=bytes(1200)) for s in sources]
    endpoints = [(0xC6336400 + i, 1024 + i) for i in range(len(sources))]

    def established(enrolled: bool) -> Callable[[], float]:
        core = _core(enrolled, n)
        for packet, (ipv4, port) in zip(data, endpoints, strict=True):
            sealed = sealer.seal(packet, WALL, rng.randbytes(8)) if enrolled else packet
            core.datagram_from_mn(sealed, ipv4, port, 0, 0.0)
        stream = [(data[i], *endpoints[i]) for i in (rng.randrange(len(data)) for _ in range(n))]
        return lambda: _time(core, stream)

    template = sealer.seal(data[0], WALL, bytes(8))
    unknown = [(template[:8] + rng.randbytes(8) + template[16:], 0xC6336401, 9) for _ in range(min(n, 50_000))]
    bad_mac = [(template[:16] + rng.randbytes(24) + template[40:], 0xC6336401, 9) for _ in range(min(n, 50_000))]
    fresh = [
        (sealer.seal(build_echo_request(IPv6Address(BASE | i).packed, HA.packed, 1, 1), WALL, i.to_bytes(8)), 1, 9)
        for i in range(1, min(n, 50_000) + 1)
    ]

    t_open = min(established(False)() for _ in range(3))
    t_enrolled = min(established(True)() for _ in range(3))
    t_unknown = min(_time(_core(True, n), unknown) for _ in range(3)) / len(unknown) * n
    t_bad = min(_time(_core(True, n), bad_mac) for _ in range(3)) / len(bad_mac) * n
    t_fresh = min(_time(_core(True, n), fresh) for _ in range(3)) / len(fresh) * n
    ns = 1e9 / n
    print(f"gateway core, MN -> HA, {n:,} packets, best of 3 (CPU time)")
    print(f"  open core, existing states (baseline):   {t_open * ns:6.0f} ns/packet")
    for label, t in (
        ("enrolled core, existing states:", t_enrolled),
        ("forged header, unknown key:", t_unknown),
        ("forged header, known key, bad MAC:", t_bad),
        ("sealed first packet, state created:", t_fresh),
    ):
        print(f"  {label:40s} {t * ns:6.0f} ns/packet  ({t / t_open:.2f}x the baseline)")


if __name__ == "__main__":
    main()
