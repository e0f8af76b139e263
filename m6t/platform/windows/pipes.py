"""Named pipes, tokens and accounts: the kernel32/advapi32 calls behind the control channel on Windows.

The one injectable layer under :mod:`m6t.platform.windows.control` and :mod:`m6t.platform.windows.peer`: every
call crosses ``ctypes`` here with its documented prototype, on the DLL objects a :class:`PipeApi` holds.  The
helper gets them from :func:`native_pipe_api`; the tests give faithful emulations of the same exports.

Failures raise :class:`Win32Error`: an :class:`OSError` (what the control transport's callers catch) that keeps
the Win32 error code, so the callers branch on ``code`` the way C code branches on ``GetLastError()``.

Layouts are the x64/ARM64 ones (pointers 8 bytes), where ``ctypes`` lays them out from the same fields:

=======================  =====  ==========================================================================
structure                bytes  notes
=======================  =====  ==========================================================================
OVERLAPPED               32     Internal (NTSTATUS) 0, InternalHigh (bytes) 8, Offset 16, hEvent 24
SECURITY_ATTRIBUTES      24     nLength 0, lpSecurityDescriptor 8, bInheritHandle 16
SID_AND_ATTRIBUTES       16     Sid 0, Attributes 8
TOKEN_GROUPS             8+16n  GroupCount 0, Groups[] 8
=======================  =====  ==========================================================================
"""

from __future__ import annotations

import ctypes
import errno
import math
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from m6t.platform.base import PlatformError
from m6t.platform.windows.system import BOOL, DWORD, HANDLE, LOAD_LIBRARY_SEARCH_SYSTEM32, Function, bind

# winerror.h: what the control channel acts on.
ERROR_FILE_NOT_FOUND: Final = 2
ERROR_ACCESS_DENIED: Final = 5
ERROR_INVALID_HANDLE: Final = 6
ERROR_INVALID_PARAMETER: Final = 87
ERROR_BROKEN_PIPE: Final = 109
ERROR_SEM_TIMEOUT: Final = 121
ERROR_INSUFFICIENT_BUFFER: Final = 122
ERROR_INVALID_NAME: Final = 123
ERROR_PIPE_BUSY: Final = 231
ERROR_NO_DATA: Final = 232
ERROR_PIPE_NOT_CONNECTED: Final = 233
ERROR_PIPE_CONNECTED: Final = 535
ERROR_OPERATION_ABORTED: Final = 995
ERROR_IO_INCOMPLETE: Final = 996
ERROR_IO_PENDING: Final = 997
ERROR_NOT_FOUND: Final = 1168
ERROR_NONE_MAPPED: Final = 1332

GONE: Final = frozenset({ERROR_BROKEN_PIPE, ERROR_NO_DATA, ERROR_PIPE_NOT_CONNECTED})
"""What a pipe answers once the other end has closed: reading, ERROR_BROKEN_PIPE; writing, ERROR_NO_DATA ("the
pipe is being closed"); after DisconnectNamedPipe, ERROR_PIPE_NOT_CONNECTED."""

_ERRNO: Final = {
    ERROR_FILE_NOT_FOUND: errno.ENOENT,
    ERROR_ACCESS_DENIED: errno.EACCES,
    ERROR_BROKEN_PIPE: errno.EPIPE,
    ERROR_NO_DATA: errno.EPIPE,
    ERROR_PIPE_NOT_CONNECTED: errno.EPIPE,
    ERROR_PIPE_BUSY: errno.EBUSY,
    ERROR_SEM_TIMEOUT: errno.ETIMEDOUT,
    ERROR_OPERATION_ABORTED: errno.ECANCELED,
    ERROR_INVALID_NAME: errno.EINVAL,
    ERROR_INVALID_PARAMETER: errno.EINVAL,
}

