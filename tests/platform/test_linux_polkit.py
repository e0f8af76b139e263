"""polkit decides through the real services: a private system-like ``dbus-daemon`` and the real ``polkitd`` on it.

The test installs the project's policy file (``installers/linux/org.m6t.policy``) under a name of its own in
``/usr/share/polkit-1/actions`` and a JavaScript rule in ``/etc/polkit-1/rules.d`` (polkitd reads them from
there only), both removed afterwards whatever happens.  The rule grants ``org.m6t.connect`` to ``nobody`` and
refuses it to ``bin``; ``daemon`` gets the policy's defaults: no session here is active and local, so an
administrator's password.  The helper is the real :class:`HelperService` and ``ControlServer`` on a Unix
socket; the users are forked children that drop to those accounts.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from m6t.client.api.authorization import Action, Authorizer
from m6t.client.api.client import HelperClient, RequestFailed
from m6t.client.api.schema import ErrorCode, Method
from m6t.lab import processes
from m6t.platform.base import AuthorityAnswer, AuthorityUnavailable, PlatformError
from m6t.platform.peercred import UnixPeer, process_start_time
from tests.platform.private_bus import DBUS_DAEMON, private_bus
from tests.unit.test_helper_fakes import CONFIG_TEXT, NOBODY, RunningHelper, is_root, other_group, run_as

if sys.platform != "linux":
    pytest.skip("polkit is Linux's", allow_module_level=True)
assert sys.platform == "linux"  # never fails (skipped above); tells mypy the rest is Linux-only

from m6t.platform.linux.polkit import PolkitAuthority  # noqa: E402 - jeepney is a Linux-only dependency

POLICY = Path(__file__).parents[2] / "installers" / "linux" / "org.m6t.policy"
ACTIONS_DIR = Path("/usr/share/polkit-1/actions")
RULES_DIR = Path("/etc/polkit-1/rules.d")
POLKITD = next((p for p in ("/usr/lib/polkit-1/polkitd", "/usr/libexec/polkitd") if os.access(p, os.X_OK)), None)

RULE = """\
// Installed by m6t's test suite for one run (%(run)s); it removes this file when it ends.
polkit.addRule(function(action, subject) {
    if (action.id == "org.m6t.connect" && subject.user == "nobody") return polkit.Result.YES;
    if (action.id == "org.m6t.connect" && subject.user == "bin") return polkit.Result.NO;
});
"""

pytestmark = pytest.mark.skipif(
    not is_root() or POLKITD is None or DBUS_DAEMON is None,
    reason="needs root (polkitd, its rules directory), dbus-daemon and polkitd (apt-get install dbus-daemon polkitd)",
)


def _account(name: str) -> tuple[int, int]:
    entry = pwd.getpwnam(name)
    return entry.pw_uid, entry.pw_gid


@dataclass
class Bus:
    directory: Path
    """Every test user can reach it."""
    address: str


def _stop(process: subprocess.Popen[bytes]) -> str:
    processes.stop(process, grace=5.0)
    return process.stderr.read().decode(errors="replace") if process.stderr is not None else ""


@pytest.fixture
def bus() -> Iterator[Bus]:
    """A private bus configured like the system bus, in a directory every test user can reach."""
    directory = Path(tempfile.mkdtemp(prefix="m6t-polkit-"))
    directory.chmod(0o755)
    try:
        with private_bus(directory) as system_bus:
            yield Bus(directory, system_bus.address)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def polkitd(bus: Bus) -> Iterator[Bus]:
    """The real polkitd on ``bus``, with m6t's actions and this run's rule installed, then removed."""
    run = uuid.uuid4().hex[:12]
    action_file = ACTIONS_DIR / f"org.m6t.test-{run}.policy"
    rule_file = RULES_DIR / f"10-m6t-test-{run}.rules"
    process: subprocess.Popen[bytes] | None = None
    try:
        shutil.copyfile(POLICY, action_file)
        action_file.chmod(0o644)
        rule_file.write_text(RULE % {"run": run})
        rule_file.chmod(0o644)
        assert POLKITD is not None
        process = subprocess.Popen(
            [POLKITD, "--no-debug"],
            env={**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": bus.address},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        _wait_for_polkit(bus.address, process)
        yield bus
    finally:
        if process is not None:
            _stop(process)
        action_file.unlink(missing_ok=True)
        rule_file.unlink(missing_ok=True)


def _wait_for_polkit(address: str, process: subprocess.Popen[bytes]) -> None:
    """Until polkitd answers a question (it owns its name once it has read the actions and rules)."""
    me = UnixPeer(pid=os.getpid(), uid=0, gid=0, groups=None, start_time=process_start_time(os.getpid()))

    async def ask() -> bool:
        authority = PolkitAuthority(address)
        try:
            await authority.check(me, Action.CONNECT.value, interactive=False, timeout=2.0)
            return True
        except AuthorityUnavailable:
            return False
        finally:
            await authority.close()

    deadline = time.monotonic() + 20
    while not asyncio.run(ask()):
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"polkitd did not come up on the private bus: {_stop(process)}")
        time.sleep(0.1)


def _world_helper(bus: Bus) -> RunningHelper:
    """A helper whose socket every user reaches, asking polkit on ``bus``."""
    place = bus.directory / "helper"
    place.mkdir(mode=0o755)
    return RunningHelper(place, authority=PolkitAuthority(bus.address))


def _as_user(
    socket_path: str, uid: int, gid: int, groups: list[int], action: Callable[[HelperClient], object]
) -> dict[str, object]:
    """Fork, become ``uid``, connect, and report the hello's permissions and what ``action`` got."""

    def child() -> bytes:
        with HelperClient(socket_path, timeout=30.0) as client:
            permissions = client.hello.get("permissions") if client.hello is not None else None
            try:
                outcome: dict[str, object] = {"ok": True, "result": action(client)}
            except RequestFailed as exc:
                outcome = {"ok": False, "code": int(exc.code), "message": exc.message, "hint": exc.hint}
            outcome["permissions"] = permissions
            return json.dumps(outcome).encode()

    return dict(json.loads(run_as(uid, gid, groups, child)))


