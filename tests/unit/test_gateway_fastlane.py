"""The core's active-state events and the fast lane that forwards them, with a fake kernel lane."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from ipaddress import IPv4Address, IPv6Address, IPv6Network

import pytest

from m6t.gateway import CoreSettings, GatewayCore, Verdict
from m6t.gateway.config import FastLaneSection, GatewayConfig, GatewayTunnelSection, ListenSection, StatesSection
from m6t.gateway.fastlane import ESTABLISHED_SLACK_S, Element, FastLane, lane_limits, reconcile
from m6t.gateway.metrics import PREFIX, format_status, parse, render
from m6t.gateway.states import StateTable, pack_endpoint
from m6t.platform.base import PlatformError
from m6t.protocol import build_echo_request

PREFIX6 = IPv6Network("fd6d:3674:a1b2::/48")
HA = IPv6Address("fd00:ab::1")
MN = IPv6Address("fd6d:3674:a1b2:0:1:a1:b2:c3")
MN2 = IPv6Address("fd6d:3674:a1b2:0:2:d4:e5:f6")
NAT1 = int(IPv4Address("198.51.100.11"))
NAT2 = int(IPv4Address("198.51.100.12"))
PORTS = (3544, 4500)
T0 = 1000.0


def make_core() -> GatewayCore:
    settings = CoreSettings(
        prefixes=(PREFIX6,),
        home_agents=(HA,),
        temporary_lifetime_s=0.5,
        active_lifetime_s=30.0,
        new_states_per_ipv4_per_s=1.0,
        new_states_per_ipv4_burst=5,
        sockets=2,
    )
    return GatewayCore(settings, T0)


def activate(core: GatewayCore, src: IPv6Address, ipv4: int, port: int, sock: int, now: float = T0) -> None:
    assert core.datagram_from_mn(build_echo_request(src.packed, HA.packed, 7, 1), ipv4, port, sock, now)
    assert core.packet_from_ha(build_echo_request(HA.packed, src.packed, 9, 1), now) is Verdict.FORWARDED
    core.take_outputs()


# --------------------------------------------------------------------------- the table's events


def test_nothing_is_recorded_until_someone_tracks() -> None:
    core = make_core()
    activate(core, MN, NAT1, 40000, 0)
    assert core.table.activated is None and core.table.deactivated is None
    assert core.table.take_active_events() == ([], [])


def test_activation_and_expiry_are_events_temporary_states_are_not() -> None:
    core = make_core()
    assert core.table.track_active() == []
    assert core.datagram_from_mn(build_echo_request(MN2.packed, HA.packed, 7, 1), NAT2, 1, 0, T0)
    activate(core, MN, NAT1, 40000, 1)
    assert core.table.take_active_events() == ([(int(MN), pack_endpoint(NAT1, 40000, 1))], [])
    # The temporary state of MN2 expires: no event.  The active one of MN: one.
    assert core.collect_garbage(T0 + 31.0)
    assert core.table.take_active_events() == ([], [(int(MN), pack_endpoint(NAT1, 40000, 1))])
    assert core.table.take_active_events() == ([], [])


def test_an_expired_active_state_reused_before_collection_is_an_expiry() -> None:
    core = make_core()
    activate(core, MN, NAT1, 40000, 0)
    core.table.track_active()
    # Expired, not collected; a datagram from elsewhere makes a new temporary state in its entry.
    later = T0 + 31.0
    assert core.datagram_from_mn(build_echo_request(MN.packed, HA.packed, 7, 2), NAT2, 5, 1, later)
    assert core.table.take_active_events() == ([], [(int(MN), pack_endpoint(NAT1, 40000, 0))])


def test_tracking_starts_with_the_states_already_active() -> None:
    core = make_core()
    activate(core, MN, NAT1, 40000, 0)
    core.datagram_from_mn(build_echo_request(MN2.packed, HA.packed, 7, 1), NAT2, 1, 1, T0)
    assert core.table.track_active() == [(int(MN), pack_endpoint(NAT1, 40000, 0))]


def test_reconcile_judges_by_the_table_not_by_the_order_of_events() -> None:
    table = StateTable(64, 0)
    table.track_active()
    one, two = pack_endpoint(NAT1, 1, 0), pack_endpoint(NAT2, 2, 0)
    table.add_temporary(1, one, 10)
    value = table.get(1)
    assert value is not None
    table.promote(1, value, 20)
    assert table.collect(20, 100)  # expired and collected: deactivated
    table.add_temporary(1, two, 30)
    value = table.get(1)
    assert value is not None
    table.promote(1, value, 40)  # the same address active again, from another endpoint
    activated, deactivated = table.take_active_events()
    assert activated == [(1, one), (1, two)] and deactivated == [(1, one)]
    assert reconcile(table, activated, deactivated) == ([(1, two)], [(1, one)])


# --------------------------------------------------------------------------- limits from the configuration


def config(states: StatesSection, lane: FastLaneSection) -> GatewayConfig:
    tunnel = GatewayTunnelSection(prefixes=(PREFIX6,), home_agents=(HA,))
    return GatewayConfig(listen=ListenSection(ports=PORTS), tunnel=tunnel, states=states, fastlane=lane)


def test_limits_scale_the_new_state_rate_and_cap_at_what_the_kernel_takes() -> None:
    limits = lane_limits(config(StatesSection(), FastLaneSection()))
    assert (limits.per_ipv4_per_s, limits.per_ipv4_burst) == (80, 160)
    assert (limits.total_per_s, limits.total_burst) == (20_000, 2_000)
    assert limits.established_timeout_s == 120 + ESTABLISHED_SLACK_S
    assert limits.max_established == 2_000_000
    tiny = lane_limits(config(StatesSection(new_states_per_ipv4_per_s=0.001), FastLaneSection(packets_per_new_state=1)))
    assert tiny.per_ipv4_per_s == 1
    huge = lane_limits(
        config(
            StatesSection(new_states_per_ipv4_per_s=1e300, new_states_per_ipv4_burst=10**12),
            FastLaneSection(packets_per_new_state=1000),
        )
    )
    assert (huge.per_ipv4_per_s, huge.per_ipv4_burst) == (10_000_000, 10_000_000)
    assert math.isfinite(huge.per_ipv4_per_s)


# --------------------------------------------------------------------------- the lane driver


class FakeLane:
    def __init__(self) -> None:
        self.elements: set[Element] = set()
        self.calls: list[tuple[list[Element], list[Element]]] = []
        self.fail = 0
        self.resets = 0

    def update(self, added: Sequence[Element], removed: Sequence[Element]) -> None:
        if self.fail:
            self.fail -= 1
            raise PlatformError("cannot update: the table is gone")
        self.calls.append((list(added), list(removed)))
        self.elements -= set(removed)
        self.elements |= set(added)

    def counters(self) -> Mapping[str, tuple[int, int]]:
        return {"established": (5, 500), "policed_per_ipv4": (7, 700), "policed_ceiling": (0, 0), "passed": (3, 30)}

    def reset(self) -> None:
        self.resets += 1
        self.elements = set()

    def close(self) -> None:
        pass


def element(src: IPv6Address, ipv4: int, port: int, local_port: int) -> Element:
    return int(src), ipv4, port, local_port


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0.02)


def test_the_lane_follows_activations_and_expiry_in_batches() -> None:
    async def main() -> None:
        core = make_core()
        activate(core, MN, NAT1, 40000, 0)  # active before the lane starts: a restored state, say
        lane = FakeLane()
        fast = FastLane(core, lane, PORTS)
        fast.start(asyncio.get_running_loop())
        assert lane.elements == {element(MN, NAT1, 40000, 3544)}
        activate(core, MN2, NAT2, 5000, 1)
        fast.poke()
        fast.poke()  # one sync for the batch, however often poked
        await settle()
        assert lane.elements == {element(MN, NAT1, 40000, 3544), element(MN2, NAT2, 5000, 4500)}
        assert len(lane.calls) == 2
        core.collect_garbage(T0 + 31.0)
        fast.poke()
        await settle()
        assert lane.elements == set()
        assert (fast.added, fast.removed) == (2, 2)
        fast.stop()

    asyncio.run(main())


def test_a_failed_update_rebuilds_the_table_from_the_states() -> None:
    async def main() -> None:
        core = make_core()
        lane = FakeLane()
        fast = FastLane(core, lane, PORTS)
        loop = asyncio.get_running_loop()
        fast.start(loop)
        lane.fail = 1
        activate(core, MN, NAT1, 40000, 0)
        fast.poke()
        await settle()
        assert fast.errors == 1 and lane.elements == set()
        handle = fast._handle
        assert isinstance(handle, asyncio.TimerHandle) and handle.when() - loop.time() > 1.0
        handle.cancel()
        fast._handle = None
        fast._sync()  # the retry, without waiting for it
        assert lane.resets == 1 and fast.resets == 1
        assert lane.elements == {element(MN, NAT1, 40000, 3544)}
        fast.stop()

    asyncio.run(main())


def test_the_counters_are_metrics_and_status_lines() -> None:
    core = make_core()
    fast = FastLane(core, FakeLane(), PORTS)
    text = render(fast.metrics())
    samples = {(s.name, s.labels.get("rule")): s.value for s in parse(text)}
    assert samples[(PREFIX + "fastlane_enabled", None)] == 1
    assert samples[(PREFIX + "fastlane_packets_total", "policed_per_ipv4")] == 7
    assert samples[(PREFIX + "fastlane_packets_total", "established")] == 5
    status = format_status(text)
    assert "fast lane:   5 established packets; policed in the kernel: 7 over a source's rate, 0 over" in status


def test_status_says_when_the_lane_is_off() -> None:
    from m6t.gateway.fastlane import fastlane_off_metrics

    assert "fast lane:   off" in format_status(render(fastlane_off_metrics()))


@pytest.mark.parametrize("failing", [True, False])
def test_unreadable_counters_leave_the_rest_of_the_metrics(failing: bool) -> None:
    class Unreadable(FakeLane):
        def counters(self) -> Mapping[str, tuple[int, int]]:
            if failing:
                raise PlatformError("gone")
            return {}

    text = render(FastLane(make_core(), Unreadable(), PORTS).metrics())
    assert "fastlane_enabled 1" in text
    assert "fast lane:   on (kernel counters unreadable)" in format_status(text)
