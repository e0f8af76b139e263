"""Configuration changes through the helper: ``config.get``, and ``config.set`` validated as a whole,
written atomically, applied, and rolled back (file and tunnel) when applying fails."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from m6t.client.api.schema import ErrorCode, Method
from tests.unit.test_helper_fakes import RunningHelper, call, failure, helper

__all__ = ["helper"]


def test_config_get_whole_and_key(helper: RunningHelper) -> None:
    whole = call(helper, Method.CONFIG_GET)
    assert whole["path"] == str(helper.config_path)
    assert whole["config"]["tunnel"]["mtu"] == 1472
    assert "[tunnel]" in whole["toml"]
    one = call(helper, Method.CONFIG_GET, {"key": "gateway.ports"})
    assert one["key"] == "gateway.ports" and one["value"] == [3544]
    unset = call(helper, Method.CONFIG_GET, {"key": "tunnel.probe"})
    assert unset["value"] is None
    error = failure(helper, Method.CONFIG_GET, {"key": "tunnel.nope"})
    assert error.code == ErrorCode.CONFIG_UNKNOWN_KEY and error.problems[0]["key"] == "tunnel.nope"


def test_config_set_is_saved_atomically_and_applied(helper: RunningHelper) -> None:
    helper.config_path.chmod(0o644)
    result = call(helper, Method.CONFIG_SET, {"changes": {"tunnel.mtu": 1400, "gateway.ports": "3544,4500"}})
    assert result["applied"] is True
    assert result["changed"] == ["gateway.ports", "tunnel.mtu"]
    assert result["config"]["tunnel"]["mtu"] == 1400
    text = helper.config_path.read_text()
    assert "mtu = 1400" in text and "ports = [3544, 4500]" in text
    assert stat.S_IMODE(helper.config_path.stat().st_mode) == 0o644
    assert not [p for p in helper.config_path.parent.iterdir() if p.name.endswith(".tmp")]
    assert helper.driver.applied[-1].tunnel.mtu == 1400
    assert call(helper, Method.STATUS)["mtu"] == 1400


def test_config_set_full_replacement_and_dry_run(helper: RunningHelper) -> None:
    current = call(helper, Method.CONFIG_GET)["config"]
    current["routes"]["metric"] = 7
    dry = call(helper, Method.CONFIG_SET, {"config": current, "dry_run": True})
    assert dry == {"config": current, "changed": ["routes.metric"], "applied": False}
    assert "metric = 1029" in helper.config_path.read_text()
    assert call(helper, Method.CONFIG_SET, {"config": current})["applied"] is True
    assert "metric = 7" in helper.config_path.read_text()


INVALID_CHANGES: list[tuple[str, Any]] = [
    ("tunnel.mtu", 1000),
    ("tunnel.mtu", 70000),
    ("tunnel.mtu", "big"),
    ("tunnel.mtu", True),
    ("tunnel.prefix", "2001:db8::/64"),
    ("tunnel.prefix", "not a prefix"),
    ("tunnel.interface", "this-name-is-far-too-long"),
    ("tunnel.keepalive_interval", 0),
    ("tunnel.keepalive_interval", 100000),
    ("tunnel.probe", "ff02::1"),
    ("gateway.address", "not a host!"),
    ("gateway.address", ""),
    ("gateway.ports", [0]),
    ("gateway.ports", [3544, 3544]),
    ("gateway.ports", []),
    ("gateway.ports", "70000"),
    ("routes.default", "maybe"),
    ("routes.metric", 0),
    ("routes.metric", -5),
    ("routes.prefixes", ["fd00::1/8", "nonsense"]),
    ("helper.operator_group", ""),
    ("helper.operator_group", "a:b"),
    ("helper.autoconnect", 3),
    ("tunnel.mtuu", 1400),
    ("nosection.key", 1),
    ("mtu", 1400),
]


@pytest.mark.parametrize(("key", "value"), INVALID_CHANGES)
def test_every_invalid_value_is_rejected_naming_the_key(helper: RunningHelper, key: str, value: Any) -> None:
    before_file = helper.config_path.read_bytes()
    before = call(helper, Method.CONFIG_GET)["config"]
    error = failure(helper, Method.CONFIG_SET, {"changes": {key: value}})
    assert error.code == ErrorCode.CONFIG_INVALID
    assert error.problems, error.error
    assert any(p["key"] == key or p["key"].startswith(key + "[") for p in error.problems), error.problems
    assert all(p["message"] for p in error.problems)
    # Nothing written, nothing applied.
    assert helper.config_path.read_bytes() == before_file
    assert call(helper, Method.CONFIG_GET)["config"] == before
    assert helper.driver.applied == []


def test_one_bad_key_rejects_the_whole_change(helper: RunningHelper) -> None:
    error = failure(helper, Method.CONFIG_SET, {"changes": {"tunnel.mtu": 1400, "routes.metric": 0}})
    assert [p["key"] for p in error.problems] == ["routes.metric"]
    assert call(helper, Method.CONFIG_GET, {"key": "tunnel.mtu"})["value"] == 1472


def test_full_replacement_problems_name_keys(helper: RunningHelper) -> None:
    error = failure(helper, Method.CONFIG_SET, {"config": {"gateway": {}, "tunnel": {"mtu": 5}}})
    keys = {p["key"] for p in error.problems}
    assert {"gateway.address", "tunnel.mtu", "tunnel.prefix"} <= keys


@pytest.mark.parametrize(
    "params",
    [{}, {"changes": []}, {"changes": None}, {"config": "x"}],
)
def test_config_set_malformed_params(helper: RunningHelper, params: dict[str, Any]) -> None:
    assert failure(helper, Method.CONFIG_SET, params).code == ErrorCode.BAD_REQUEST


def test_apply_failure_rolls_back_file_and_config(helper: RunningHelper) -> None:
    before = helper.config_path.read_bytes()
    helper.driver.fail_apply = True
    error = failure(helper, Method.CONFIG_SET, {"changes": {"tunnel.mtu": 1300}})
    assert error.code == ErrorCode.PLATFORM_ERROR and "previous one is back" in error.message
    assert helper.config_path.read_bytes() == before
    assert call(helper, Method.CONFIG_GET, {"key": "tunnel.mtu"})["value"] == 1472


def test_unwritable_config_is_reported(helper: RunningHelper, monkeypatch: pytest.MonkeyPatch) -> None:
    from m6t.client.helper import transaction

    def broken(path: Path, data: bytes, mode: int = 0o644) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(transaction, "atomic_write", broken)
    error = failure(helper, Method.CONFIG_SET, {"changes": {"tunnel.mtu": 1300}})
    assert error.code == ErrorCode.CONFIG_WRITE_FAILED
    assert helper.driver.applied == []
