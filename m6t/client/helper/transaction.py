"""The running configuration and its file: ``config.get``, and ``config.set`` as one transaction.

A change is validated as a whole (every problem named by its key), written atomically, then applied to
the running tunnel; if applying fails, the file and the tunnel both go back to what they were.  Nothing
is ever half-done.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from m6t.atomic import atomic_write
from m6t.client.api import schema
from m6t.client.api.schema import ErrorCode
from m6t.client.api.server import ApiError
from m6t.client.config import (
    ClientConfig,
    ConfigError,
    client_config_from_dict,
    client_config_keys,
    client_config_to_dict,
    dump_client_config,
    load_client_config,
    set_client_option,
)
from m6t.configfile import toml_value
from m6t.platform.base import PlatformError

API_SOURCE = "<control API>"
"""The "file" of a configuration that came over the control API, in problems and errors."""

Apply = Callable[[ClientConfig], Awaitable[None]]
"""Puts a configuration into effect on the running tunnel (the driver's ``apply_config``)."""


class ConfigStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.current: ClientConfig | None = None

    def load(self) -> ClientConfig:
        """Read the file; raises ``ConfigError`` (every problem) or ``OSError``."""
        self.current = load_client_config(self.path)
        return self.current

    def _loaded(self) -> ClientConfig:
        assert self.current is not None, "the configuration is read at start-up"
        return self.current

    def get(self, params: dict[str, object]) -> schema.ConfigGetResult:
        config = self._loaded()
        data = client_config_to_dict(config)
        result: schema.ConfigGetResult = {"path": str(self.path), "config": data, "toml": dump_client_config(config)}
        key = params.get("key")
        if key is not None:
            if not isinstance(key, str):
                raise ApiError.of(ErrorCode.BAD_REQUEST, '"key" must be a string like "tunnel.mtu".')
            flat = _flatten(data)
            if key in flat:
                value = flat[key]
            elif key in client_config_keys():
                value = None  # a known optional setting that is not set
            else:
                raise ApiError.of(
                    ErrorCode.CONFIG_UNKNOWN_KEY,
                    f"There is no configuration setting {key!r}.",
                    problems=[{"key": key, "message": "unknown setting"}],
                )
            result["key"] = key
            result["value"] = value
        return result

    def validate(self, params: dict[str, object]) -> ClientConfig:
        """The configuration ``params`` asks for, validated as a whole, or :class:`ApiError` listing every problem."""
        problems: list[schema.Problem] = []
        changes = params.get("changes", {})
        full = params.get("config")
        if changes is None:
            changes = {}
        if not isinstance(changes, dict):
            raise ApiError.of(ErrorCode.BAD_REQUEST, '"changes" must be an object of "section.key": value.')
        if full is None and not changes:
            raise ApiError.of(ErrorCode.BAD_REQUEST, 'config.set needs "changes" or "config".')
        candidate = self._loaded()
        if full is not None:
            if not isinstance(full, dict):
                raise ApiError.of(ErrorCode.BAD_REQUEST, '"config" must be an object of sections.')
            try:
                candidate = client_config_from_dict(copy.deepcopy(full), API_SOURCE)
            except ConfigError as exc:
                problems.extend(_problems(exc))
        for key, value in changes.items():
            try:
                raw = value if isinstance(value, str) else ("" if value is None else toml_value(value))
            except TypeError:
                problems.append({"key": str(key), "message": f"cannot use a {type(value).__name__} here"})
                continue
            try:
                candidate = set_client_option(candidate, str(key), raw, source=API_SOURCE)
            except ConfigError as exc:
                problems.extend(_problems(exc))
        if problems:
            raise ApiError.of(ErrorCode.CONFIG_INVALID, problems=problems)
        return candidate

    async def set(self, params: dict[str, object], apply: Apply) -> schema.ConfigSetResult:
        """Validate, write and apply ``params`` (``dry_run``: validate only); undo everything if applying fails."""
        old = self._loaded()
        new = self.validate(params)
        old_flat = _flatten(client_config_to_dict(old))
        new_flat = _flatten(client_config_to_dict(new))
        changed = sorted(k for k in old_flat.keys() | new_flat.keys() if old_flat.get(k) != new_flat.get(k))
        if params.get("dry_run") is True:
            return {"config": client_config_to_dict(new), "changed": changed, "applied": False}
        if not changed:
            return {"config": client_config_to_dict(new), "changed": [], "applied": True}
        old_text = dump_client_config(old)
        self._write(dump_client_config(new))
        try:
            await apply(new)
        except Exception as exc:
            # Nothing half-applied: the file and the tunnel go back to what they were.
            with contextlib.suppress(Exception):
                self._write(old_text)
            with contextlib.suppress(Exception):
                await apply(old)
            hint = exc.hint if isinstance(exc, PlatformError) else None
            raise ApiError.of(
                ErrorCode.PLATFORM_ERROR,
                "The new configuration could not be applied; the previous one is back in place.",
                hint=hint,
                detail=str(exc),
            ) from None
        self.current = new
        return {"config": client_config_to_dict(new), "changed": changed, "applied": True}

    def _write(self, text: str) -> None:
        try:
            mode = self.path.stat().st_mode & 0o7777
        except OSError:
            mode = 0o644
        try:
            atomic_write(self.path, text.encode("utf-8"), mode)
        except OSError as exc:
            raise ApiError.of(ErrorCode.CONFIG_WRITE_FAILED, detail=f"{self.path}: {exc.strerror or exc}") from None


def _flatten(config: Mapping[str, Mapping[str, object]]) -> dict[str, object]:
    return {f"{section}.{key}": value for section, table in config.items() for key, value in table.items()}


def _problems(exc: ConfigError) -> list[schema.Problem]:
    problems: list[schema.Problem] = []
    for problem in exc.problems:
        item: schema.Problem = {"key": problem.key, "message": problem.message}
        if problem.file and problem.file != API_SOURCE:
            item["file"] = problem.file
        problems.append(item)
    return problems