def up(client: HelperClient) -> object:
    return client.call(Method.UP)["wanted"]


def test_the_user_a_rule_names_may_connect_others_are_told_what_to_do(polkitd: Bus) -> None:
    helper = _world_helper(polkitd).start()
    at = helper.socket_path
    try:
        granted = _as_user(at, NOBODY, NOBODY, [], up)
        assert granted == {"ok": True, "result": "up", "permissions": {"connect": "yes", "configure": "auth"}}
        assert helper.service is not None and helper.service.wanted == "up"

        # daemon: the policy's defaults, an administrator's password, never asked for a connect.
        uid, gid = _account("daemon")
        asked = _as_user(at, uid, gid, [], lambda client: client.call(Method.DOWN))
        assert asked["ok"] is False and asked["code"] == ErrorCode.FORBIDDEN
        assert asked["permissions"] == {"connect": "auth", "configure": "auth"}
        assert "administrator's password" in str(asked["message"])
        assert "allow org.m6t.connect for you" in str(asked["hint"])

        # bin: the rule says no.
        uid, gid = _account("bin")
        refused = _as_user(at, uid, gid, [], up)
        assert refused["ok"] is False and refused["code"] == ErrorCode.FORBIDDEN
        assert refused["permissions"] == {"connect": "no", "configure": "auth"}
        assert str(refused["message"]).startswith("polkit refused to let you bring the tunnel up")
        assert "ask an administrator to allow org.m6t.connect for you" in str(refused["hint"])
        assert helper.service.wanted == "up", "the refused requests changed nothing"

        # A configuration change lets polkit's agent ask; with no agent on this bus, a clear refusal, at once.
        started = time.monotonic()
        configure = _as_user(
            at, NOBODY, NOBODY, [], lambda c: c.call(Method.CONFIG_SET, {"changes": {"tunnel.mtu": 1400}})
        )
        assert configure["ok"] is False and time.monotonic() - started < 10
        assert "no polkit authentication agent asked for it" in str(configure["message"])

        # Root always may, whatever polkit says.
        with HelperClient(helper.socket_path) as client:
            assert client.hello is not None
            assert client.hello.get("permissions") == {"connect": "yes", "configure": "yes"}
            assert client.call(Method.DOWN)["wanted"] == "down"
            assert client.call(Method.STATUS)["permissions"] == {"connect": "yes", "configure": "yes"}
    finally:
        helper.close()


