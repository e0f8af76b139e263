"""PlatformError says what kind of failure it is, so nobody above the platform reads its text."""

from __future__ import annotations

import errno

from m6t.platform.base import PlatformError, PlatformErrorCode


def test_an_error_without_a_code_is_other() -> None:
    error = PlatformError("something failed", "a hint")
    assert error.code is PlatformErrorCode.OTHER and error.hint == "a hint" and str(error) == "something failed"


def test_the_permission_errnos() -> None:
    assert PlatformErrorCode.of_errno(errno.EPERM) is PlatformErrorCode.PERMISSION_DENIED
    assert PlatformErrorCode.of_errno(errno.EACCES) is PlatformErrorCode.PERMISSION_DENIED
    for other in (errno.ENOENT, errno.EBUSY, errno.EEXIST, None):
        assert PlatformErrorCode.of_errno(other) is PlatformErrorCode.OTHER
