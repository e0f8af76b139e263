"""Gateway metrics: Prometheus text from the core's counters, parsed back, served and fetched over HTTP/1.0."""

from __future__ import annotations

import asyncio
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from pathlib import Path

import pytest

from m6t.gateway import CoreSettings, GatewayCore
from m6t.gateway.config import TcpEndpoint, UnixEndpoint
from m6t.gateway.metrics import PREFIX, Metric, core_metrics, format_status, parse, render
from m6t.gateway.metrics_server import MetricsError, MetricsServer, fetch_metrics
from m6t.protocol import build_echo_request

pytestmark = pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="needs Unix sockets")

HA = IPv6Address("fd00:ab::1")
MN = IPv6Address("fd6d:3674:a1b2:0:1:a1:b2:c3")


def _core() -> GatewayCore:
    core = GatewayCore(CoreSettings(prefixes=(IPv6Network("fd6d:3674:a1b2::/48"),), home_agents=(HA,)), 0.0)
    core.datagram_from_mn(build_echo_request(MN.packed, HA.packed, 1, 1), 0xC6336407, 40000, 0, 0.0)
    core.packet_from_ha(build_echo_request(HA.packed, MN.packed, 1, 1), 0.0)
    core.datagram_from_mn(b"junk", 0xC6336407, 40000, 0, 0.0)
    core.packet_from_ha(build_echo_request(HA.packed, IPv6Address("fd6d:3674:a1b2::9").packed, 1, 1), 0.0)
    return core


def _value(text: str, name: str, **labels: str) -> float:
    for sample in parse(text):
        if sample.name == PREFIX + name and all(sample.labels.get(k) == v for k, v in labels.items()):
            return sample.value
    raise AssertionError(f"{name} {labels} missing")


def test_core_counters_render_and_parse_back() -> None:
    text = render(core_metrics(_core()))
    assert "# TYPE m6t_gateway_drops_total counter" in text
    assert _value(text, "states", kind="active") == 1
    assert _value(text, "states", kind="temporary") == 0
    assert _value(text, "forwarded_packets_total", direction="to_ha") == 1
    assert _value(text, "forwarded_packets_total", direction="to_mn") == 1
    assert _value(text, "received_packets_total", side="mn") == 2
    assert _value(text, "drops_total", side="mn", reason="too_short") == 1
    assert _value(text, "drops_total", side="ha", reason="no_state") == 1
    assert _value(text, "state_events_total", event="promoted") == 1


def test_every_drop_reason_has_a_sample() -> None:
    from m6t.gateway import Drop
    from m6t.gateway.metrics import ENROLLED_DROPS

    samples = [s for s in parse(render(core_metrics(_core()))) if s.name == PREFIX + "drops_total"]
    # An open gateway lists the draft's reasons; an enrolled one adds its refusals (test_gateway_access).
    assert {(s.labels["side"], s.labels["reason"]) for s in samples} == {
        (d.side.value, d.reason) for d in Drop if d not in ENROLLED_DROPS
    }


def test_label_values_are_escaped() -> None:
    text = render([Metric("x", "gauge", "help", (({"v": 'a"b\\c\nd'}, 1.5),))])
    assert 'm6t_gateway_x{v="a\\"b\\\\c\\nd"} 1.5' in text
    assert parse(text)[0].labels == {"v": 'a"b\\c\nd'}


def test_status_summary_is_human_readable() -> None:
    summary = format_status(render(core_metrics(_core())))
    assert "states:      1 active, 0 temporary" in summary
    assert "mn/too_short: 1" in summary
    assert "ha/no_state: 1" in summary


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    # Short on purpose: a Unix socket path holds at most 107 bytes.
    path = Path(tempfile.mkdtemp(prefix="m6tgw-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_server_answers_get_metrics_over_a_unix_socket(socket_dir: Path) -> None:
    if sys.platform == "win32":
        pytest.skip("Unix sockets")
    endpoint = UnixEndpoint(str(socket_dir / "m.sock"))

    async def scenario() -> tuple[str, bytes, bytes]:
        server = MetricsServer(endpoint, lambda: "m6t_gateway_up 1\n")
        await server.start()
        try:
            text = await asyncio.to_thread(fetch_metrics, endpoint, 5.0)
            reader, writer = await asyncio.open_unix_connection(endpoint.path)
            writer.write(b"GET /nothing HTTP/1.0\r\n\r\n")
            not_found = await reader.read()
            writer.close()
            reader, writer = await asyncio.open_unix_connection(endpoint.path)
            writer.write(b"POST /metrics HTTP/1.0\r\n\r\n")
            not_allowed = await reader.read()
            writer.close()
        finally:
            await server.close()
        return text, not_found, not_allowed

    text, not_found, not_allowed = asyncio.run(scenario())
    assert text == "m6t_gateway_up 1\n"
    assert not_found.startswith(b"HTTP/1.0 404")
    assert not_allowed.startswith(b"HTTP/1.0 405")
    assert not Path(endpoint.path).exists()


def test_a_stale_socket_file_is_replaced_but_a_regular_file_is_not(socket_dir: Path) -> None:
    if sys.platform == "win32":
        pytest.skip("Unix sockets")
    stale = socket_dir / "stale.sock"
    leftover = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    leftover.bind(str(stale))
    leftover.close()
    regular = socket_dir / "regular"
    regular.write_text("keep me")

    async def scenario() -> None:
        server = MetricsServer(UnixEndpoint(str(stale)), lambda: "")
        await server.start()
        await server.close()
        with pytest.raises(MetricsError, match="not a socket"):
            await MetricsServer(UnixEndpoint(str(regular)), lambda: "").start()

    asyncio.run(scenario())
    assert regular.read_text() == "keep me"


def test_fetch_reports_an_unreachable_gateway() -> None:
    with pytest.raises(MetricsError, match="cannot reach"):
        fetch_metrics(TcpEndpoint(IPv4Address("127.0.0.1"), 1), timeout=1.0)
