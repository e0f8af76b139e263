"""The helper's side of enrolled access: hand the driver its key, take a new one over the control API.

The key is looked up whenever the configuration may have changed it (start, ``config.set``) and whenever a
new one arrives (``access.key``).  Without one, the helper says so (error ``access_key_missing``) and asks
for it with an ``access_key_needed`` event, which the Linux desktop's agent (the tray) answers from the
user's keyring.  Nothing here logs or returns a key: only its fingerprint.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from m6t.client.access_keys import AccessKeyError, AccessKeys
from m6t.client.api import schema, wire
from m6t.client.api.schema import ErrorCode, ErrorInfo
from m6t.client.api.server import ApiError
from m6t.client.config import ClientConfig
from m6t.protocol.access import decode_key, fingerprint

Log = Callable[[str, str], None]
Broadcast = Callable[[wire.WireEvent], None]


class KeyedDriver(Protocol):
    def set_access_key(self, key: bytes | None) -> None: ...


class HelperAccess:
    def __init__(self, keys: AccessKeys, log: Log, broadcast: Broadcast) -> None:
        self.keys = keys
        self._log = log
        self._broadcast = broadcast
        self._fingerprint: str | None = None

    def refresh(self, config: ClientConfig | None, driver: KeyedDriver) -> ErrorInfo | None:
        """Give ``driver`` the key ``config`` asks for; the problem to report if there is none."""
        access = config.access if config is not None else None
        if access is None or access.key_id is None:
            driver.set_access_key(None)
            self._fingerprint = None
            return None
        try:
            key = self.keys.load(access)
        except AccessKeyError as exc:
            driver.set_access_key(None)
            self._fingerprint = None
            info = schema.error_info(ErrorCode.ACCESS_KEY_MISSING, detail=str(exc), hint="m6t key set")
            self._log("error", f"enrolled access: {exc}")
            self._broadcast((schema.EventKind.ERROR, info))
            self._broadcast(wire.access_key_needed_event(access.key_id))
            return info
        driver.set_access_key(key)
        print_ = fingerprint(key)
        if print_ != self._fingerprint:
            self._log("info", f"enrolled access: key {print_} for {access.key_id}")
            self._fingerprint = print_
        return None

    def set_key(self, params: dict[str, object], config: ClientConfig | None, driver: KeyedDriver) -> dict[str, str]:
        """``access.key``: store (or, for an agent, hold) the key and hand it to the driver."""
        text = params.get("key")
        store = params.get("store", True)
        if not isinstance(text, str) or not isinstance(store, bool):
            raise ApiError.of(ErrorCode.BAD_REQUEST, '"key" must be the base64 key and "store" a boolean.')
        try:
            key = decode_key(text)
        except ValueError as exc:
            raise ApiError.of(ErrorCode.BAD_REQUEST, f"That is not an access key: {exc}.") from None
        access = config.access if config is not None else None
        if access is None or access.key_id is None:
            raise ApiError.of(
                ErrorCode.ACCESS_KEY_MISSING,
                "Set access.key_id first: the name the gateway knows this computer's key by.",
            )
        if store:
            try:
                where = self.keys.store(access, key)
            except AccessKeyError as exc:
                raise ApiError.of(ErrorCode.ACCESS_KEY_MISSING, f"The key could not be stored: {exc}.") from None
            self.keys.forget(access.key_id)
        else:
            self.keys.provide(access.key_id, key)
            where = "memory"
        self._log("info", f"enrolled access: key {fingerprint(key)} for {access.key_id} kept in the {where}")
        self.refresh(config, driver)
        return {"fingerprint": fingerprint(key), "stored": where}
