"""The control channels the API tests run over, one test body for both: the Unix socket (Linux and macOS) and
the named pipe on the emulated Windows (tests/platform/windows_pipe_fakes.py).

What differs is said here once: how a raw connection is made, who an unprivileged peer and a member of the
operator group are (a forked child that became ``nobody``; a process with a standard user's token), and
what "every local user may connect" looks like (a 0666 socket in a 0755 directory; the pipe's descriptor).
"""

from __future__ import annotations

import json
import shutil
import socket
import stat
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from m6t.platform.base import ControlStream, ControlTransport
from m6t.platform.family import OsFamily
from m6t.platform.hints import conventions_of
from m6t.platform.unix_control import UnixSocketTransport
from m6t.platform.windows.control import DEFAULT_PIPE_NAME, SECURITY_DESCRIPTOR
from tests.platform.windows_pipe_fakes import (
    ADMINISTRATORS,
    ENABLED,
    GENERIC_READ,
    GENERIC_WRITE,
    OPERATORS,
    ClientEnd,
    PipeWindows,
    access_check,
    user_token,
)
from tests.unit.test_helper_fakes import CONFIG_TEXT, NOBODY, RunningHelper, is_root, other_group, run_as

Json = Any


class Raw:
    """A connection that sends bytes as they are and reads the server's lines, through the channel's own
    client end (the transport's blocking stream)."""

    def __init__(self, stream: ControlStream, timeout: float = 5.0) -> None:
        self.stream = stream
        self.timeout = timeout
        self._buffer = bytearray()

    def send(self, data: bytes) -> None:
        self.stream.send(data, self.timeout)

    def line(self) -> dict[str, Json]:
        while b"\n" not in self._buffer:
            chunk = self.stream.receive(self.timeout)
            assert chunk, "connection closed"
            self._buffer += chunk
        line, _, rest = bytes(self._buffer).partition(b"\n")
        self._buffer[:] = rest
        value = json.loads(line)
        assert isinstance(value, dict)
        return value

    def close(self) -> None:
        self.stream.close()


class Channel(ABC):
    name: str
    reader_uid: int | None
    """The ``uid`` the hello reports for :meth:`as_reader`'s peer."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp

    @abstractmethod
    def helper_transport(self) -> ControlTransport:
        """The channel's transport, for a client of no helper in particular."""

    @abstractmethod
    def helper(self, *, operator_group: str | None = None, **options: Any) -> RunningHelper:
        """A started helper serving this channel (``operator_group``: the configuration names that group)."""

    def raw(self, helper: RunningHelper) -> Raw:
        return Raw(helper.transport.connect(helper.socket_path, 5.0))

    @abstractmethod
    def small_receive_buffer(self, raw: Raw) -> None:
        """Make ``raw``'s receive side small, so that a client not reading backs the helper's writes up."""

    @abstractmethod
    def as_reader(self, call: Callable[[], Json], *, in_operator_group: bool = False) -> Json:
        """``call``'s result, made as an unprivileged local user (holding :meth:`operator_group` if asked)."""

    @abstractmethod
    def operator_group(self) -> str:
        """A group :meth:`as_reader` can hold, to configure as the operator group."""

    @abstractmethod
    def assert_every_local_user_may_connect(self, helper: RunningHelper) -> None: ...

    def unreachable_address(self) -> str:
        return str(self.tmp / "none.sock")

    def close(self) -> None:  # noqa: B027 - nothing to release unless a channel says so
        """Release what the channel holds, checking it was left clean."""


class UnixChannel(Channel):
    name = "unix"
    reader_uid = NOBODY

    def __init__(self, tmp: Path) -> None:
        # pytest's tmp_path sits under a 0700 directory that nobody cannot traverse.
        super().__init__(Path(tempfile.mkdtemp(prefix="m6t-api-")))
        self.tmp.chmod(0o755)

    def helper_transport(self) -> ControlTransport:
        return UnixSocketTransport()

    def helper(self, *, operator_group: str | None = None, **options: Any) -> RunningHelper:
        if operator_group is not None:
            config = self.tmp / "client.toml"
            config.write_text(CONFIG_TEXT.replace('operator_group = "m6t"', f'operator_group = "{operator_group}"'))
            config.chmod(0o644)
        return RunningHelper(self.tmp, **options).start()

    def small_receive_buffer(self, raw: Raw) -> None:
        sock: socket.socket = getattr(raw.stream, "_sock")  # noqa: B009 - the stream's own socket
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)

    def as_reader(self, call: Callable[[], Json], *, in_operator_group: bool = False) -> Json:
        if not is_root():
            pytest.skip("needs root to fork a child that becomes nobody (peer credentials of another user)")
        groups = [self._group()[1]] if in_operator_group else []
        return json.loads(run_as(NOBODY, NOBODY, groups, lambda: json.dumps(call()).encode()))

    def _group(self) -> tuple[str, int]:
        group = other_group()
        if group is None:
            pytest.skip("no group to use as the operator group")
        return group

    def operator_group(self) -> str:
        return self._group()[0]

    def assert_every_local_user_may_connect(self, helper: RunningHelper) -> None:
        mode = Path(helper.socket_path).stat().st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o666
        assert stat.S_IMODE(Path(helper.socket_path).parent.stat().st_mode) == 0o755

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


class PipeChannel(Channel):
    """The helper as the Windows service (LocalSystem) on the emulated Windows; clients are LocalSystem too
    unless :meth:`as_reader` says otherwise.  Refusals are worded as on Windows."""

    name = "pipe"
    reader_uid = None

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.windows = PipeWindows()

    def helper_transport(self) -> ControlTransport:
        return self.windows.transport()

    def helper(self, *, operator_group: str | None = None, **options: Any) -> RunningHelper:
        # The emulated peers hold emulated groups: the configuration names the emulated machine's, whoever
        # runs the tests.
        group = operator_group if operator_group is not None else "m6t"
        (self.tmp / "client.toml").write_text(
            CONFIG_TEXT.replace('operator_group = "m6t"', f'operator_group = "{group}"')
        )
        return RunningHelper(
            self.tmp,
            transport=self.windows.transport(),
            address=DEFAULT_PIPE_NAME,
            conventions=conventions_of(OsFamily.WINDOWS),
            **options,
        ).start()

    def small_receive_buffer(self, raw: Raw) -> None:
        handle = getattr(raw.stream, "_handle")  # noqa: B009 - the stream's own pipe handle
        end = self.windows.handles[handle]
        assert isinstance(end, ClientEnd)
        end.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)

    def as_reader(self, call: Callable[[], Json], *, in_operator_group: bool = False) -> Json:
        token = user_token(1003, (OPERATORS, ENABLED)) if in_operator_group else user_token()
        with self.windows.running_as(self.windows.spawn("m6t.exe", token)):
            return call()

    def operator_group(self) -> str:
        return "m6t"  # the emulated machine's local group (OPERATORS)

    def assert_every_local_user_may_connect(self, helper: RunningHelper) -> None:
        pipe = self.windows.pipe(DEFAULT_PIPE_NAME.rpartition("\\")[2])
        assert pipe is not None and pipe.descriptor.sddl == SECURITY_DESCRIPTOR
        assert access_check(pipe.descriptor, user_token(), GENERIC_READ | GENERIC_WRITE)
        assert pipe.owner == ADMINISTRATORS, "what clients check before they send"

    def unreachable_address(self) -> str:
        return "\\\\.\\pipe\\m6t-nobody-serves-this"

    def close(self) -> None:
        self.windows.assert_clean()


CHANNELS: dict[str, type[Channel]] = {"unix": UnixChannel, "pipe": PipeChannel}
