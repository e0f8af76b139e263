"""The one exception the lab raises."""

from __future__ import annotations

from collections.abc import Sequence


class LabError(RuntimeError):
    """A lab operation failed; carries the failing command and its stderr when there is one."""

    def __init__(
        self,
        message: str,
        *,
        command: Sequence[str] | None = None,
        returncode: int | None = None,
        stderr: str = "",
    ) -> None:
        self.command: tuple[str, ...] | None = tuple(command) if command is not None else None
        self.returncode = returncode
        self.stderr = stderr
        parts = [message]
        if self.command is not None:
            parts.append(f"command: {' '.join(self.command)}")
        if returncode is not None:
            parts.append(f"exit status: {returncode}")
        if stderr.strip():
            parts.append(f"stderr: {stderr.strip()}")
        super().__init__("\n  ".join(parts))