# CreateNamedPipeW / CreateFileW
PIPE_ACCESS_DUPLEX: Final = 0x00000003
FILE_FLAG_OVERLAPPED: Final = 0x40000000
FILE_FLAG_FIRST_PIPE_INSTANCE: Final = 0x00080000
PIPE_TYPE_BYTE: Final = 0x00000000
PIPE_READMODE_BYTE: Final = 0x00000000
PIPE_WAIT: Final = 0x00000000
PIPE_REJECT_REMOTE_CLIENTS: Final = 0x00000008
PIPE_UNLIMITED_INSTANCES: Final = 255
GENERIC_READ: Final = 0x80000000
GENERIC_WRITE: Final = 0x40000000
OPEN_EXISTING: Final = 3
SECURITY_SQOS_PRESENT: Final = 0x00100000
SECURITY_IDENTIFICATION: Final = 0x00010000
"""SecurityIdentification << 16: the server may learn who the client is, never act as it."""
NMPWAIT_WAIT_FOREVER: Final = 0xFFFFFFFF
PIPE_BUFFER: Final = 65536

# Waits
INFINITE: Final = 0xFFFFFFFF
WAIT_OBJECT_0: Final = 0
WAIT_TIMEOUT: Final = 258
WAIT_FAILED: Final = 0xFFFFFFFF

# Processes, tokens, accounts
PROCESS_QUERY_LIMITED_INFORMATION: Final = 0x1000
TOKEN_QUERY: Final = 0x0008
TOKEN_GROUPS_CLASS: Final = 2
TOKEN_ELEVATION_TYPE_CLASS: Final = 18
TOKEN_LINKED_TOKEN_CLASS: Final = 19
TOKEN_ELEVATION_TYPE_LIMITED: Final = 3
SE_GROUP_ENABLED: Final = 0x00000004
SE_GROUP_USE_FOR_DENY_ONLY: Final = 0x00000010
SID_TYPE_USER, SID_TYPE_GROUP, SID_TYPE_ALIAS, SID_TYPE_WELL_KNOWN_GROUP = 1, 2, 4, 5
SDDL_REVISION_1: Final = 1
SE_KERNEL_OBJECT: Final = 6
"""SE_OBJECT_TYPE for "a local kernel object", a pipe handle included."""
OWNER_SECURITY_INFORMATION: Final = 0x00000001
ERROR_SUCCESS: Final = 0

INVALID_HANDLE_VALUE: Final = ctypes.c_void_p(-1).value
"""(HANDLE)-1, as ``ctypes`` hands a HANDLE back: the failure value of CreateNamedPipeW and CreateFileW."""

FILETIME_UNIX_EPOCH: Final = 116444736000000000
"""1970-01-01 in FILETIME units (100 ns since 1601-01-01, UTC)."""


class OVERLAPPED(ctypes.Structure):
    _fields_ = (
        ("Internal", ctypes.c_size_t),
        ("InternalHigh", ctypes.c_size_t),
        ("Offset", DWORD),
        ("OffsetHigh", DWORD),
        ("hEvent", HANDLE),
    )


class SECURITY_ATTRIBUTES(ctypes.Structure):
    _fields_ = (("nLength", DWORD), ("lpSecurityDescriptor", ctypes.c_void_p), ("bInheritHandle", BOOL))


class SID_AND_ATTRIBUTES(ctypes.Structure):
    _fields_ = (("Sid", ctypes.c_void_p), ("Attributes", DWORD))


class TOKEN_GROUPS(ctypes.Structure):
    """The fixed head; ``Groups`` is really ``GroupCount`` entries long (ANYSIZE_ARRAY)."""

    _fields_ = (("GroupCount", DWORD), ("Groups", SID_AND_ATTRIBUTES * 1))


class Win32Error(OSError):
    """A Win32 call failed; ``code`` is ``GetLastError()``'s answer, the same on every OS the tests run on."""

    def __init__(self, what: str, code: int, text: str) -> None:
        super().__init__(
            _ERRNO.get(code, errno.EIO), f"{what}: {text.strip() or 'unknown error'} (Windows error {code})"
        )
        self.code = code


def filetime(seconds: float) -> int:
    """A Unix time as a FILETIME count."""
    return FILETIME_UNIX_EPOCH + round(seconds * 10_000_000)


def milliseconds(timeout: float | None) -> int:
    """A wait in milliseconds, rounded up so that it waits at least ``timeout``; ``None`` is INFINITE."""
    if timeout is None:
        return INFINITE
    return min(INFINITE - 1, max(0, math.ceil(timeout * 1000)))


