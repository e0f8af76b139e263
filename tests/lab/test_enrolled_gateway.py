"""An enrolled gateway daemon in the standard lab (docs/enrolled-access.md): only key holders get anything.

Scripted mobile nodes send datagrams sealed here (the same codec the client uses) and capture, with a packet
socket in their namespace, everything the gateway sends back to them: a refused datagram must get nothing
at all, not just no UDP reply.  Needs root; skipped with the lab's reason otherwise.
"""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from m6t.gateway.config import AccessMode, AccessSection
from m6t.gateway.keys import KeyFile, save_key_file
from m6t.lab import MN, WAN2, StandardLab, processes, wait_until
from m6t.protocol import build_keepalive, parse_echo_reply
from m6t.protocol.access import Sealer, encode_key
from tests.lab.gateway_rig import (
    PORT_A,
    Gateway,
    assert_echo_replies,
    echo,
    gateway_config,
    mn_address,
    running_gateway,
    sender_spec,
)

pytestmark = [pytest.mark.lab, pytest.mark.timeout(180)]

ALICE = bytes.fromhex("a11ce" + "0" * 59)
MALLORY = bytes.fromhex("bad" + "0" * 61)
SIGHUP = signal.Signals["SIGHUP"]
"""By name: the type checkers that look at this file for Windows know no SIGHUP (the lab is Linux-only)."""
FLOOD = 100_000
"""Forged headers the attacker sends: bounded, and paced so that one run stays within seconds."""

# Send datagrams from a fixed local port, then watch for a bounded time: the UDP socket's replies, and every
# IPv4 packet from the gateway's address a packet socket sees arrive in this namespace (ICMP included).
CAPTURE_SCRIPT = r"""
import json, select, socket, sys, time
spec = json.loads(sys.argv[1])
cap = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", spec["local_port"]))
gw = socket.inet_aton(spec["gw"])
dest = (spec["gw"], spec["port"])
packets = [bytes.fromhex(p) for p in spec["send"]]
template = bytearray.fromhex(spec["forge"]) if spec.get("forge") else None
sent = 0
for p in packets:
    s.sendto(p, dest)
    sent += 1
if template is not None:
    for i in range(spec["count"]):
        template[16:24] = i.to_bytes(8, "big")
        template[24:28] = (i * 2654435761 & 0xFFFFFFFF).to_bytes(4, "big")
        if i % 2:
            template[8:16] = (i * 11400714819323198485 & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big")
        try:
            s.sendto(template, dest)
            sent += 1
        except BlockingIOError:
            pass
        if i % 200 == 199:
            time.sleep(0.002)
got, captured = [], 0
deadline = time.monotonic() + spec["wait"]
for _ in range(1000000):
    remaining = deadline - time.monotonic()
    if remaining <= 0 or (spec["expect"] and len(got) >= spec["expect"]):
        break
    ready, _, _ = select.select([s, cap], [], [], remaining)
    if not ready:
        break
    if cap in ready:
        frame = cap.recv(65535)
        if frame[12:16] == gw:
            captured += 1
    if s in ready:
        data, addr = s.recvfrom(65535)
        got.append([addr[0], addr[1], data.hex()])
print(json.dumps({"udp": got, "captured": captured, "sent": sent}))
"""


@dataclass
class Exchange:
    udp: list[tuple[str, int, bytes]]
    captured: int
    """IPv4 packets from the gateway's address that reached the sender's namespace, of any kind."""
    sent: int


def seal(packet: bytes, key: bytes = ALICE) -> bytes:
    return Sealer(key).seal(packet, time.time(), secrets.token_bytes(8))


def exchange(
    gateway: Gateway,
    host: str,
    packets: list[bytes],
    *,
    local_port: int,
    expect: int,
    wait: float = 3.0,
    forge: bytes | None = None,
    count: int = 0,
) -> Exchange:
    spec = sender_spec(packets, local_port=local_port, expect=expect, wait=wait)
    spec |= {"forge": forge.hex() if forge else "", "count": count}
    script = gateway.workdir / "capture.py"
    script.write_text(CAPTURE_SCRIPT)
    result = gateway.lab.run(host, sys.executable, str(script), json.dumps(spec), timeout=wait + 60)
    out = json.loads(result.stdout)
    return Exchange([(ip, p, bytes.fromhex(d)) for ip, p, d in out["udp"]], out["captured"], out["sent"])


def _config_with(keys: Path) -> Callable[[Path], str]:
    access = AccessSection(mode=AccessMode.ENROLLED, key_file=str(keys))
    return lambda metrics_path: gateway_config(metrics_path, access)