def test_a_pid_that_now_names_another_process_is_refused(polkitd: Bus) -> None:
    """polkit compares the start time the helper read at connect time with the pid's now."""
    me = os.getpid()
    start = process_start_time(me)
    assert start is not None
    authority = PolkitAuthority(polkitd.address)
    authorizer = Authorizer(authority, lambda: "m6t-no-such-group")
    # As if nobody had connected, left, and this process had been given its pid.
    reused = UnixPeer(pid=me, uid=NOBODY, gid=NOBODY, groups=frozenset(), start_time=start - 1)
    honest = UnixPeer(pid=me, uid=0, gid=0, groups=frozenset(), start_time=start)

    async def scenario() -> None:
        try:
            verdict = await authority.check(honest, Action.CONNECT.value, interactive=False, timeout=5)
            assert verdict.answer is AuthorityAnswer.YES
            with pytest.raises(PlatformError, match="replaced"):
                await authority.check(reused, Action.CONNECT.value, interactive=False, timeout=5)
            refusal = await authorizer.authorize(reused, Method.UP)
            assert refusal is not None and refusal["code"] == ErrorCode.FORBIDDEN
            assert "could not authorize you to bring the tunnel up" in refusal["message"]
            assert (await authorizer.permissions(reused)) == {"connect": "no", "configure": "no"}
            # Never a pid alone: without the start time polkit is not even asked.
            with pytest.raises(PlatformError, match="start time"):
                await authority.check(
                    UnixPeer(pid=me, uid=NOBODY, gid=NOBODY, groups=None),
                    Action.CONNECT.value,
                    interactive=False,
                    timeout=5,
                )
        finally:
            await authority.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("with_bus", [True, False], ids=["bus-without-polkitd", "no-bus-at-all"])
def test_without_polkit_the_operator_group_decides_as_before(bus: Bus, with_bus: bool) -> None:
    group = other_group()
    if group is None:
        pytest.skip("no group to stand for the operator group")
    name, gid = group
    place = bus.directory / "helper"
    place.mkdir(mode=0o755)
    (place / "client.toml").write_text(CONFIG_TEXT.replace('operator_group = "m6t"', f'operator_group = "{name}"'))
    (place / "client.toml").chmod(0o644)
    address = bus.address if with_bus else f"unix:path={bus.directory / 'no-bus-here'}"
    helper = RunningHelper(place, authority=PolkitAuthority(address)).start()
    at = helper.socket_path
    try:
        member = _as_user(at, NOBODY, NOBODY, [gid], up)
        assert member == {"ok": True, "result": "up", "permissions": {"connect": "yes", "configure": "yes"}}
        outsider = _as_user(at, NOBODY, NOBODY, [], up)
        assert outsider["ok"] is False and outsider["code"] == ErrorCode.FORBIDDEN
        assert outsider["permissions"] == {"connect": "no", "configure": "no"}
        assert outsider["message"] == (
            f"Only root and members of the group '{name}' may bring the tunnel up; you can still read the status."
        )
        assert outsider["hint"] == f"ask an administrator to run: usermod -aG {name} $USER, then log in again"
    finally:
        helper.close()