def sid_string(raw: bytes) -> str:
    """The ``S-R-I-S-S…`` form of a binary SID (winnt.h ``SID``: Revision, SubAuthorityCount, a 48-bit
    big-endian IdentifierAuthority, then that many little-endian 32-bit SubAuthority values)."""
    revision, count = raw[0], raw[1]
    authority = int.from_bytes(raw[2:8], "big")
    subs = struct.unpack_from(f"<{count}I", raw, 8)
    return "-".join(["S", str(revision), str(authority), *map(str, subs)])


def sid_at(address: int) -> bytes:
    """The SID at ``address``: its length is in its own header (8 bytes + 4 per sub-authority)."""
    count = ctypes.c_uint8.from_address(address + 1).value
    return ctypes.string_at(address, 8 + 4 * count)


@dataclass(frozen=True)
class PipeApi:
    """What the control channel takes from the OS: :func:`native_pipe_api`, or the tests' emulation."""

    kernel32: object
    advapi32: object
    get_last_error: Callable[[], int]
    format_error: Callable[[int], str]


def native_pipe_api() -> PipeApi:
    """kernel32 and advapi32 from System32 (a privileged process never loads a DLL from anywhere else)."""
    if sys.platform != "win32":
        raise PlatformError(f"named pipes need Windows, not {sys.platform}")
    api: Any = ctypes

    def system_dll(name: str) -> object:
        return api.WinDLL(name, use_last_error=True, winmode=LOAD_LIBRARY_SEARCH_SYSTEM32)

    return PipeApi(
        kernel32=system_dll("kernel32.dll"),
        advapi32=system_dll("advapi32.dll"),
        get_last_error=api.get_last_error,
        format_error=api.FormatError,
    )


