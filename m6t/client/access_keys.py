"""The mobile node's access key for an enrolled gateway (docs/enrolled-access.md): where it is kept, and the
header it puts on the datagrams of an address the gateway has not confirmed yet.

Where the key lives, in the order the helper looks:

* ``access.key_file``: a root-only file holding the key alone (headless Linux, by the admin's choice);
* a key the desktop's agent (the tray, from the user's Secret Service keyring) handed over this run: kept in
  memory only, as NetworkManager keeps agent-owned secrets;
* the OS keyring through the ``keyring`` package, service ``m6t``, user ``access.key_id``: the macOS System
  keychain and the Windows Credential Manager for the helper running as root / LocalSystem.

A key is never logged, printed, or put in an error message: only its fingerprint is.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol

from m6t.client.config import AccessSection
from m6t.platform.private_file import PrivateFileError, read_private_file, write_private_file
from m6t.protocol.access import NONCE_LEN, Sealer, decode_key, encode_key, fingerprint
from m6t.protocol.values import MergedPacket

KEYRING_SERVICE: Final = "m6t"
"""The keyring entry's service name; its user name is ``access.key_id``."""


class AccessKeyError(Exception):
    """No usable key; the message says what to do (and never contains a key)."""


class KeyringUnavailable(Exception):
    """The OS keyring cannot be used from here (no backend, no session, locked)."""


class Keyring(Protocol):
    def get(self, service: str, name: str) -> str | None: ...

    def set(self, service: str, name: str, secret: str) -> None: ...


class SystemKeyring:
    """The OS keyring through the ``keyring`` package (imported when first needed).

    OSError counts as "unavailable" too: ``keyring`` reads its own configuration under the home directory
    before it picks a backend, which a sandboxed service may not even look at (systemd's ProtectHome=)."""

    def get(self, service: str, name: str) -> str | None:
        keyring, errors = _keyring()
        try:
            found: str | None = keyring.get_password(service, name)
        except (errors.KeyringError, OSError) as exc:
            raise KeyringUnavailable(_describe(exc)) from None
        return found

    def set(self, service: str, name: str, secret: str) -> None:
        keyring, errors = _keyring()
        try:
            keyring.set_password(service, name, secret)
        except (errors.KeyringError, OSError) as exc:
            raise KeyringUnavailable(_describe(exc)) from None


def _keyring() -> tuple[Any, Any]:
    try:
        import keyring
        import keyring.errors
    except ImportError:
        raise KeyringUnavailable("the keyring package is not installed") from None
    return keyring, keyring.errors


def _describe(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


class AccessKeys:
    """Finds and stores the helper's access key."""

    def __init__(self, keyring: Keyring | None = None) -> None:
        self._keyring: Keyring = keyring if keyring is not None else SystemKeyring()
        self._provided: dict[str, bytes] = {}

    def load(self, access: AccessSection) -> bytes:
        """The key for ``access`` (whose ``key_id`` is set), or :class:`AccessKeyError`."""
        name = access.key_id
        if name is None:
            raise AccessKeyError("no access.key_id is configured")
        if access.key_file is not None:
            try:
                text = read_private_file(access.key_file)
            except PrivateFileError as exc:
                raise AccessKeyError(f"{exc}{f' ({exc.hint})' if exc.hint else ''}") from None
            return _decoded(text, f"{access.key_file} does not hold a key")
        provided = self._provided.get(name)
        if provided is not None:
            return provided
        try:
            stored = self._keyring.get(KEYRING_SERVICE, name)
        except KeyringUnavailable as exc:
            raise AccessKeyError(
                f"no key for {name}: the OS keyring is not available to the helper ({exc}); "
                "on a Linux desktop the tray hands it over, on a headless host set access.key_file"
            ) from None
        if stored is None:
            raise AccessKeyError(f"no key stored for {name}: store it with `m6t key set` or in the settings window")
        return _decoded(stored, f"the key stored for {name} is damaged")

    def store(self, access: AccessSection, key: bytes) -> str:
        """Keep ``key`` where :meth:`load` finds it first; returns where (``"file"`` or ``"keyring"``)."""
        name = access.key_id
        if name is None:
            raise AccessKeyError("set access.key_id first: the name the gateway knows this mobile node's key by")
        if access.key_file is not None:
            try:
                write_private_file(access.key_file, (encode_key(key) + "\n").encode())
            except PrivateFileError as exc:
                raise AccessKeyError(str(exc)) from None
            return "file"
        try:
            self._keyring.set(KEYRING_SERVICE, name, encode_key(key))
        except KeyringUnavailable as exc:
            raise AccessKeyError(
                f"the OS keyring is not available to the helper ({exc}): on a Linux desktop the tray keeps the "
                "key in your keyring; on a headless host set access.key_file"
            ) from None
        return "keyring"

    def provide(self, key_id: str, key: bytes) -> None:
        """A key the desktop's agent handed over: used this run, never written anywhere."""
        self._provided[key_id] = key

    def forget(self, key_id: str) -> None:
        self._provided.pop(key_id, None)


def _decoded(text: str | bytes, what: str) -> bytes:
    try:
        return decode_key(text)
    except ValueError as exc:
        raise AccessKeyError(f"{what}: {exc}") from None


class Sealing:
    """Puts the access header in front of datagrams (the driver calls it while the address is unconfirmed).

    A merged packet (several TCP segments from the OS's offload) goes unsealed: the header cannot be split
    with it, and before confirmation the gateway has a state for it only if a sealed datagram made one.
    """

    __slots__ = ("_nonce", "_sealer", "fingerprint", "sealed")

    def __init__(self, key: bytes, nonce: Callable[[int], bytes] = secrets.token_bytes) -> None:
        self._sealer = Sealer(key)
        self._nonce = nonce
        self.fingerprint = fingerprint(key)
        self.sealed = 0

    def seal(self, datagrams: Sequence[bytes], wall_now: float) -> list[bytes]:
        seal = self._sealer.seal
        nonce = self._nonce
        out = [d if isinstance(d, MergedPacket) else seal(d, wall_now, nonce(NONCE_LEN)) for d in datagrams]
        self.sealed += len(out)
        return out