@pytest.fixture(scope="module")
def enrolled(shared_lab: StandardLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    keys = tmp_path_factory.mktemp("keys") / "gateway-keys.toml"
    save_key_file(keys, KeyFile({"alice": (ALICE,)}))
    with running_gateway(shared_lab, _config_with(keys)) as gateway:
        yield gateway


def drops(gateway: Gateway, reason: str) -> float:
    return gateway.value("drops_total", side="mn", reason=reason)


def states(gateway: Gateway) -> tuple[float, float]:
    return gateway.value("states", kind="active"), gateway.value("states", kind="temporary")


# --------------------------------------------------------------------------- tests


def test_the_right_key_connects_and_reaches_the_ha(enrolled: Gateway) -> None:
    src = mn_address(1, 0x0A0B0C0D0E0F)
    created = enrolled.value("state_events_total", event="created")
    got = exchange(enrolled, MN, [seal(echo(src, 1))], local_port=42001, expect=1)
    assert_echo_replies(got.udp, src, [1], PORT_A)
    assert enrolled.value("state_events_total", event="created") == created + 1
    # Confirmed: plain datagrams and keepalives ride the binding.
    got = exchange(enrolled, MN, [echo(src, 2), build_keepalive(src.packed)], local_port=42001, expect=2)
    assert sorted(len(p) for _, _, p in got.udp)[0] == 40
    assert [parse_echo_reply(p).seq for _, _, p in got.udp if len(p) > 40] == [2]


@pytest.mark.parametrize(
    ("name", "make", "reason"),
    [
        ("no key", lambda p: p, "unauthenticated"),
        ("wrong key", lambda p: seal(p, MALLORY), "auth_unknown_key"),
        ("stale", lambda p: Sealer(ALICE).seal(p, time.time() - 3600, secrets.token_bytes(8)), "auth_stale"),
    ],
)
def test_without_the_right_key_nothing_is_created_and_nothing_comes_back(
    enrolled: Gateway, name: str, make: object, reason: str
) -> None:
    src = mn_address(2, secrets.randbits(48))
    before = states(enrolled)
    refused = drops(enrolled, reason)
    datagrams = [make(echo(src, seq)) for seq in range(3)]  # type: ignore[operator]
    got = exchange(enrolled, MN, datagrams, local_port=42002, expect=0, wait=1.5)
    assert got.udp == [] and got.captured == 0, name
    assert drops(enrolled, reason) == refused + 3
    assert states(enrolled) == before
    assert enrolled.value("rate_limited_total") == 0


def test_a_captured_first_datagram_replayed_from_another_ipv4_creates_nothing(enrolled: Gateway) -> None:
    src = mn_address(3, 0x333333333333)
    first = seal(echo(src, 1))
    assert_echo_replies(exchange(enrolled, MN, [first], local_port=42003, expect=1).udp, src, [1], PORT_A)
    created = enrolled.value("state_events_total", event="created")
    replayed = drops(enrolled, "auth_replayed")

    got = exchange(enrolled, WAN2, [first], local_port=42003, expect=0, wait=1.5)
    assert got.udp == [] and got.captured == 0
    assert drops(enrolled, "auth_replayed") == replayed + 1
    assert enrolled.value("state_events_total", event="created") == created
    # The header moved onto another address is still a replay; with a fresh nonce its MAC fails.
    other = mn_address(3, 0x444444444444)
    moved = first[:48] + other.packed + first[64:]
    renonced = first[:16] + secrets.token_bytes(8) + moved[24:]
    bad_mac = drops(enrolled, "auth_bad_mac")
    assert exchange(enrolled, WAN2, [moved, renonced], local_port=42004, expect=0, wait=1.0).captured == 0
    assert drops(enrolled, "auth_replayed") == replayed + 2
    assert drops(enrolled, "auth_bad_mac") == bad_mac + 1
    assert enrolled.value("state_events_total", event="created") == created
    assert_echo_replies(exchange(enrolled, MN, [echo(src, 2)], local_port=42003, expect=1).udp, src, [2], PORT_A)


def _read_or_policed(gateway: Gateway) -> float:
    """Datagrams the gateway read, plus those its kernel fast lane policed before its socket (when it runs)."""
    total = gateway.value("received_packets_total", side="mn")
    if gateway.value("fastlane_enabled") == 1:
        total += sum(gateway.value("fastlane_packets_total", rule=r) for r in ("policed_per_ipv4", "policed_ceiling"))
    return total


def test_a_flood_of_forged_headers_leaves_states_and_a_legitimate_mn_untouched(enrolled: Gateway) -> None:
    legit = mn_address(5, 0x555555555555)
    assert_echo_replies(
        exchange(enrolled, MN, [seal(echo(legit, 1))], local_port=42005, expect=1).udp, legit, [1], PORT_A
    )
    before = states(enrolled)
    received = enrolled.value("received_packets_total", side="mn")
    dealt_with = _read_or_policed(enrolled)
    refused_before = sum(
        drops(enrolled, r) for r in ("auth_unknown_key", "auth_bad_mac", "auth_stale", "auth_malformed")
    )
    # Half the forgeries carry alice's key id (each costs the gateway an HMAC), half random ones.
    template = seal(echo(mn_address(6, 0x666666666666), 1))
    spec = [sys.executable, str(enrolled.workdir / "capture.py")]
    (enrolled.workdir / "capture.py").write_text(CAPTURE_SCRIPT)
    flood = sender_spec([], local_port=42006, expect=0, wait=1.0) | {"forge": template.hex(), "count": FLOOD}
    started = time.monotonic()
    attack = enrolled.lab.spawn(WAN2, [*spec, json.dumps(flood)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with processes.killed_after(attack) as attacker:
        during = exchange(enrolled, MN, [echo(legit, seq) for seq in range(2, 7)], local_port=42005, expect=5)
        out, err = attacker.communicate(timeout=120)
    report = json.loads(out)
    elapsed = time.monotonic() - started
    assert report["sent"] == FLOOD, err
    assert report["udp"] == [] and report["captured"] == 0
    # With the kernel's fast lane, most of one address's flood is policed before the socket; every forged
    # datagram the kernel handed over was refused before anything else; none made a state.
    wait_until(
        lambda: _read_or_policed(enrolled) >= dealt_with + 5 + FLOOD * 0.5,
        what="the gateway to read the flood",
        timeout=30.0,
        interval=0.2,
    )
    refused = (
        sum(drops(enrolled, r) for r in ("auth_unknown_key", "auth_bad_mac", "auth_stale", "auth_malformed"))
        - refused_before
    )
    handled = enrolled.value("received_packets_total", side="mn") - received
    assert refused >= handled - 5 - 1  # the legitimate MN's 5 echoes (and nothing else) were accepted
    assert states(enrolled)[1] == before[1] == 0
    assert states(enrolled)[0] == before[0]
    assert len(during.udp) >= 1, "the legitimate MN was starved during the flood"
    after = exchange(enrolled, MN, [echo(legit, seq) for seq in range(10, 15)], local_port=42005, expect=5)
    assert_echo_replies(after.udp, legit, list(range(10, 15)), PORT_A)
    print(
        f"flood: {FLOOD} forged headers in {elapsed:.1f} s, {handled:.0f} read by the gateway, "
        f"{refused:.0f} refused; legitimate MN: {len(during.udp)}/5 answered during, 5/5 after"
    )


def test_sighup_reloads_the_keys_without_dropping_states(enrolled: Gateway) -> None:
    src = mn_address(7, 0x777777777777)
    assert_echo_replies(exchange(enrolled, MN, [seal(echo(src, 1))], local_port=42007, expect=1).udp, src, [1], PORT_A)
    bob = secrets.token_bytes(32)
    bob_src = mn_address(8, 0x888888888888)
    assert exchange(enrolled, WAN2, [seal(echo(bob_src, 1), bob)], local_port=42008, expect=0, wait=1.0).udp == []

    config = (enrolled.workdir / "gateway.toml").read_text()
    path = config.split('key_file = "', 1)[1].split('"', 1)[0]
    save_key_file(path, KeyFile({"alice": (ALICE,), "bob": (bob,)}))
    active = enrolled.value("states", kind="active")
    enrolled.proc.send_signal(SIGHUP)
    wait_until(lambda: enrolled.value("access_keys") == 2, what="the reload", timeout=10.0, interval=0.1)
    assert enrolled.proc.poll() is None
    assert enrolled.value("states", kind="active") == active
    got = exchange(enrolled, WAN2, [seal(echo(bob_src, 2), bob)], local_port=42008, expect=1)
    assert_echo_replies(got.udp, bob_src, [2], PORT_A)
    # Alice's state survived the reload: her keepalive is answered.
    keepalive = exchange(enrolled, MN, [build_keepalive(src.packed)], local_port=42007, expect=1)
    assert [len(p) for _, _, p in keepalive.udp] == [40]

    # A broken key file is refused and the keys in force stay.
    Path(path).chmod(0o644)
    enrolled.proc.send_signal(SIGHUP)
    wait_until(lambda: "reload refused" in enrolled.describe(), what="the refusal", timeout=10.0, interval=0.1)
    assert enrolled.value("access_keys") == 2
    Path(path).chmod(0o600)
    assert encode_key(bob) not in enrolled.describe(), "a key reached the log"
