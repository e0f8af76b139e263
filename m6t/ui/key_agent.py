"""The tray as the secret agent of enrolled access (docs/enrolled-access.md), as NetworkManager's agents are.

On a Linux desktop the helper runs as root, outside the user's session, and cannot open the user's keyring:
the access key lives there (the Secret Service, through the ``keyring`` package), and the tray hands it to the
helper when the helper asks (an ``access_key_needed`` event, or ``access_key_missing`` found at start-up),
with ``access.key`` and ``store: false``, so the helper holds it in memory only.  On macOS and Windows the
helper keeps the key itself (System keychain, Credential Manager); the tray never needs to answer there, and
a key the user has not stored anywhere gets no answer: the helper's error says what to do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from PySide6.QtCore import QObject

from m6t.client.api.schema import ErrorCode, Method
from m6t.ui.connection import Outcome
from m6t.ui.model import TunnelModel

KEYRING_SERVICE: Final = "m6t"
"""The helper's service name: the same entry, whichever side keeps it."""

Lookup = Callable[[str], "str | None"]


def user_key(key_id: str) -> str | None:
    """The key the user keeps under ``key_id`` in their own keyring, or None (none there, or no keyring)."""
    keyring, errors = _keyring()
    if keyring is None:
        return None
    try:
        found: str | None = keyring.get_password(KEYRING_SERVICE, key_id)
    except errors.KeyringError:
        return None
    return found


def keep_user_key(key_id: str, key: str) -> bool:
    """Keep ``key`` in the user's keyring; False if there is none to keep it in."""
    keyring, errors = _keyring()
    if keyring is None:
        return False
    try:
        keyring.set_password(KEYRING_SERVICE, key_id, key)
    except errors.KeyringError:
        return False
    return True


def _keyring() -> tuple[Any, Any]:
    try:
        import keyring
        import keyring.errors
    except ImportError:
        return None, None
    return keyring, keyring.errors


class KeyAgent(QObject):
    """Answers the helper's requests for the access key from the user's keyring."""

    def __init__(self, model: TunnelModel, lookup: Lookup = user_key) -> None:
        super().__init__(model)
        self._model = model
        self._lookup = lookup
        self.handed_over = 0
        model.access_key_needed.connect(self.provide)
        model.config_loaded.connect(self._check_status)

    def _check_status(self) -> None:
        status = self._model.status
        problems = status.get("problems", []) if status is not None else []
        if any(problem.get("code") == ErrorCode.ACCESS_KEY_MISSING for problem in problems):
            key_id = self._model.config_value("access.key_id")
            if isinstance(key_id, str):
                self.provide(key_id)

    def provide(self, key_id: str) -> None:
        key = self._lookup(key_id)
        if key is None:
            return

        def done(outcome: Outcome) -> None:
            if outcome.ok:
                self.handed_over += 1

        self._model.call(Method.ACCESS_KEY, {"key": key, "store": False}, done)
