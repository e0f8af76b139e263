"""Files that hold secrets (access keys): read only if their owner alone can read them, written that way.

POSIX permissions are what make such a file private, so where there are none (Windows) the files are
refused with a pointer to the OS's credential store.  The checks are made on the opened descriptor, so
the file judged is the file read; symbolic links are not followed.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

from m6t.atomic import atomic_write
from m6t.platform.base import PlatformError

MAX_PRIVATE_FILE_BYTES = 1 << 20
"""Far more than any key file holds: a bigger one is not a key file."""


class PrivateFileError(PlatformError):
    """A secret-holding file is missing, unreadable, or readable by others than its owner."""


def _euid() -> int | None:
    # getattr keeps this importable and type-checkable where geteuid does not exist.
    geteuid: Callable[[], int] | None = getattr(os, "geteuid", None)
    return None if geteuid is None else geteuid()


def check_private(path: str | Path, st: os.stat_result) -> None:
    """Raise unless ``st`` (of ``path``) is a regular file only its owner (root or us) may read or write."""
    euid = _euid()
    if euid is None:
        raise PrivateFileError(
            f"{path}: key files need POSIX permissions", hint="keep the key in the OS credential store instead"
        )
    if not stat.S_ISREG(st.st_mode):
        raise PrivateFileError(f"{path}: not a regular file")
    if st.st_uid not in (0, euid):
        raise PrivateFileError(
            f"{path} belongs to uid {st.st_uid}: a key file must belong to root (or to the user reading it)",
            hint=f"chown root: {path}",
        )
    if st.st_mode & 0o077:
        raise PrivateFileError(
            f"{path} is open to its group or to others (mode {stat.S_IMODE(st.st_mode):04o}): "
            "a key file must be readable by its owner only",
            hint=f"chmod 600 {path}",
        )


def read_private_file(path: str | Path) -> bytes:
    """The contents of a private file (see :func:`check_private`), or :class:`PrivateFileError`."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise PrivateFileError(f"{path} does not exist") from None
    except OSError as exc:
        raise PrivateFileError(f"{path}: cannot open it: {exc.strerror or exc}") from None
    try:
        check_private(path, os.fstat(fd))
        with os.fdopen(os.dup(fd), "rb") as file:
            data = file.read(MAX_PRIVATE_FILE_BYTES + 1)
    except OSError as exc:
        raise PrivateFileError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_PRIVATE_FILE_BYTES:
        raise PrivateFileError(f"{path} is larger than {MAX_PRIVATE_FILE_BYTES} bytes: not a key file")
    return data


def write_private_file(path: str | Path, data: bytes) -> None:
    """Replace ``path`` atomically with ``data``, mode 0600 from its first byte: a crash leaves the old file or
    the new one, and no moment where others could read it."""
    if _euid() is None:
        raise PrivateFileError(f"{path}: key files need POSIX permissions")
    try:
        atomic_write(Path(path), data, mode=0o600)
    except OSError as exc:
        raise PrivateFileError(f"{path}: cannot write it: {exc.strerror or exc}") from None
