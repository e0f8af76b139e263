"""The enrolled gateway's key file: which mobile nodes may create states (``docs/enrolled-access.md`` 4.1).

```toml
[keys]
alice-laptop = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
bob-laptop = ["<old key>", "<new key>"]     # two at once while bob moves to the new one
```

The file is its owner's alone (mode 0600, root): it is refused otherwise, like an ssh private key.
Read with every problem reported at once, like the configuration; written back atomically by
``m6t-gateway keys``, which is the only place a key is ever shown (once, when it is made).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from m6t.configfile import ConfigError, Problem, dump_toml, parse_toml
from m6t.platform.private_file import PrivateFileError, read_private_file, write_private_file
from m6t.protocol.access import KEY_LEN, KEY_NAME, decode_key, encode_key, fingerprint, key_id

MAX_KEYS_PER_NAME: Final = 2
"""One key, or two while a mobile node rotates to a new one."""
_HEADER: Final = (
    "# m6t gateway access keys: readable by root only (chmod 600).\n"
    "# Managed with m6t-gateway keys add/list/remove; then: systemctl reload m6t-gateway.\n\n"
)


def generate_key() -> bytes:
    """32 bytes from the OS CSPRNG (``secrets`` reads ``os.urandom``)."""
    return secrets.token_bytes(KEY_LEN)


@dataclass(frozen=True, slots=True)
class KeyFile:
    """Names to their keys, in file order."""

    entries: Mapping[str, tuple[bytes, ...]] = field(default_factory=dict)

    def keys(self) -> Iterator[bytes]:
        for keys in self.entries.values():
            yield from keys

    def __len__(self) -> int:
        return sum(len(keys) for keys in self.entries.values())

    def listing(self) -> list[tuple[str, str]]:
        """``(name, fingerprint)`` of every key: what may be shown."""
        return [(name, fingerprint(key)) for name, keys in self.entries.items() for key in keys]

    def with_key(self, name: str, key: bytes) -> KeyFile:
        if not KEY_NAME.fullmatch(name):
            raise ValueError(f"{name!r}: a name is 1 to 64 letters, digits, '.', '_' or '-', starting alphanumeric")
        have = self.entries.get(name, ())
        if len(have) >= MAX_KEYS_PER_NAME:
            raise ValueError(
                f"{name} already has {MAX_KEYS_PER_NAME} keys: remove the old one first "
                f"(m6t-gateway keys remove {name} FINGERPRINT)"
            )
        entries = dict(self.entries)
        entries[name] = (*have, key)
        return KeyFile(entries)

    def without(self, name: str, print_: str | None = None) -> KeyFile:
        """Without ``name``'s key of fingerprint ``print_``, or all of its keys when ``print_`` is None."""
        have = self.entries.get(name)
        if have is None:
            raise ValueError(f"no key is named {name}")
        keep = () if print_ is None else tuple(k for k in have if fingerprint(k) != _normal_print(print_))
        if print_ is not None and len(keep) == len(have):
            raise ValueError(f"{name} has no key with fingerprint {print_}")
        entries = dict(self.entries)
        if keep:
            entries[name] = keep
        else:
            del entries[name]
        return KeyFile(entries)

    def to_toml(self) -> str:
        table: dict[str, object] = {
            name: encode_key(keys[0]) if len(keys) == 1 else [encode_key(k) for k in keys]
            for name, keys in self.entries.items()
        }
        return _HEADER + (dump_toml({"keys": table}) if table else "[keys]\n")


def _normal_print(text: str) -> str:
    bare = text.replace(":", "").lower()
    return ":".join(bare[i : i + 4] for i in range(0, len(bare), 4))


def parse_key_file(text: str, source: str) -> KeyFile:
    document = parse_toml(text, source)
    problems: list[Problem] = []
    for extra in document.keys() - {"keys"}:
        problems.append(Problem(source, extra, "unknown section or key: the file holds one [keys] table"))
    table = document.get("keys", {})
    if not isinstance(table, dict):
        raise ConfigError.single(source, "keys", 'must be a table of NAME = "base64 key"')
    entries: dict[str, tuple[bytes, ...]] = {}
    seen: dict[bytes, str] = {}
    for name, value in table.items():
        where = f"keys.{name}"
        if not KEY_NAME.fullmatch(name):
            problems.append(Problem(source, where, "a name is 1 to 64 letters, digits, '.', '_' or '-'"))
            continue
        texts = value if isinstance(value, list) else [value]
        if not 1 <= len(texts) <= MAX_KEYS_PER_NAME:
            problems.append(Problem(source, where, f"one key, or {MAX_KEYS_PER_NAME} while rotating"))
            continue
        keys: list[bytes] = []
        for index, item in enumerate(texts):
            at = where if not isinstance(value, list) else f"{where}[{index}]"
            if not isinstance(item, str):
                problems.append(Problem(source, at, "must be a string (the base64 key)"))
                continue
            try:
                key = decode_key(item)
            except ValueError as exc:
                problems.append(Problem(source, at, str(exc)))
                continue
            ident = key_id(key)
            if ident in seen:
                problems.append(Problem(source, at, f"the same key as {seen[ident]}: every key is one MN's"))
                continue
            seen[ident] = at
            keys.append(key)
        entries[name] = tuple(keys)
    if problems:
        raise ConfigError(problems)
    return KeyFile(entries)


def load_key_file(path: str | Path) -> KeyFile:
    """The key file at ``path``: private (0600, root's), valid as a whole, or :class:`ConfigError`."""
    source = str(path)
    try:
        raw = read_private_file(path)
    except PrivateFileError as exc:
        message = str(exc).removeprefix(f"{source}: ").removeprefix(source).strip()
        if exc.hint:
            message += f" ({exc.hint})"
        raise ConfigError.single(source, "", message) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError.single(source, "", "the file is not UTF-8 text") from None
    return parse_key_file(text, source)


def save_key_file(path: str | Path, keys: KeyFile) -> None:
    write_private_file(path, keys.to_toml().encode())


def stage_key_file(keys: KeyFile, copy: str | Path) -> None:
    """Hand ``keys`` to a gateway that may not read the key file (the systemd unit's dynamic user): ``copy``,
    owned by the owner of its directory (the service's runtime directory), mode 0600 from its first byte,
    replaced atomically so that a reload reads the old keys or the new ones.

    Run by root in a directory the service owns, so nothing here follows a name the service could have
    planted: the temporary file is created exclusively (never through a link) and changed through its
    descriptor only; the rename replaces whatever entry ``copy`` was, never what it pointed to."""
    copy = Path(copy)
    fchown: Callable[[int, int, int], None] | None = getattr(os, "fchown", None)
    if fchown is None:
        raise PrivateFileError(f"{copy}: key files need POSIX permissions")
    try:
        owner = os.stat(copy.parent)
        fd, temporary = tempfile.mkstemp(prefix=f".{copy.name}.", suffix=".tmp", dir=copy.parent)
    except OSError as exc:
        raise PrivateFileError(f"{copy}: cannot write it: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            fchown(handle.fileno(), owner.st_uid, owner.st_gid)
            handle.write(keys.to_toml().encode())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, copy)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise PrivateFileError(f"{copy}: cannot write it: {exc.strerror or exc}") from None
