"""The tray as the secret agent of enrolled access, against a real Secret Service and the real helper service.

A private D-Bus session bus and a real ``gnome-keyring-daemon`` (unlocked, secrets component) hold the user's
keyring; the helper (``HelperService`` with the scripted driver, and no keyring of its own, like root on a
Linux desktop) asks for the key; the tray's model and :class:`~m6t.ui.key_agent.KeyAgent` answer over the
control API.  Skipped with the reason when the daemons or the ``keyring`` package are not installed here.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pytestqt.qtbot import QtBot

from m6t.client.access_keys import AccessKeys, KeyringUnavailable
from m6t.lab import processes
from m6t.protocol.access import encode_key
from m6t.ui.connection import HelperConnection
from m6t.ui.key_agent import KeyAgent, keep_user_key, user_key
from m6t.ui.model import TunnelModel
from tests.platform.private_bus import private_bus
from tests.unit.test_helper_fakes import RunningHelper, config_for_this_user

KEY = bytes(range(7, 39))
PASSWORD = b"m6t-test-login"


class NoKeyring:
    """Root's view on a Linux desktop: no Secret Service outside the user's session."""

    def get(self, service: str, name: str) -> str | None:
        raise KeyringUnavailable("no Secret Service for root")

    def set(self, service: str, name: str, secret: str) -> None:
        raise KeyringUnavailable("no Secret Service for root")


def _missing() -> str | None:
    for program in ("dbus-daemon", "gnome-keyring-daemon"):
        if shutil.which(program) is None:
            return f"{program} is not installed (scripts/setup.sh installs it)"
    try:
        import keyring.backends.SecretService  # noqa: F401
    except ImportError:
        return "the keyring package is not installed (pyproject lists it)"
    return None


@pytest.fixture
def secret_service(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    reason = _missing()
    if reason is not None:
        pytest.skip(reason)
    import keyring
    from keyring.backends import SecretService

    home = Path(tempfile.mkdtemp(prefix="m6t-keyring-"))
    runtime = home / "run"
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(runtime), "XDG_DATA_HOME": str(home / "data")}
    daemon: subprocess.Popen[bytes] | None = None
    daemon_log = (home / "daemon.log").open("wb")
    previous = keyring.get_keyring()
    stack = contextlib.ExitStack()
    try:
        # A session bus that cannot start a second, locked keyring of its own (private_bus has no activation).
        bus = stack.enter_context(private_bus(runtime, kind="session", env=env))
        env["DBUS_SESSION_BUS_ADDRESS"] = bus.address
        daemon = subprocess.Popen(
            ["gnome-keyring-daemon", "--foreground", "--unlock", "--components=secrets"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=daemon_log,
            env=env,
        )
        assert daemon.stdin is not None
        daemon.stdin.write(PASSWORD)
        daemon.stdin.close()
        for name, value in env.items():
            if name in ("HOME", "XDG_RUNTIME_DIR", "XDG_DATA_HOME", "DBUS_SESSION_BUS_ADDRESS"):
                monkeypatch.setenv(name, value)
        # Wait for the login collection the unlock creates: asking the keyring before it exists would make
        # it try to create one itself, through a prompt nobody can answer here.
        secretstorage: Any = importlib.import_module("secretstorage")
        last: Exception | None = None
        for _ in range(600):  # bounded: the daemon is up within a second or two, more on a loaded machine
            try:
                with contextlib.closing(secretstorage.dbus_init()) as bus_connection:
                    paths = [c.collection_path for c in secretstorage.get_all_collections(bus_connection)]
                if any(path.endswith("/login") for path in paths):
                    break
            except Exception as exc:
                last = exc
            time.sleep(0.05)
        else:
            log = (home / "daemon.log").read_text(errors="replace")
            pytest.fail(f"gnome-keyring-daemon made no login keyring: {last!r}, exit {daemon.poll()}, log: {log}")
        # keyring's backend classes are not annotated: typed through a Callable rather than an ignore
        make_backend: Callable[[], Any] = SecretService.Keyring
        backend = make_backend()
        keyring.set_keyring(backend)
        yield backend
    finally:
        keyring.set_keyring(previous)
        if daemon is not None:
            processes.stop(daemon, grace=5.0)
        stack.close()
        daemon_log.close()
        shutil.rmtree(home, ignore_errors=True)


def test_the_users_keyring_keeps_the_key(secret_service: Any) -> None:
    assert user_key("alice") is None
    assert keep_user_key("alice", encode_key(KEY))
    assert user_key("alice") == encode_key(KEY)
    assert type(secret_service).__module__ == "keyring.backends.SecretService"


def test_the_tray_hands_the_key_to_a_helper_without_keyring(qtbot: QtBot, secret_service: Any) -> None:
    assert keep_user_key("alice", encode_key(KEY))
    workdir = Path(tempfile.mkdtemp(prefix="m6t-agent-"))
    (workdir / "client.toml").write_text(config_for_this_user() + '\n[access]\nkey_id = "alice"\n')
    running = RunningHelper(workdir, access_keys=AccessKeys(NoKeyring())).start()
    connection = HelperConnection(running.socket_path)
    model = TunnelModel(connection)
    agent = KeyAgent(model)
    try:
        assert running.driver.access_keys == [None]
        connection.start()
        # At start-up the helper already reported the key missing: the agent finds that in the status.
        qtbot.waitUntil(lambda: agent.handed_over == 1, timeout=5000)
        assert running.driver.access_keys[-1] == KEY
        # Never written anywhere by the helper: the agent's key is held in memory.
        assert not any(encode_key(KEY) in p.read_text(errors="replace") for p in workdir.rglob("*") if p.is_file())
    finally:
        connection.stop()
        running.close()
        shutil.rmtree(workdir, ignore_errors=True)


def test_the_settings_key_field_falls_back_to_the_users_keyring(qtbot: QtBot, secret_service: Any) -> None:
    from m6t.ui.access_box import AccessBox

    workdir = Path(tempfile.mkdtemp(prefix="m6t-agent-"))
    (workdir / "client.toml").write_text(config_for_this_user())
    running = RunningHelper(workdir, access_keys=AccessKeys(NoKeyring())).start()
    connection = HelperConnection(running.socket_path)
    model = TunnelModel(connection)
    box = AccessBox(model)
    qtbot.addWidget(box)
    try:
        connection.start()
        qtbot.waitUntil(lambda: model.config is not None, timeout=5000)
        box.name_edit.setText("bob")
        box.key_edit.setText(encode_key(KEY))
        assert box.key_edit.echoMode() is box.key_edit.EchoMode.Password
        box.store()
        qtbot.waitUntil(lambda: "stored in your keyring" in box.result.text(), timeout=5000)
        assert box.key_edit.text() == ""
        assert user_key("bob") == encode_key(KEY)
        assert running.driver.access_keys[-1] == KEY
        assert encode_key(KEY) not in box.result.text()
    finally:
        connection.stop()
        running.close()
        shutil.rmtree(workdir, ignore_errors=True)