class NamedPipes:
    """Typed wrappers, one per documented call; each raises :class:`Win32Error` when the call fails."""

    def __init__(self, api: PipeApi) -> None:
        self._api = api
        k, a, p, vp = api.kernel32, api.advapi32, ctypes.POINTER, ctypes.c_void_p
        overlapped = p(OVERLAPPED)
        self._create_named_pipe = bind(
            k, "CreateNamedPipeW", HANDLE, ctypes.c_wchar_p, DWORD, DWORD, DWORD, DWORD, DWORD, DWORD,
            p(SECURITY_ATTRIBUTES),
        )  # fmt: skip
        self._connect_named_pipe = bind(k, "ConnectNamedPipe", BOOL, HANDLE, overlapped)
        self._client_process_id = bind(k, "GetNamedPipeClientProcessId", BOOL, HANDLE, p(ctypes.c_uint32))
        self._create_file = bind(k, "CreateFileW", HANDLE, ctypes.c_wchar_p, DWORD, DWORD, vp, DWORD, DWORD, HANDLE)
        self._wait_named_pipe = bind(k, "WaitNamedPipeW", BOOL, ctypes.c_wchar_p, DWORD)
        self._read_file = bind(k, "ReadFile", BOOL, HANDLE, vp, DWORD, p(DWORD), overlapped)
        self._write_file = bind(k, "WriteFile", BOOL, HANDLE, vp, DWORD, p(DWORD), overlapped)
        self._overlapped_result = bind(k, "GetOverlappedResult", BOOL, HANDLE, overlapped, p(DWORD), BOOL)
        self._cancel_io = bind(k, "CancelIoEx", BOOL, HANDLE, overlapped)
        self._create_event = bind(k, "CreateEventW", HANDLE, vp, BOOL, BOOL, ctypes.c_wchar_p)
        self._reset_event = bind(k, "ResetEvent", BOOL, HANDLE)
        self._wait = bind(k, "WaitForSingleObject", DWORD, HANDLE, DWORD)
        self._close_handle = bind(k, "CloseHandle", BOOL, HANDLE)
        self._open_process = bind(k, "OpenProcess", HANDLE, DWORD, BOOL, DWORD)
        self._process_times = bind(
            k, "GetProcessTimes", BOOL, HANDLE, p(ctypes.c_uint64), p(ctypes.c_uint64), p(ctypes.c_uint64),
            p(ctypes.c_uint64),
        )  # fmt: skip
        self._local_free = bind(k, "LocalFree", vp, vp)
        self._open_process_token = bind(a, "OpenProcessToken", BOOL, HANDLE, DWORD, p(HANDLE))
        self._get_token_information = bind(a, "GetTokenInformation", BOOL, HANDLE, ctypes.c_int, vp, DWORD, p(DWORD))
        self._lookup_account_name = bind(
            a, "LookupAccountNameW", BOOL, ctypes.c_wchar_p, ctypes.c_wchar_p, vp, p(DWORD), ctypes.c_wchar_p,
            p(DWORD), p(ctypes.c_int),
        )  # fmt: skip
        self._string_to_descriptor = bind(
            a, "ConvertStringSecurityDescriptorToSecurityDescriptorW", BOOL, ctypes.c_wchar_p, DWORD, p(vp),
            p(ctypes.c_uint32),
        )  # fmt: skip
        self._get_security_info = bind(
            a, "GetSecurityInfo", DWORD, HANDLE, ctypes.c_int, DWORD, p(vp), p(vp), p(vp), p(vp), p(vp)
        )

    def error(self, what: str, code: int | None = None) -> Win32Error:
        code = self._api.get_last_error() if code is None else code
        try:
            text = self._api.format_error(code)
        except Exception:
            text = ""
        return Win32Error(what, code, text)

    # ---------------------------------------------------------------------------------------- the server end

    def security_descriptor(self, sddl: str) -> int:
        """ConvertStringSecurityDescriptorToSecurityDescriptorW: "A pointer to a variable that receives a
        pointer to the converted security descriptor. The returned security descriptor is self-relative. To
        free the returned buffer, call the LocalFree function." (:meth:`local_free`)."""
        descriptor = ctypes.c_void_p()
        if not self._string_to_descriptor(sddl, SDDL_REVISION_1, ctypes.byref(descriptor), None):
            raise self.error("ConvertStringSecurityDescriptorToSecurityDescriptorW")
        assert descriptor.value is not None
        return descriptor.value

    def local_free(self, memory: int) -> None:
        if self._local_free(memory) is not None:
            raise self.error("LocalFree")

    def create_named_pipe(self, name: str, *, first: bool, attributes: SECURITY_ATTRIBUTES) -> int:
        """CreateNamedPipeW, duplex and overlapped, a byte stream that remote clients cannot open.

        ``first`` adds FILE_FLAG_FIRST_PIPE_INSTANCE: "If you attempt to create multiple instances of a pipe
        with this flag, creation of the first instance succeeds, but creation of the next instance fails with
        ERROR_ACCESS_DENIED."  PIPE_REJECT_REMOTE_CLIENTS: "Connections from remote clients are automatically
        rejected."  Later instances need no descriptor of their own: "To create an instance of a named pipe by
        using CreateNamedPipe, the user must have FILE_CREATE_PIPE_INSTANCE access to the named pipe object. If
        a new named pipe is being created, the access control list (ACL) from the security attributes parameter
        defines the discretionary access control for the named pipe."
        """
        open_mode = PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED | (FILE_FLAG_FIRST_PIPE_INSTANCE if first else 0)
        pipe_mode = PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS
        handle = self._create_named_pipe(
            name, open_mode, pipe_mode, PIPE_UNLIMITED_INSTANCES, PIPE_BUFFER, PIPE_BUFFER, 0, ctypes.byref(attributes)
        )
        if handle is None or handle == INVALID_HANDLE_VALUE:
            raise self.error(f"CreateNamedPipeW({name})")
        return int(handle)

    def start_connect(self, pipe: int, overlapped: OVERLAPPED) -> bool:
        """ConnectNamedPipe, overlapped: ``True`` when a client is already connected, ``False`` while pending.

        "If the operation is still pending, the return value is zero and GetLastError returns
        ERROR_IO_PENDING."  "If a client connects before the function is called, the function returns zero
        and GetLastError returns ERROR_PIPE_CONNECTED. This can happen if a client connects in the interval
        between the call to CreateNamedPipe and the call to ConnectNamedPipe. In this situation, there is a good
        connection between client and server, even though the function returns zero."  A client that came and
        already went leaves ERROR_NO_DATA ("if the previous client has closed its handle").
        """
        if self._connect_named_pipe(pipe, ctypes.byref(overlapped)):
            return True
        code = self._api.get_last_error()
        if code == ERROR_PIPE_CONNECTED:
            return True
        if code == ERROR_IO_PENDING:
            return False
        raise self.error("ConnectNamedPipe", code)

    def client_process_id(self, pipe: int) -> int:
        """GetNamedPipeClientProcessId: "Retrieves the client process identifier for the specified named pipe"
        (the handle "must be created by the CreateNamedPipe function")."""
        pid = ctypes.c_uint32()
        if not self._client_process_id(pipe, ctypes.byref(pid)):
            raise self.error("GetNamedPipeClientProcessId")
        return pid.value

    # ---------------------------------------------------------------------------------------- the client end

    def open_pipe(self, name: str) -> int:
        """CreateFileW on the pipe, overlapped, telling the server it may identify us and nothing more
        (SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION: "By default, a server impersonates at the
        SecurityImpersonation impersonation level. However, when the client calls the CreateFile function to
        open a handle to the client end of the pipe, the client can use the SECURITY_SQOS_PRESENT flag to
        control the impersonation level", so a program squatting the name could not act as our user)."""
        flags = FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION
        handle = self._create_file(name, GENERIC_READ | GENERIC_WRITE, 0, None, OPEN_EXISTING, flags, None)
        if handle is None or handle == INVALID_HANDLE_VALUE:
            raise self.error(f"CreateFileW({name})")
        return int(handle)

    def wait_pipe(self, name: str, timeout_ms: int) -> None:
        """WaitNamedPipeW: "If no instances of the specified named pipe exist, the WaitNamedPipe function
        returns immediately, regardless of the time-out value. If the time-out interval expires, the
        WaitNamedPipe function fails with the error ERROR_SEM_TIMEOUT."  0 would mean the server's default
        wait, so at least 1 ms is asked for."""
        if not self._wait_named_pipe(name, max(1, timeout_ms)):
            raise self.error(f"WaitNamedPipeW({name})")

    # ------------------------------------------------------------------------------------- overlapped I/O

    def start_read(self, handle: int, buffer: ctypes.Array[ctypes.c_char], overlapped: OVERLAPPED) -> bool:
        """ReadFile, overlapped: ``True`` when it completed at once, ``False`` while pending.  The count comes
        from :meth:`overlapped_result` ("Use NULL for this parameter if this is an asynchronous operation to
        avoid potentially erroneous results"); the buffer must outlive the operation."""
        return self._start_io(self._read_file, "ReadFile", handle, buffer, overlapped)

    def start_write(self, handle: int, buffer: ctypes.Array[ctypes.c_char], overlapped: OVERLAPPED) -> bool:
        """WriteFile, overlapped, as :meth:`start_read`."""
        return self._start_io(self._write_file, "WriteFile", handle, buffer, overlapped)

    def _start_io(
        self, call: Function, what: str, handle: int, buffer: ctypes.Array[ctypes.c_char], overlapped: OVERLAPPED
    ) -> bool:
        if call(handle, buffer, len(buffer), None, ctypes.byref(overlapped)):
            return True
        code = self._api.get_last_error()
        if code == ERROR_IO_PENDING:
            return False
        raise self.error(what, code)

    def overlapped_result(self, handle: int, overlapped: OVERLAPPED, *, wait: bool) -> int:
        """GetOverlappedResult: the bytes transferred, or the operation's own error (ERROR_OPERATION_ABORTED
        once cancelled, ERROR_BROKEN_PIPE when the other end closed)."""
        transferred = DWORD()
        if not self._overlapped_result(handle, ctypes.byref(overlapped), ctypes.byref(transferred), wait):
            raise self.error("GetOverlappedResult")
        return transferred.value

    def cancel(self, handle: int, overlapped: OVERLAPPED) -> bool:
        """CancelIoEx for one operation; ``False`` when it had already completed ("If this function cannot find
        a request to cancel, the return value is 0 (zero), and GetLastError returns ERROR_NOT_FOUND").  "The
        application must not free or reuse the OVERLAPPED structure associated with the canceled I/O
        operations until they have completed": callers wait with :meth:`overlapped_result`."""
        if self._cancel_io(handle, ctypes.byref(overlapped)):
            return True
        code = self._api.get_last_error()
        if code == ERROR_NOT_FOUND:
            return False
        raise self.error("CancelIoEx", code)

    def create_event(self) -> int:
        """A manual-reset event, unnamed: ConnectNamedPipe's OVERLAPPED "should contain a handle to a
        manual-reset event object"."""
        handle = self._create_event(None, True, False, None)
        if not handle:
            raise self.error("CreateEventW")
        return int(handle)

    def reset_event(self, event: int) -> None:
        if not self._reset_event(event):
            raise self.error("ResetEvent")

    def wait(self, handle: int, timeout_ms: int) -> bool:
        """WaitForSingleObject: ``True`` once signaled, ``False`` on timeout."""
        result = int(self._wait(handle, timeout_ms))
        if result == WAIT_FAILED:
            raise self.error("WaitForSingleObject")
        return result != WAIT_TIMEOUT

    def close_handle(self, handle: int) -> None:
        if not self._close_handle(handle):
            raise self.error("CloseHandle")

    # ----------------------------------------------------------------------- processes, tokens, accounts

    def open_process(self, pid: int) -> int:
        """OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION): the least that OpenProcessToken and
        GetProcessTimes need ("The process must have the PROCESS_QUERY_LIMITED_INFORMATION access
        permission").  Holding it also keeps ``pid`` from being reused until it is closed."""
        handle = self._open_process(PROCESS_QUERY_LIMITED_INFORMATION, False, pid)
        if not handle:
            raise self.error(f"OpenProcess({pid})")
        return int(handle)

    def process_created(self, process: int) -> int:
        """GetProcessTimes' creation time (FILETIME)."""
        created, exited, kernel, user = (ctypes.c_uint64() for _ in range(4))
        args = (ctypes.byref(created), ctypes.byref(exited), ctypes.byref(kernel), ctypes.byref(user))
        if not self._process_times(process, *args):
            raise self.error("GetProcessTimes")
        return created.value

    def open_process_token(self, process: int) -> int:
        """OpenProcessToken(TOKEN_QUERY).  "If the process being checked was started by a different account,
        the checking process needs to have the SE_DEBUG_NAME privilege enabled": LocalSystem (the service)
        is granted query access by the tokens' default DACL; an administrator's console run may not be."""
        token = HANDLE()
        if not self._open_process_token(process, TOKEN_QUERY, ctypes.byref(token)):
            raise self.error("OpenProcessToken")
        assert token.value is not None
        return token.value

    def _query_token(
        self, token: int, information_class: int, what: str, size: int | None = None
    ) -> ctypes.Array[ctypes.c_uint64]:
        """GetTokenInformation into an 8-byte aligned buffer (it may hold pointers): of ``size`` bytes for a
        fixed-size class, else of the size a first call with no buffer asks for."""
        needed = DWORD()
        if size is None:
            if self._get_token_information(token, information_class, None, 0, ctypes.byref(needed)):
                raise self.error(what, ERROR_INVALID_PARAMETER)  # nothing to return cannot succeed
            code = self._api.get_last_error()
            if code != ERROR_INSUFFICIENT_BUFFER:
                raise self.error(what, code)
            size = needed.value
        buffer = (ctypes.c_uint64 * ((size + 7) // 8))()
        if not self._get_token_information(token, information_class, buffer, size, ctypes.byref(needed)):
            raise self.error(what)
        return buffer

    def token_groups(self, token: int) -> list[tuple[str, int]]:
        """GetTokenInformation(TokenGroups): every group SID of the token with its attributes, deny-only ones
        included ("A SID with this attribute is a deny-only SID. When the system performs an access check, it
        checks for access-denied ACEs that apply to the SID, but it ignores access-allowed ACEs for the
        SID")."""
        buffer = self._query_token(token, TOKEN_GROUPS_CLASS, "GetTokenInformation(TokenGroups)")
        count = TOKEN_GROUPS.from_buffer(buffer).GroupCount
        entries = (SID_AND_ATTRIBUTES * count).from_buffer(buffer, TOKEN_GROUPS.Groups.offset)
        return [(sid_string(sid_at(entry.Sid)), int(entry.Attributes)) for entry in entries if entry.Sid]

    def elevation_limited(self, token: int) -> bool:
        """GetTokenInformation(TokenElevationType) is TokenElevationTypeLimited ("The token is a limited
        token"): UAC's filtered token of an administrator, which has a linked full token."""
        buffer = self._query_token(
            token, TOKEN_ELEVATION_TYPE_CLASS, "GetTokenInformation(TokenElevationType)", ctypes.sizeof(DWORD)
        )
        return ctypes.c_uint32.from_buffer(buffer).value == TOKEN_ELEVATION_TYPE_LIMITED

    def linked_token(self, token: int) -> int:
        """GetTokenInformation(TokenLinkedToken): "A handle to the linked token. When you have finished using
        the handle, close it by calling the CloseHandle function"."""
        buffer = self._query_token(
            token, TOKEN_LINKED_TOKEN_CLASS, "GetTokenInformation(TokenLinkedToken)", ctypes.sizeof(HANDLE)
        )
        linked = ctypes.c_void_p.from_buffer(buffer).value
        if not linked:
            raise self.error("GetTokenInformation(TokenLinkedToken)", ERROR_INVALID_HANDLE)
        return linked

    def object_owner(self, handle: int) -> str:
        """The owner SID of the object ``handle`` names, by GetSecurityInfo(OWNER_SECURITY_INFORMATION).

        "ppsidOwner: A pointer to a variable that receives a pointer to the owner SID in the security descriptor
        returned in ppSecurityDescriptor"; "ppSecurityDescriptor: ... When you have finished using the pointer,
        free the returned buffer by calling the LocalFree function" (the owner points into it, so it is read
        first).  GetSecurityInfo returns its error instead of setting the last error.  Reading the owner needs
        READ_CONTROL on the handle, which GENERIC_READ includes.
        """
        owner, descriptor = ctypes.c_void_p(), ctypes.c_void_p()
        code = int(
            self._get_security_info(
                handle, SE_KERNEL_OBJECT, OWNER_SECURITY_INFORMATION, ctypes.byref(owner), None, None, None,
                ctypes.byref(descriptor),
            )
        )  # fmt: skip
        if code != ERROR_SUCCESS:
            raise self.error("GetSecurityInfo", code)
        try:
            if not owner.value:
                raise self.error("GetSecurityInfo (no owner)", ERROR_INVALID_PARAMETER)
            return sid_string(sid_at(owner.value))
        finally:
            if descriptor.value:
                self.local_free(descriptor.value)

    def lookup_account(self, name: str) -> tuple[str, int]:
        """LookupAccountNameW on this machine (lpSystemName NULL): the account's SID and its SID_NAME_USE.

        Called twice, as documented: "If the function fails because the buffer is too small or if cbSid is
        zero, this variable receives the required buffer size", and "If the function fails because the buffer
        is too small, this variable receives the required buffer size, including the terminating null
        character" for the domain name.
        """
        sid_size, domain_size, use = DWORD(0), DWORD(0), ctypes.c_int(0)
        what = f"LookupAccountNameW({name})"
        if self._lookup_account_name(
            None, name, None, ctypes.byref(sid_size), None, ctypes.byref(domain_size), ctypes.byref(use)
        ):
            raise self.error(what, ERROR_INVALID_PARAMETER)  # an empty buffer cannot hold a SID
        code = self._api.get_last_error()
        if code != ERROR_INSUFFICIENT_BUFFER:
            raise self.error(what, code)
        sid = ctypes.create_string_buffer(sid_size.value)
        domain = ctypes.create_unicode_buffer(domain_size.value)
        if not self._lookup_account_name(
            None, name, sid, ctypes.byref(sid_size), domain, ctypes.byref(domain_size), ctypes.byref(use)
        ):
            raise self.error(what)
        return sid_string(sid_at(ctypes.addressof(sid))), use.value
