"""An emulated Windows for the control pipe: named pipes that carry real bytes, processes, tokens, accounts.

It stands in for kernel32 and advapi32 under :class:`m6t.platform.windows.pipes.NamedPipes`, the way
``windows_fakes.py`` stands in for the backend's DLLs, on the same ABI module
(:mod:`m6t.lab.emulation.windows_abi`): every export is a real C function pointer with the documented
prototype, so each call crosses ``ctypes`` as on Windows; the last error is per thread; misuse is recorded,
not raised through C.  Structures (OVERLAPPED, SECURITY_ATTRIBUTES, TOKEN_GROUPS, SIDs) are read and written
as raw memory at the documented x64 offsets, never through the code under test's ctypes classes.

What is modelled, and the documentation it follows:

* **Pipe instances carry bytes** through a Unix socketpair per connection.  CreateFileW connects to an
  instance that listens (a new one, or one with a ConnectNamedPipe pending); none listening:
  ERROR_PIPE_BUSY; no instance at all: ERROR_FILE_NOT_FOUND.
* **ConnectNamedPipe**: "If a client connects before the function is called, the function returns zero and
  GetLastError returns ERROR_PIPE_CONNECTED"; a client that already closed its handle: ERROR_NO_DATA; else
  ERROR_IO_PENDING until a client arrives.  Its OVERLAPPED "should contain a handle to a manual-reset event
  object" (an auto-reset one is recorded as a violation).
* **FILE_FLAG_FIRST_PIPE_INSTANCE**: "creation of the next instance fails with ERROR_ACCESS_DENIED".
  Other instances need FILE_CREATE_PIPE_INSTANCE from the pipe's DACL ("the user must have
  FILE_CREATE_PIPE_INSTANCE access to the named pipe object") and fail with ERROR_PIPE_BUSY past
  nMaxInstances.  A NULL descriptor gives the documented default: "full control to the LocalSystem account,
  administrators, and the creator owner ... read access to members of the Everyone group and the anonymous
  account".
* **Access checks** (CreateFileW, later CreateNamedPipeW) run the DACL in order ("How DACLs Control Access to
  an Object": the first ACE that denies a requested right ends it; allowed rights accumulate), with generic
  rights mapped by the file mapping (FILE_GENERIC_WRITE includes FILE_APPEND_DATA, the same bit as
  FILE_CREATE_PIPE_INSTANCE), deny-only SIDs matching deny ACEs only ("it checks for access-denied ACEs that
  apply to the SID, but it ignores access-allowed ACEs for the SID"), after the mandatory integrity check
  against the descriptor's label (``S:(ML;;NW;;;ME)``; "Objects that lack an integrity label are treated as
  medium"): no write up from a lower-integrity token.
* **WaitNamedPipeW**: "If no instances of the specified named pipe exist, the WaitNamedPipe function returns
  immediately, regardless of the time-out value. If the time-out interval expires, the WaitNamedPipe function
  fails with the error ERROR_SEM_TIMEOUT"; an instance is available when "the pipe's server process has a
  pending ConnectNamedPipe operation on the pipe".
* **Overlapped I/O** as the I/O manager does it: the event is reset when an operation starts; a pending
  operation completes from another thread, writing the NTSTATUS and byte count into OVERLAPPED.Internal and
  InternalHigh and signalling the event; GetOverlappedResult reads them back (STATUS_PIPE_BROKEN becomes
  ERROR_BROKEN_PIPE, STATUS_CANCELLED ERROR_OPERATION_ABORTED) and ERROR_IO_INCOMPLETE while pending.
  ReadFile on a pipe whose other end closed: ERROR_BROKEN_PIPE; WriteFile: ERROR_NO_DATA ("the pipe is being
  closed").  CancelIoEx: "If this function cannot find a request to cancel, the return value is 0 (zero), and
  GetLastError returns ERROR_NOT_FOUND".  A non-NULL lpNumberOfBytesRead with an OVERLAPPED is a violation
  ("Use NULL for this parameter if this is an asynchronous operation").
* **Processes and tokens**: GetNamedPipeClientProcessId names the connecting (emulated) process;
  OpenProcess / OpenProcessToken / GetTokenInformation(TokenGroups, TokenElevationType, TokenLinkedToken) /
  GetProcessTimes answer from the tokens the tests build (UAC's filtered administrator token carries
  Administrators as deny-only, its linked token enabled), ERROR_INSUFFICIENT_BUFFER with the needed size
  first; a process can be made unopenable, can exit, and its id can be reused.
* **Accounts**: LookupAccountNameW with the documented two-call sizing; ERROR_NONE_MAPPED for unknown names.
* **Owners**: a new pipe belongs to its creator's default owner -- Administrators for a token holding that
  group as an owner group ("For users who are members of the built-in administrators group, the system
  automatically sets the default owner SID in the access token to the administrators group"), else the user
  -- or to the owner its descriptor names (``O:``), which must be one the token may own as (TOKEN_OWNER: "If
  it is a group SID, ... the attributes on the group must include SE_GROUP_OWNER and must not include
  SE_GROUP_USE_FOR_DENY_ONLY"; ERROR_INVALID_OWNER otherwise).  GetSecurityInfo(OWNER_SECURITY_INFORMATION)
  reads it through a handle opened with READ_CONTROL, into a block that must go back through LocalFree.
* **Memory**: ConvertStringSecurityDescriptorToSecurityDescriptorW hands out blocks that must go back through
  LocalFree; every handle must be closed.  :meth:`PipeWindows.assert_clean` checks both, and that no
  violation of a documented rule was recorded.

Which process calls is a context variable (:meth:`PipeWindows.running_as`), so a client in a thread or an
asyncio task acts as the process the test chose; the helper's own calls come from LocalSystem.

The event-loop side (:class:`EmulatedProactor`) stands in for ``ProactorPipes``: an event wait on a thread,
as RegisterWaitForSingleObject's thread pool does, and asyncio streams over the connection's socket where
Windows would use the Proactor's pipe transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ctypes
import re
import select
import socket
import struct
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from m6t.lab.emulation.windows_abi import Dll, Host, export
from m6t.platform.windows.control import NamedPipeTransport
from m6t.platform.windows.pipes import NamedPipes, PipeApi

# Windows constants, restated on purpose: the emulation must not trust the code under test's values.
ERROR_FILE_NOT_FOUND = 2
ERROR_ACCESS_DENIED = 5
ERROR_INVALID_HANDLE = 6
ERROR_INVALID_PARAMETER = 87
ERROR_BROKEN_PIPE = 109
ERROR_SEM_TIMEOUT = 121
ERROR_INSUFFICIENT_BUFFER = 122
ERROR_INVALID_NAME = 123
ERROR_PIPE_BUSY = 231
ERROR_NO_DATA = 232
ERROR_PIPE_NOT_CONNECTED = 233
ERROR_PIPE_CONNECTED = 535
ERROR_OPERATION_ABORTED = 995
ERROR_IO_INCOMPLETE = 996
ERROR_IO_PENDING = 997
ERROR_NOT_FOUND = 1168
ERROR_UNKNOWN_REVISION = 1305
ERROR_NO_SUCH_LOGON_SESSION = 1312
ERROR_INVALID_OWNER = 1307
ERROR_NONE_MAPPED = 1332

STATUS_SUCCESS = 0
STATUS_PENDING = 0x103
STATUS_CANCELLED = 0xC0000120
STATUS_PIPE_BROKEN = 0xC000014B
STATUS_PIPE_CLOSING = 0xC00000B1
NTSTATUS_TO_WIN32 = {
    STATUS_CANCELLED: ERROR_OPERATION_ABORTED,
    STATUS_PIPE_BROKEN: ERROR_BROKEN_PIPE,
    STATUS_PIPE_CLOSING: ERROR_NO_DATA,
}

PIPE_ACCESS_DUPLEX = 0x3
SE_FILE_OBJECT, SE_KERNEL_OBJECT, OWNER_SECURITY_INFORMATION, READ_CONTROL = 1, 6, 0x1, 0x20000
FILE_FLAG_OVERLAPPED = 0x40000000
FILE_FLAG_FIRST_PIPE_INSTANCE = 0x00080000
FILE_FLAG_WRITE_THROUGH = 0x80000000
WRITE_DAC, WRITE_OWNER, ACCESS_SYSTEM_SECURITY = 0x00040000, 0x00080000, 0x01000000
OPEN_MODE_FLAGS = (
    PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED | FILE_FLAG_FIRST_PIPE_INSTANCE | FILE_FLAG_WRITE_THROUGH
) | (WRITE_DAC | WRITE_OWNER | ACCESS_SYSTEM_SECURITY)
PIPE_TYPE_MESSAGE = 0x4
PIPE_REJECT_REMOTE_CLIENTS = 0x8
OPEN_EXISTING = 3
SECURITY_SQOS_PRESENT = 0x00100000
SECURITY_LEVEL_MASK = 0x00030000
NMPWAIT_USE_DEFAULT_WAIT, NMPWAIT_WAIT_FOREVER, INFINITE = 0, 0xFFFFFFFF, 0xFFFFFFFF
WAIT_OBJECT_0, WAIT_TIMEOUT = 0, 258
PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
TOKEN_QUERY = 0x8
TOKEN_GROUPS, TOKEN_ELEVATION_TYPE, TOKEN_LINKED_TOKEN = 2, 18, 19
ELEVATION_DEFAULT, ELEVATION_FULL, ELEVATION_LIMITED = 1, 2, 3
SID_TYPE_USER, SID_TYPE_GROUP, SID_TYPE_ALIAS, SID_TYPE_WELL_KNOWN_GROUP = 1, 2, 4, 5

# Access rights: the file object's generic mapping (winnt.h).
GENERIC_READ, GENERIC_WRITE, GENERIC_EXECUTE, GENERIC_ALL = 0x80000000, 0x40000000, 0x20000000, 0x10000000
FILE_GENERIC_READ, FILE_GENERIC_WRITE, FILE_GENERIC_EXECUTE, FILE_ALL_ACCESS = 0x120089, 0x120116, 0x1200A0, 0x1F01FF
FILE_CREATE_PIPE_INSTANCE = 0x0004
WRITE_RIGHTS = 0x0002 | 0x0004 | 0x0010 | 0x0100 | 0x10000 | WRITE_DAC | WRITE_OWNER
"""What the default "no write up" integrity policy withholds from a lower-integrity token."""
RIGHTS = {
    "GA": GENERIC_ALL,
    "GR": GENERIC_READ,
    "GW": GENERIC_WRITE,
    "GX": GENERIC_EXECUTE,
    "FA": FILE_ALL_ACCESS,
    "FR": FILE_GENERIC_READ,
    "FW": FILE_GENERIC_WRITE,
    "FX": FILE_GENERIC_EXECUTE,
    "RC": 0x20000,
    "SD": 0x10000,
    "WD": WRITE_DAC,
    "WO": WRITE_OWNER,
}

# Attributes of the SIDs in a token (winnt.h).
SE_GROUP_MANDATORY, SE_GROUP_ENABLED_BY_DEFAULT, SE_GROUP_ENABLED, SE_GROUP_OWNER = 0x1, 0x2, 0x4, 0x8
SE_GROUP_USE_FOR_DENY_ONLY, SE_GROUP_INTEGRITY, SE_GROUP_INTEGRITY_ENABLED = 0x10, 0x20, 0x40
SE_GROUP_LOGON_ID = 0xC0000000
ENABLED = SE_GROUP_MANDATORY | SE_GROUP_ENABLED_BY_DEFAULT | SE_GROUP_ENABLED
DENY_ONLY = SE_GROUP_USE_FOR_DENY_ONLY
INTEGRITY = SE_GROUP_INTEGRITY | SE_GROUP_INTEGRITY_ENABLED

# Well-known SIDs, and the SDDL names of those the descriptors use.
EVERYONE, LOCAL, CONSOLE_LOGON, CREATOR_OWNER = "S-1-1-0", "S-1-2-0", "S-1-2-1", "S-1-3-0"
NETWORK, INTERACTIVE, ANONYMOUS, AUTHENTICATED_USERS = "S-1-5-2", "S-1-5-4", "S-1-5-7", "S-1-5-11"
THIS_ORGANIZATION, LOCAL_SYSTEM = "S-1-5-15", "S-1-5-18"
ADMINISTRATORS, USERS, NETWORK_CONFIGURATION_OPERATORS = "S-1-5-32-544", "S-1-5-32-545", "S-1-5-32-556"
LOW, MEDIUM, HIGH, SYSTEM = 0x1000, 0x2000, 0x3000, 0x4000
SDDL_SIDS = {
    "WD": EVERYONE,
    "CO": CREATOR_OWNER,
    "NU": NETWORK,
    "IU": INTERACTIVE,
    "SU": "S-1-5-6",
    "AN": ANONYMOUS,
    "AU": AUTHENTICATED_USERS,
    "SY": LOCAL_SYSTEM,
    "LS": "S-1-5-19",
    "NS": "S-1-5-20",
    "BA": ADMINISTRATORS,
    "BU": USERS,
    "BG": "S-1-5-32-546",
    "AC": "S-1-15-2-1",
}
MACHINE = "LAPTOP"
MACHINE_SID = "S-1-5-21-1004336348-1177238915-682003330"
OPERATORS = f"{MACHINE_SID}-1010"
"""The machine's local group "m6t", the helper's default operator group."""

OVERLAPPED_INTERNAL, OVERLAPPED_INTERNAL_HIGH, OVERLAPPED_EVENT = 0, 8, 24
SECURITY_ATTRIBUTES_SIZE = 24
PIPE_NAME = re.compile(r"\\\\\.\\pipe\\([^\\]{1,247})", re.IGNORECASE)

T = TypeVar("T")
VP = ctypes.c_void_p
DWORD = ctypes.c_uint32
DONTWAIT: int = getattr(socket, "MSG_DONTWAIT", 0x40)
"""Named with getattr: Windows' socket module has no MSG_DONTWAIT, and the tests type-check for every OS."""
BOOL = ctypes.c_int32


def sid_bytes(text: str) -> bytes:
    """The binary SID (winnt.h ``SID``) of an ``S-R-I-S…`` string."""
    parts = text.split("-")
    assert parts[0] == "S", text
    subs = [int(part) for part in parts[3:]]
    return (
        struct.pack("<BB", int(parts[1]), len(subs))
        + int(parts[2]).to_bytes(6, "big")
        + struct.pack(f"<{len(subs)}I", *subs)
    )


def filetime_now(offset: float = 0.0) -> int:
    return 116444736000000000 + round((time.time() + offset) * 10_000_000)


# ----------------------------------------------------------------------------------- tokens and processes


@dataclass
class FakeToken:
    user: str
    groups: list[tuple[str, int]]
    integrity: int = MEDIUM
    elevation: int = ELEVATION_DEFAULT
    linked: FakeToken | None = None

    def holds(self, sid: str, *, deny: bool) -> bool:
        """Whether an ACE for ``sid`` applies: enabled SIDs for both kinds, deny-only SIDs for deny ACEs."""
        if sid == self.user:
            return True
        for group, attributes in self.groups:
            if group != sid:
                continue
            if attributes & SE_GROUP_ENABLED or (deny and attributes & SE_GROUP_USE_FOR_DENY_ONLY):
                return True
        return False

    def may_own(self, sid: str) -> bool:
        """TOKEN_OWNER: the owner "must match one of the user or group SIDs already in the token. If it is a
        group SID, ... the attributes on the group must include SE_GROUP_OWNER and must not include
        SE_GROUP_USE_FOR_DENY_ONLY"."""
        if sid == self.user:
            return True
        return any(
            group == sid and attributes & SE_GROUP_OWNER and not attributes & SE_GROUP_USE_FOR_DENY_ONLY
            for group, attributes in self.groups
        )

    def default_owner(self) -> str:
        """ "For users who are members of the built-in administrators group, the system automatically sets the
        default owner SID in the access token to the administrators group"; everyone else owns what they make."""
        return ADMINISTRATORS if self.may_own(ADMINISTRATORS) else self.user

    def all_groups(self) -> list[tuple[str, int]]:
        """TokenGroups: the groups, then the integrity label as Windows lists it."""
        return [*self.groups, (f"S-1-16-{self.integrity}", INTEGRITY)]


def _logon(rid: int, logon: str) -> list[tuple[str, int]]:
    return [
        (EVERYONE, ENABLED),
        (LOCAL, ENABLED),
        (logon, ENABLED),
        (AUTHENTICATED_USERS, ENABLED),
        (THIS_ORGANIZATION, ENABLED),
        (f"S-1-5-5-0-{rid}", ENABLED | SE_GROUP_LOGON_ID),
        (USERS, ENABLED),
    ]


def user_token(
    rid: int = 1001, *extra: tuple[str, int], logon: str = INTERACTIVE, integrity: int = MEDIUM
) -> FakeToken:
    """A standard user signed in at the console (or, with ``logon=NETWORK``, over the network)."""
    groups = _logon(rid, logon)
    if logon == INTERACTIVE:
        groups.append((CONSOLE_LOGON, ENABLED))
    return FakeToken(f"{MACHINE_SID}-{rid}", [*groups, *extra], integrity)


def elevated_admin_token(rid: int = 1002) -> FakeToken:
    """An administrator's full token (Run as administrator): Administrators enabled, high integrity."""
    token = user_token(rid, (ADMINISTRATORS, ENABLED | SE_GROUP_OWNER), integrity=HIGH)
    token.elevation = ELEVATION_FULL
    return token


def filtered_admin_token(rid: int = 1002, *, administrators_kept: bool = True) -> FakeToken:
    """The same administrator's desktop: UAC's filtered token, Administrators deny-only, linked to the full
    one.  ``administrators_kept=False`` builds it the way the UAC overview words it ("SIDs removed")."""
    extra = [(ADMINISTRATORS, DENY_ONLY)] if administrators_kept else []
    token = user_token(rid, *extra)
    token.elevation = ELEVATION_LIMITED
    token.linked = elevated_admin_token(rid)
    return token


def system_token() -> FakeToken:
    """LocalSystem: the service's account."""
    groups = [(ADMINISTRATORS, ENABLED | SE_GROUP_OWNER), (EVERYONE, ENABLED), (AUTHENTICATED_USERS, ENABLED)]
    return FakeToken(LOCAL_SYSTEM, groups, SYSTEM)


@dataclass
class FakeProcess:
    pid: int
    name: str
    token: FakeToken
    created: int
    """FILETIME."""
    openable: bool = True
    token_openable: bool = True


# ----------------------------------------------------------------------------------- security descriptors


@dataclass(frozen=True)
class Ace:
    allow: bool
    mask: int
    sid: str


@dataclass(frozen=True)
class SecurityDescriptor:
    sddl: str
    dacl: tuple[Ace, ...]
    label: int = MEDIUM
    """The mandatory integrity level: "Objects that lack an integrity label are treated as medium"."""
    label_policy: int = 0x1
    """SYSTEM_MANDATORY_LABEL_NO_WRITE_UP unless the label says otherwise."""
    owner: str | None = None
    """The owner the descriptor names (``O:``); ``None``: the creator's default owner."""


def map_generic(mask: int) -> int:
    mapped = mask & ~(GENERIC_READ | GENERIC_WRITE | GENERIC_EXECUTE | GENERIC_ALL)
    for generic, specific in (
        (GENERIC_READ, FILE_GENERIC_READ),
        (GENERIC_WRITE, FILE_GENERIC_WRITE),
        (GENERIC_EXECUTE, FILE_GENERIC_EXECUTE),
        (GENERIC_ALL, FILE_ALL_ACCESS),
    ):
        if mask & generic:
            mapped |= specific
    return mapped


_SID = r"[A-Z]{2}|S-1(?:-\d+)+"
_ACE = re.compile(rf"\((A|D);([A-Z]*);([A-Z]+|0x[0-9a-fA-F]+);;;({_SID})\)")
_LABEL = re.compile(r"\(ML;;((?:NW|NR|NX)+);;;(LW|ME|MP|HI|SI)\)")
_WHOLE = re.compile(rf"^(?:O:({_SID}))?(?:G:(?:{_SID}))?D:((?:P|AI|AR)*)((?:\([^)]*\))*)(?:S:((?:\([^)]*\))*))?$")
LABELS = {"LW": LOW, "ME": MEDIUM, "MP": MEDIUM + 0x100, "HI": HIGH, "SI": SYSTEM}
LABEL_POLICY = {"NW": 0x1, "NR": 0x2, "NX": 0x4}


def _rights(text: str) -> int | None:
    if text.startswith("0x"):
        return int(text, 16)
    pairs = [text[i : i + 2] for i in range(0, len(text), 2)]
    if len(text) % 2 or any(pair not in RIGHTS for pair in pairs):
        return None
    mask = 0
    for pair in pairs:
        mask |= RIGHTS[pair]
    return mask


def parse_sddl(text: str) -> SecurityDescriptor | None:
    """A security descriptor string's owner, DACL and mandatory label (a group accepted and ignored; a SACL
    may hold one mandatory label ACE and nothing else)."""
    whole = _WHOLE.match(text)
    if whole is None:
        return None
    owner_text, _, dacl, sacl = whole.groups()
    owner = SDDL_SIDS.get(owner_text, owner_text) if owner_text else None
    aces: list[Ace] = []
    for match in _ACE.finditer(dacl):
        kind, flags, rights, trustee = match.groups()
        mask = _rights(rights)
        sid = SDDL_SIDS.get(trustee, trustee)
        if flags or mask is None or not sid.startswith("S-1-"):
            return None  # inheritance flags mean nothing on a pipe
        aces.append(Ace(kind == "A", mask, sid))
    if "".join(match.group(0) for match in _ACE.finditer(dacl)) != dacl:
        return None
    if not sacl:
        return SecurityDescriptor(text, tuple(aces), owner=owner)
    label = _LABEL.fullmatch(sacl)
    if label is None:
        return None
    policy = sum(LABEL_POLICY[label.group(1)[i : i + 2]] for i in range(0, len(label.group(1)), 2))
    return SecurityDescriptor(text, tuple(aces), LABELS[label.group(2)], policy, owner)


def access_check(descriptor: SecurityDescriptor, token: FakeToken, desired: int) -> bool:
    """The mandatory integrity check ("evaluates access before access checks against an object's
    discretionary access control list"), then the DACL walk of "How DACLs Control Access to an Object"."""
    desired = map_generic(desired)
    if token.integrity < descriptor.label:
        if descriptor.label_policy & 0x1 and desired & WRITE_RIGHTS:
            return False
        if descriptor.label_policy & 0x2 and desired & FILE_GENERIC_READ & ~0x100000:
            return False
    granted = 0
    for ace in descriptor.dacl:
        mask = map_generic(ace.mask)
        if not ace.allow:
            if token.holds(ace.sid, deny=True) and mask & desired & ~granted:
                return False
        elif token.holds(ace.sid, deny=False):
            granted |= mask & desired
        if granted == desired:
            return True
    return False


def default_descriptor(creator: FakeToken) -> SecurityDescriptor:
    """What a NULL lpSecurityAttributes gives a named pipe (Named Pipe Security and Access Rights)."""
    return SecurityDescriptor(
        "(default)",
        (
            Ace(True, GENERIC_ALL, LOCAL_SYSTEM),
            Ace(True, GENERIC_ALL, ADMINISTRATORS),
            Ace(True, GENERIC_ALL, creator.user),
            Ace(True, GENERIC_READ, EVERYONE),
            Ace(True, GENERIC_READ, ANONYMOUS),
        ),
    )


# ----------------------------------------------------------------------------------- kernel objects


@dataclass
class FakeEvent:
    manual_reset: bool
    signaled: bool


@dataclass
class PendingIo:
    kind: str
    """"connect", "read" or "write"."""
    handle: int
    overlapped: int
    event: int
    buffer: int = 0
    length: int = 0
    data: bytes = b""
    done: int = 0
    finished: bool = False


@dataclass
class FakeInstance:
    pipe: FakePipe
    state: str = "listening"
    """"listening" (connectable), "connected", "closing" (the client left before ConnectNamedPipe)."""
    server_sock: socket.socket | None = None
    client_pid: int | None = None
    client_flags: int = 0
    connect: PendingIo | None = None
    adopted: bool = False
    """The server end's socket belongs to an asyncio transport (closing it ends the instance)."""


@dataclass
class FakePipe:
    name: str
    descriptor: SecurityDescriptor
    max_instances: int
    open_mode: int
    pipe_mode: int
    default_timeout_ms: int
    instances: list[FakeInstance] = field(default_factory=list)
    owner: str = ""


@dataclass
class ServerEnd:
    instance: FakeInstance


@dataclass
class ClientEnd:
    instance: FakeInstance
    sock: socket.socket
    access: int = 0
    """The rights granted with the handle (generic rights mapped)."""


@dataclass
class ProcessHandle:
    process: FakeProcess


@dataclass
class TokenHandle:
    token: FakeToken


_CALLER: contextvars.ContextVar[FakeProcess | None] = contextvars.ContextVar("emulated_windows_caller", default=None)


class PipeDll(Dll):
    """The shared ABI's DLL (every ``@export`` a real C function pointer) on the pipe host."""

    def __init__(self, host: PipeWindows) -> None:
        super().__init__(host)
        self.host = host


def _wstring(pointer: int | None) -> str:
    return ctypes.wstring_at(pointer) if pointer else ""


def _read_u64(address: int) -> int:
    return ctypes.c_uint64.from_address(address).value


def _write_u64(address: int, value: int) -> None:
    ctypes.c_uint64.from_address(address).value = value


def _write_u32(address: int | None, value: int) -> None:
    if address:
        ctypes.c_uint32.from_address(address).value = value


class FakePipeKernel32(PipeDll):
    # ------------------------------------------------------------------------------------- pipes, server

    @export(VP, VP, DWORD, DWORD, DWORD, DWORD, DWORD, DWORD, VP)
    def CreateNamedPipeW(
        self,
        name_ptr: int | None,
        open_mode: int,
        pipe_mode: int,
        max_instances: int,
        out_size: int,
        in_size: int,
        default_timeout: int,
        attributes: int | None,
    ) -> int:
        host = self.host
        invalid = host.invalid_handle
        match = PIPE_NAME.fullmatch(_wstring(name_ptr))
        if match is None:
            return host.fail(ERROR_INVALID_NAME, invalid)
        if open_mode & ~OPEN_MODE_FLAGS or not 1 <= max_instances <= 255:
            return host.fail(ERROR_INVALID_PARAMETER, invalid)
        host.check(open_mode & 3 == PIPE_ACCESS_DUPLEX, "CreateNamedPipeW: the control pipe must be duplex")
        host.check(bool(open_mode & FILE_FLAG_OVERLAPPED), "CreateNamedPipeW: the server end must be overlapped")
        host.check(not pipe_mode & PIPE_TYPE_MESSAGE, "CreateNamedPipeW: JSON lines are a byte stream")
        descriptor: SecurityDescriptor | None = None
        if attributes:
            length, pointer, inherit = struct.unpack_from(
                "<I4xQi", ctypes.string_at(attributes, SECURITY_ATTRIBUTES_SIZE)
            )
            host.check(length == SECURITY_ATTRIBUTES_SIZE, f"SECURITY_ATTRIBUTES.nLength is {length}, not 24")
            host.check(not inherit, "CreateNamedPipeW: a child process would inherit the pipe handle")
            if pointer:
                found = host.descriptors.get(pointer)
                host.check(found is not None, "lpSecurityDescriptor is not a descriptor the system handed out")
                descriptor = found[1] if found else None
        caller = host.caller()
        with host.lock:
            host.prune()
            key = match.group(1).casefold()
            pipe = host.pipes.get(key)
            if pipe is not None:
                if open_mode & FILE_FLAG_FIRST_PIPE_INSTANCE:
                    return host.fail(ERROR_ACCESS_DENIED, invalid, answered="CreateNamedPipeW")
                desired = FILE_CREATE_PIPE_INSTANCE | GENERIC_READ | GENERIC_WRITE
                if not access_check(pipe.descriptor, caller.token, desired):
                    return host.fail(ERROR_ACCESS_DENIED, invalid, answered="CreateNamedPipeW")
                host.check(max_instances == pipe.max_instances, "nMaxInstances must be the same for every instance")
                if len(pipe.instances) >= pipe.max_instances:
                    return host.fail(ERROR_PIPE_BUSY, invalid, answered="CreateNamedPipeW")
            else:
                owner = descriptor.owner if descriptor is not None else None
                if owner is not None and not caller.token.may_own(owner):
                    return host.fail(ERROR_INVALID_OWNER, invalid, answered="CreateNamedPipeW")
                pipe = FakePipe(
                    match.group(1),
                    descriptor or default_descriptor(caller.token),
                    max_instances,
                    open_mode,
                    pipe_mode,
                    default_timeout,
                    owner=owner or caller.token.default_owner(),
                )
                host.pipes[key] = pipe
            instance = FakeInstance(pipe)
            pipe.instances.append(instance)
            host.cond.notify_all()
            return host.register(ServerEnd(instance))

    @export(BOOL, VP, VP)
    def ConnectNamedPipe(self, handle: int | None, overlapped: int | None) -> int:
        host = self.host
        with host.lock:
            end = host.handles.get(handle or 0)
            if not isinstance(end, ServerEnd):
                return host.fail(ERROR_INVALID_HANDLE, 0)
            if not overlapped:
                host.violation("ConnectNamedPipe on an overlapped pipe without an OVERLAPPED")
                return host.fail(ERROR_INVALID_PARAMETER, 0)
            event = host.overlapped_event(overlapped, "ConnectNamedPipe", manual_reset=True)
            instance = end.instance
            if instance.state == "connected":
                return host.fail(ERROR_PIPE_CONNECTED, 0, answered="ConnectNamedPipe")
            if instance.state == "closing":
                return host.fail(ERROR_NO_DATA, 0, answered="ConnectNamedPipe")
            host.check(instance.connect is None, "ConnectNamedPipe while one is already pending")
            io = PendingIo("connect", handle or 0, overlapped, event)
            host.begin(io)
            instance.connect = io
            host.cond.notify_all()
            return host.fail(ERROR_IO_PENDING, 0)

    @export(BOOL, VP, VP)
    def GetNamedPipeClientProcessId(self, handle: int | None, pid_ptr: int | None) -> int:
        host = self.host
        with host.lock:
            end = host.handles.get(handle or 0)
            if not isinstance(end, ServerEnd):
                return host.fail(ERROR_INVALID_HANDLE, 0)
            if end.instance.client_pid is None:
                host.violation("GetNamedPipeClientProcessId on an instance no client connected to")
                return host.fail(ERROR_PIPE_NOT_CONNECTED, 0)
            _write_u32(pid_ptr, end.instance.client_pid)
            return 1

    # ------------------------------------------------------------------------------------- pipes, client

    @export(VP, VP, DWORD, DWORD, VP, DWORD, DWORD, VP)
    def CreateFileW(
        self,
        name_ptr: int | None,
        access: int,
        share: int,
        attributes: int | None,
        disposition: int,
        flags: int,
        template: int | None,
    ) -> int:
        host = self.host
        invalid = host.invalid_handle
        host.check(disposition == OPEN_EXISTING and template is None, "CreateFileW: a pipe client opens what exists")
        host.check(bool(flags & FILE_FLAG_OVERLAPPED), "CreateFileW: the client end must be overlapped")
        match = PIPE_NAME.fullmatch(_wstring(name_ptr))
        if match is None:
            return host.fail(ERROR_FILE_NOT_FOUND, invalid)
        caller = host.caller()
        with host.lock:
            host.prune()
            pipe = host.pipes.get(match.group(1).casefold())
            if pipe is None:
                return host.fail(ERROR_FILE_NOT_FOUND, invalid, answered="CreateFileW")
            if not access_check(pipe.descriptor, caller.token, access):
                return host.fail(ERROR_ACCESS_DENIED, invalid, answered="CreateFileW")
            instance = next((i for i in pipe.instances if i.state == "listening"), None)
            if instance is None:
                return host.fail(ERROR_PIPE_BUSY, invalid, answered="CreateFileW")
            server, client = socket.socketpair()
            instance.server_sock = server
            instance.state = "connected"
            instance.client_pid = caller.pid
            instance.client_flags = flags
            pending, instance.connect = instance.connect, None
            if pending is not None:
                host.complete(pending, STATUS_SUCCESS, 0)
            host.cond.notify_all()
            return host.register(ClientEnd(instance, client, map_generic(access)))

    @export(BOOL, VP, DWORD)
    def WaitNamedPipeW(self, name_ptr: int | None, timeout_ms: int) -> int:
        host = self.host
        match = PIPE_NAME.fullmatch(_wstring(name_ptr))
        if match is None:
            return host.fail(ERROR_FILE_NOT_FOUND, 0)
        key = match.group(1).casefold()
        with host.cond:
            host.prune()
            pipe = host.pipes.get(key)
            if pipe is None:
                return host.fail(ERROR_FILE_NOT_FOUND, 0, answered="WaitNamedPipeW")
            if timeout_ms == NMPWAIT_USE_DEFAULT_WAIT:
                timeout_ms = pipe.default_timeout_ms or 50
            deadline = None if timeout_ms == NMPWAIT_WAIT_FOREVER else time.monotonic() + timeout_ms / 1000
            while True:
                host.prune()
                pipe = host.pipes.get(key)
                if pipe is None:
                    return host.fail(ERROR_FILE_NOT_FOUND, 0, answered="WaitNamedPipeW")
                if any(i.state == "listening" and i.connect is not None for i in pipe.instances):
                    return 1
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return host.fail(ERROR_SEM_TIMEOUT, 0, answered="WaitNamedPipeW")
                host.cond.wait(0.05 if remaining is None else min(remaining, 0.05))

    # ------------------------------------------------------------------------------------- overlapped I/O

    @export(BOOL, VP, VP, DWORD, VP, VP)
    def ReadFile(
        self, handle: int | None, buffer: int | None, length: int, read_ptr: int | None, ov: int | None
    ) -> int:
        return self.host.start_io("read", handle, buffer, length, read_ptr, ov)

    @export(BOOL, VP, VP, DWORD, VP, VP)
    def WriteFile(
        self, handle: int | None, buffer: int | None, length: int, written_ptr: int | None, ov: int | None
    ) -> int:
        return self.host.start_io("write", handle, buffer, length, written_ptr, ov)

    @export(BOOL, VP, VP, VP, BOOL)
    def GetOverlappedResult(self, handle: int | None, ov: int | None, count_ptr: int | None, wait: int) -> int:
        host = self.host
        if not ov:
            return host.fail(ERROR_INVALID_PARAMETER, 0)
        with host.cond:
            while _read_u64(ov + OVERLAPPED_INTERNAL) == STATUS_PENDING:
                if not wait:
                    return host.fail(ERROR_IO_INCOMPLETE, 0)
                host.cond.wait(0.05)
            status = _read_u64(ov + OVERLAPPED_INTERNAL)
            _write_u32(count_ptr, _read_u64(ov + OVERLAPPED_INTERNAL_HIGH))
            if status == STATUS_SUCCESS:
                return 1
            return host.fail(NTSTATUS_TO_WIN32.get(status, ERROR_INVALID_PARAMETER), 0, answered="GetOverlappedResult")

    @export(BOOL, VP, VP)
    def CancelIoEx(self, handle: int | None, ov: int | None) -> int:
        host = self.host
        with host.lock:
            for io in list(host.pending):
                if io.handle == (handle or 0) and (ov is None or io.overlapped == ov):
                    host.complete(io, STATUS_CANCELLED, io.done)
                    return 1
            return host.fail(ERROR_NOT_FOUND, 0)

    # ------------------------------------------------------------------------------------- events, handles

    @export(VP, VP, BOOL, BOOL, VP)
    def CreateEventW(self, attributes: int | None, manual_reset: int, initial: int, name: int | None) -> int:
        self.host.check(attributes is None and name is None, "CreateEventW: events must be unnamed and private")
        with self.host.lock:
            return self.host.register(FakeEvent(bool(manual_reset), bool(initial)))

    @export(BOOL, VP)
    def ResetEvent(self, handle: int | None) -> int:
        with self.host.lock:
            event = self.host.handles.get(handle or 0)
            if not isinstance(event, FakeEvent):
                return self.host.fail(ERROR_INVALID_HANDLE, 0)
            event.signaled = False
            return 1

    @export(DWORD, VP, DWORD)
    def WaitForSingleObject(self, handle: int | None, timeout_ms: int) -> int:
        host = self.host
        deadline = None if timeout_ms == INFINITE else time.monotonic() + timeout_ms / 1000
        with host.cond:
            while True:
                event = host.handles.get(handle or 0)
                if not isinstance(event, FakeEvent):
                    return host.fail(ERROR_INVALID_HANDLE, 0xFFFFFFFF)
                if event.signaled:
                    if not event.manual_reset:
                        event.signaled = False
                    return WAIT_OBJECT_0
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return WAIT_TIMEOUT
                host.cond.wait(0.05 if remaining is None else min(remaining, 0.05))

    @export(BOOL, VP)
    def CloseHandle(self, handle: int | None) -> int:
        return self.host.close(handle or 0)

    # ------------------------------------------------------------------------------------- processes, memory

    @export(VP, DWORD, BOOL, DWORD)
    def OpenProcess(self, access: int, inherit: int, pid: int) -> int:
        host = self.host
        host.check(
            access == PROCESS_QUERY_LIMITED_INFORMATION, f"OpenProcess asks for 0x{access:x}, more than it needs"
        )
        host.check(not inherit, "OpenProcess: an inheritable process handle")
        with host.lock:
            process = host.processes.get(pid)
            if process is None:
                return host.fail(ERROR_INVALID_PARAMETER, 0, answered="OpenProcess")
            if not process.openable:
                return host.fail(ERROR_ACCESS_DENIED, 0, answered="OpenProcess")
            return host.register(ProcessHandle(process))

    @export(BOOL, VP, VP, VP, VP, VP)
    def GetProcessTimes(
        self, handle: int | None, created: int | None, exited: int | None, kernel: int | None, user: int | None
    ) -> int:
        with self.host.lock:
            process = self.host.handles.get(handle or 0)
            if not isinstance(process, ProcessHandle) or not (created and exited and kernel and user):
                return self.host.fail(ERROR_INVALID_HANDLE, 0)
            for address, value in ((created, process.process.created), (exited, 0), (kernel, 0), (user, 0)):
                _write_u64(address, value)
            return 1

    @export(VP, VP)
    def LocalFree(self, memory: int | None) -> int | None:
        with self.host.lock:
            if self.host.descriptors.pop(memory or 0, None) is None:
                self.host.violation(f"LocalFree({memory}): not memory the system allocated")
                return memory
            return None


class FakeAdvapi32(PipeDll):
    @export(BOOL, VP, DWORD, VP)
    def OpenProcessToken(self, process: int | None, access: int, token_ptr: int | None) -> int:
        host = self.host
        host.check(access == TOKEN_QUERY, f"OpenProcessToken asks for 0x{access:x}, more than TOKEN_QUERY")
        with host.lock:
            entry = host.handles.get(process or 0)
            if not isinstance(entry, ProcessHandle) or not token_ptr:
                return host.fail(ERROR_INVALID_HANDLE, 0)
            if not entry.process.token_openable:
                return host.fail(ERROR_ACCESS_DENIED, 0, answered="OpenProcessToken")
            _write_u64(token_ptr, host.register(TokenHandle(entry.process.token)))
            return 1

    @export(BOOL, VP, ctypes.c_int32, VP, DWORD, VP)
    def GetTokenInformation(
        self, token: int | None, information_class: int, buffer: int | None, length: int, needed_ptr: int | None
    ) -> int:
        host = self.host
        with host.lock:
            entry = host.handles.get(token or 0)
            if not isinstance(entry, TokenHandle) or not needed_ptr:
                return host.fail(ERROR_INVALID_HANDLE, 0)
            if buffer is None:
                host.check(length == 0, "GetTokenInformation: no buffer but a length")
            elif buffer % 4:
                host.violation("GetTokenInformation: the buffer is not aligned for the structure")
            if information_class == TOKEN_GROUPS:
                return self._groups(entry.token, buffer, length, needed_ptr)
            if information_class == TOKEN_ELEVATION_TYPE:
                _write_u32(needed_ptr, 4)
                if length < 4 or not buffer:
                    return host.fail(ERROR_INSUFFICIENT_BUFFER, 0)
                _write_u32(buffer, entry.token.elevation)
                return 1
            if information_class == TOKEN_LINKED_TOKEN:
                _write_u32(needed_ptr, 8)
                if length < 8 or not buffer:
                    return host.fail(ERROR_INSUFFICIENT_BUFFER, 0)
                if entry.token.linked is None:
                    return host.fail(ERROR_NO_SUCH_LOGON_SESSION, 0)
                _write_u64(buffer, host.register(TokenHandle(entry.token.linked)))
                return 1
            host.violation(f"GetTokenInformation: class {information_class} is not emulated")
            return host.fail(ERROR_INVALID_PARAMETER, 0)

    def _groups(self, token: FakeToken, buffer: int | None, length: int, needed_ptr: int) -> int:
        """TOKEN_GROUPS: GroupCount, then SID_AND_ATTRIBUTES[] at 8 (16 bytes each), the SIDs after them,
        each entry pointing into the same buffer."""
        groups = token.all_groups()
        sids = [sid_bytes(sid) for sid, _ in groups]
        needed = 8 + 16 * len(groups) + sum((len(sid) + 3) & ~3 for sid in sids)
        _write_u32(needed_ptr, needed)
        if length < needed or not buffer:
            return self.host.fail(ERROR_INSUFFICIENT_BUFFER, 0)
        raw = bytearray(needed)
        struct.pack_into("<I", raw, 0, len(groups))
        offset = 8 + 16 * len(groups)
        for index, ((_, attributes), sid) in enumerate(zip(groups, sids, strict=True)):
            struct.pack_into("<QI", raw, 8 + 16 * index, buffer + offset, attributes)
            raw[offset : offset + len(sid)] = sid
            offset += (len(sid) + 3) & ~3
        ctypes.memmove(buffer, bytes(raw), needed)
        return 1

    @export(BOOL, VP, VP, VP, VP, VP, VP, VP)
    def LookupAccountNameW(
        self,
        system: int | None,
        name_ptr: int | None,
        sid_ptr: int | None,
        sid_size_ptr: int | None,
        domain_ptr: int | None,
        domain_size_ptr: int | None,
        use_ptr: int | None,
    ) -> int:
        host = self.host
        host.check(system is None, "LookupAccountNameW: the control channel asks this machine only")
        if not (sid_size_ptr and domain_size_ptr and use_ptr):
            return host.fail(ERROR_INVALID_PARAMETER, 0)
        found = host.accounts.get(_wstring(name_ptr).casefold())
        if found is None:
            return host.fail(ERROR_NONE_MAPPED, 0)
        sid_text, use, domain = found
        sid = sid_bytes(sid_text)
        sid_room = ctypes.c_uint32.from_address(sid_size_ptr).value
        domain_room = ctypes.c_uint32.from_address(domain_size_ptr).value
        host.check(bool(sid_ptr) or sid_room == 0, "LookupAccountNameW: no Sid buffer, so cbSid must be zero")
        if sid_room < len(sid) or domain_room < len(domain) + 1 or not sid_ptr or not domain_ptr:
            _write_u32(sid_size_ptr, len(sid))
            _write_u32(domain_size_ptr, len(domain) + 1)
            return host.fail(ERROR_INSUFFICIENT_BUFFER, 0)
        ctypes.memmove(sid_ptr, sid, len(sid))
        ctypes.memmove(domain_ptr, (domain + "\0").encode("utf-16-le"), 2 * (len(domain) + 1))
        _write_u32(sid_size_ptr, len(sid))
        _write_u32(domain_size_ptr, len(domain))
        ctypes.c_int32.from_address(use_ptr).value = use
        return 1

    @export(BOOL, VP, DWORD, VP, VP)
    def ConvertStringSecurityDescriptorToSecurityDescriptorW(
        self, text_ptr: int | None, revision: int, descriptor_ptr: int | None, size_ptr: int | None
    ) -> int:
        host = self.host
        if revision != 1:
            return host.fail(ERROR_UNKNOWN_REVISION, 0)
        descriptor = parse_sddl(_wstring(text_ptr))
        if descriptor is None or not descriptor_ptr:
            return host.fail(ERROR_INVALID_PARAMETER, 0)
        memory = ctypes.create_string_buffer(20 + 8 + 28 * len(descriptor.dacl))
        with host.lock:
            host.descriptors[ctypes.addressof(memory)] = (memory, descriptor)
        _write_u64(descriptor_ptr, ctypes.addressof(memory))
        _write_u32(size_ptr, len(memory))
        return 1

    @export(DWORD, VP, ctypes.c_int32, DWORD, VP, VP, VP, VP, VP)
    def GetSecurityInfo(
        self,
        handle: int | None,
        object_type: int,
        information: int,
        owner_ptr: int | None,
        group_ptr: int | None,
        dacl_ptr: int | None,
        sacl_ptr: int | None,
        descriptor_ptr: int | None,
    ) -> int:
        """The pipe's owner through a handle to one of its ends.  "ppSecurityDescriptor ... When you have finished
        using the pointer, free the returned buffer by calling the LocalFree function"; the owner points into
        it.  Reading the owner needs READ_CONTROL on the handle; the error is returned, not set."""
        host = self.host
        host.check(object_type in (SE_FILE_OBJECT, SE_KERNEL_OBJECT), f"GetSecurityInfo: object type {object_type}")
        host.check(information == OWNER_SECURITY_INFORMATION, "GetSecurityInfo: only the owner is emulated")
        host.check(not (group_ptr or dacl_ptr or sacl_ptr), "GetSecurityInfo: only the owner is emulated")
        if not owner_ptr or not descriptor_ptr:
            host.violation("GetSecurityInfo: without ppSecurityDescriptor the owner could not be freed")
            return ERROR_INVALID_PARAMETER
        with host.lock:
            end = host.handles.get(handle or 0)
            if isinstance(end, ClientEnd):
                if not end.access & READ_CONTROL:
                    host.answers.append(("GetSecurityInfo", ERROR_ACCESS_DENIED))
                    return ERROR_ACCESS_DENIED
            elif not isinstance(end, ServerEnd):
                return ERROR_INVALID_HANDLE
            pipe = end.instance.pipe
            sid = sid_bytes(pipe.owner)
            memory = ctypes.create_string_buffer(20 + len(sid))
            ctypes.memmove(ctypes.addressof(memory) + 20, sid, len(sid))
            host.descriptors[ctypes.addressof(memory)] = (memory, pipe.descriptor)
        _write_u64(owner_ptr, ctypes.addressof(memory) + 20)
        _write_u64(descriptor_ptr, ctypes.addressof(memory))
        return 0


class PipeWindows(Host):
    """One emulated Windows host (the shared ABI's: lock, per-thread last error, recorded violations) with its
    pipes, processes, accounts and handles."""

    def __init__(self) -> None:
        super().__init__()
        self.cond = threading.Condition(self.lock)
        self.answers: list[tuple[str, int]] = []
        """Notable errors answered, as (function, code): lets a test check it took the surprising path."""
        self.before: dict[str, Callable[[], None]] = {}
        """Test hooks run as an export is entered (e.g. a process id reused just before OpenProcess)."""
        self._next_pid = 1000
        self.invalid_handle = ctypes.c_void_p(-1).value or 0
        self.handles: dict[int, object] = {}
        self.pipes: dict[str, FakePipe] = {}
        self.processes: dict[int, FakeProcess] = {}
        self.descriptors: dict[int, tuple[Any, SecurityDescriptor]] = {}
        self.pending: list[PendingIo] = []
        self.accounts: dict[str, tuple[str, int, str]] = {}
        for name, sid, use, domain in (
            ("Administrators", ADMINISTRATORS, SID_TYPE_ALIAS, "BUILTIN"),
            ("Users", USERS, SID_TYPE_ALIAS, "BUILTIN"),
            ("Network Configuration Operators", NETWORK_CONFIGURATION_OPERATORS, SID_TYPE_ALIAS, "BUILTIN"),
            ("Everyone", EVERYONE, SID_TYPE_WELL_KNOWN_GROUP, ""),
            ("m6t", OPERATORS, SID_TYPE_ALIAS, MACHINE),
            ("alice", f"{MACHINE_SID}-1001", SID_TYPE_USER, MACHINE),
        ):
            self.add_account(name, sid, use, domain)
        self.kernel32 = FakePipeKernel32(self)
        self.advapi32 = FakeAdvapi32(self)
        self.helper = self.spawn("m6t-helper.exe", system_token())
        """The service, as LocalSystem: who calls unless a test says otherwise."""

    # -------------------------------------------------------------------------------------- what tests use

    def api(self) -> PipeApi:
        return PipeApi(self.kernel32, self.advapi32, self.get_last_error, lambda code: f"emulated message {code}")

    def transport(self) -> NamedPipeTransport:
        return NamedPipeTransport(NamedPipes(self.api()), EmulatedProactor(self))

    def add_account(self, name: str, sid: str, use: int, domain: str) -> None:
        self.accounts[name.casefold()] = (sid, use, domain)
        if domain:
            self.accounts[f"{domain}\\{name}".casefold()] = (sid, use, domain)

    def spawn(self, name: str, token: FakeToken, *, pid: int | None = None, age: float = 60.0) -> FakeProcess:
        """A process started ``age`` seconds ago (``pid`` reuses a free id)."""
        with self.lock:
            if pid is None:
                self._next_pid += 4
                pid = self._next_pid
            assert pid not in self.processes, f"process id {pid} is in use"
            process = FakeProcess(pid, name, token, filetime_now(-age))
            self.processes[pid] = process
            return process

    def exit(self, process: FakeProcess) -> None:
        with self.lock:
            self.processes.pop(process.pid, None)

    @contextlib.contextmanager
    def running_as(self, process: FakeProcess) -> Iterator[FakeProcess]:
        """Calls made in this context (threads started from it, tasks created in it) come from ``process``."""
        token = _CALLER.set(process)
        try:
            yield process
        finally:
            _CALLER.reset(token)

    async def in_thread(self, process: FakeProcess, call: Callable[[], T]) -> T:
        """``call`` on a worker thread, as ``process`` (the CLI's blocking client runs so)."""
        with self.running_as(process):
            return await asyncio.to_thread(call)

    def pipe(self, name: str) -> FakePipe | None:
        with self.lock:
            self.prune()
            return self.pipes.get(name.casefold())

    def answered(self, function: str, code: int) -> bool:
        with self.lock:
            return (function, code) in self.answers

    def assert_clean(self, *, timeout: float = 5.0) -> None:
        """No violation recorded, nothing pending, every handle closed and descriptor freed (waiting a little
        for transports closing on another loop)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                self.prune()
                leftovers = list(self.handles)
                if (not leftovers and not self.pending and not self.pipes) or time.monotonic() > deadline:
                    break
                self.cond.wait(0.05)
            assert self.violations == [], self.violations
            assert self.pending == [], self.pending
            assert not leftovers, {h: self.handles[h] for h in leftovers}
            assert self.descriptors == {}, "security descriptors not given back with LocalFree"
            assert self.pipes == {}, f"a pipe name outlived its instances: {self.pipes}"

    # -------------------------------------------------------------------------------------- the emulation

    def caller(self) -> FakeProcess:
        return _CALLER.get() or self.helper

    def fail(self, code: int, value: T, *, answered: str | None = None) -> T:
        self.set_last_error(code)
        if answered is not None:
            with self.lock:
                self.answers.append((answered, code))
        return value

    def guard(self, name: str, function: Callable[..., Any], restype: Any) -> Callable[..., Any]:
        """An exception must not unwind through C: record it and fail the call."""
        failure: Any = None if restype in (None, VP) else 0

        def call(*args: Any) -> Any:
            try:
                hook = self.before.get(name)
                if hook is not None:
                    hook()
                return function(*args)
            except Exception as exc:
                self.violation(f"{name} raised {type(exc).__name__}: {exc}")
                return self.invalid_handle if name in ("CreateNamedPipeW", "CreateFileW") else failure

        return call

    def register(self, thing: object) -> int:
        """A new handle for ``thing``."""
        with self.lock:
            handle = self.new_handle()
            self.handles[handle] = thing
            return handle

    def prune(self) -> None:
        """Instances whose server end an asyncio transport closed are gone, and a name with them."""
        with self.lock:
            for key, pipe in list(self.pipes.items()):
                pipe.instances = [
                    i
                    for i in pipe.instances
                    if not (i.adopted and i.server_sock is not None and i.server_sock.fileno() < 0)
                ]
                if not pipe.instances:
                    del self.pipes[key]

    def overlapped_event(self, overlapped: int, what: str, *, manual_reset: bool = False) -> int:
        """The OVERLAPPED's event, reset as the I/O manager does when an operation starts."""
        event = _read_u64(overlapped + OVERLAPPED_EVENT)
        found = self.handles.get(event)
        if not isinstance(found, FakeEvent):
            self.violation(f"{what}: OVERLAPPED.hEvent is not an event")
            return 0
        if manual_reset:
            self.check(found.manual_reset, f"{what}: OVERLAPPED.hEvent must be a manual-reset event")
        found.signaled = False
        return event

    def begin(self, io: PendingIo) -> None:
        _write_u64(io.overlapped + OVERLAPPED_INTERNAL, STATUS_PENDING)
        _write_u64(io.overlapped + OVERLAPPED_INTERNAL_HIGH, 0)
        self.pending.append(io)

    def complete(self, io: PendingIo, status: int, count: int) -> None:
        """What completion does: OVERLAPPED.Internal and InternalHigh written, the event signaled."""
        with self.cond:
            if io.finished:
                return
            io.finished = True
            self.pending.remove(io)
            _write_u64(io.overlapped + OVERLAPPED_INTERNAL_HIGH, count)
            _write_u64(io.overlapped + OVERLAPPED_INTERNAL, status)
            event = self.handles.get(io.event)
            if isinstance(event, FakeEvent):
                event.signaled = True
            self.cond.notify_all()

    def _socket_of(self, end: object) -> socket.socket | None:
        if isinstance(end, ClientEnd):
            return end.sock
        if isinstance(end, ServerEnd):
            return end.instance.server_sock
        return None

    def start_io(
        self, kind: str, handle: int | None, buffer: int | None, length: int, count_ptr: int | None, ov: int | None
    ) -> int:
        """ReadFile / WriteFile on an overlapped pipe handle."""
        function = "ReadFile" if kind == "read" else "WriteFile"
        self.check(count_ptr is None, f"{function}: lpNumberOf… must be NULL with an OVERLAPPED")
        with self.lock:
            end = self.handles.get(handle or 0)
            sock = self._socket_of(end)
            if sock is None:
                return self.fail(ERROR_INVALID_HANDLE if end is None else ERROR_PIPE_NOT_CONNECTED, 0)
            if not ov or not buffer:
                self.violation(f"{function} on an overlapped handle without an OVERLAPPED or a buffer")
                return self.fail(ERROR_INVALID_PARAMETER, 0)
            event = self.overlapped_event(ov, function)
            io = PendingIo(kind, handle or 0, ov, event, buffer, length)
            if kind == "write":
                io.data = ctypes.string_at(buffer, length)
            self.begin(io)
            if self._attempt(io, sock):
                if _read_u64(ov + OVERLAPPED_INTERNAL) == STATUS_SUCCESS:
                    return 1
                code = NTSTATUS_TO_WIN32[_read_u64(ov + OVERLAPPED_INTERNAL)]
                return self.fail(code, 0, answered=function)
        threading.Thread(target=self._run_io, args=(io, sock), daemon=True).start()
        return self.fail(ERROR_IO_PENDING, 0)

    def _attempt(self, io: PendingIo, sock: socket.socket) -> bool:
        """Move bytes once, without blocking; ``True`` once the operation completed (either way)."""
        with self.lock:
            if io.finished:
                return True
            try:
                if io.kind == "read":
                    data = sock.recv(io.length, DONTWAIT)
                    if not data:
                        self.complete(io, STATUS_PIPE_BROKEN, 0)
                        return True
                    ctypes.memmove(io.buffer, data, len(data))
                    self.complete(io, STATUS_SUCCESS, len(data))
                    return True
                io.done += sock.send(io.data[io.done :], DONTWAIT)
            except BlockingIOError:
                return False
            except OSError:
                self.complete(io, STATUS_PIPE_BROKEN if io.kind == "read" else STATUS_PIPE_CLOSING, io.done)
                return True
            if io.done == len(io.data):
                self.complete(io, STATUS_SUCCESS, io.done)
                return True
            return False

    def _run_io(self, io: PendingIo, sock: socket.socket) -> None:
        while not io.finished:
            try:
                if io.kind == "read":
                    select.select([sock], [], [], 0.02)
                else:
                    select.select([], [sock], [], 0.02)
            except (OSError, ValueError):
                time.sleep(0.02)
            self._attempt(io, sock)

    def close(self, handle: int) -> int:
        with self.cond:
            thing = self.handles.pop(handle, None)
            if thing is None:
                self.violation(f"CloseHandle({handle}): not an open handle")
                return self.fail(ERROR_INVALID_HANDLE, 0)
            for io in [io for io in self.pending if io.handle == handle]:
                self.violation(f"CloseHandle({handle}) with a {io.kind} pending: its OVERLAPPED outlives the call")
                self.complete(io, STATUS_CANCELLED, io.done)
            if isinstance(thing, ServerEnd):
                instance = thing.instance
                if instance.server_sock is not None:
                    instance.server_sock.close()
                with contextlib.suppress(ValueError):
                    instance.pipe.instances.remove(instance)
                if not instance.pipe.instances:
                    self.pipes.pop(instance.pipe.name.casefold(), None)
            elif isinstance(thing, ClientEnd):
                thing.sock.close()
                if thing.instance.state == "connected":
                    thing.instance.state = "closing"
            self.cond.notify_all()
            return 1

    def adopt(self, handle: int) -> socket.socket:
        """A connected end handed to an asyncio transport: its socket now belongs to the transport."""
        with self.lock:
            end = self.handles.pop(handle, None)
            if isinstance(end, ServerEnd):
                self.check(end.instance.state == "connected", "a pipe instance no client connected to was adopted")
                end.instance.adopted = True
                sock = end.instance.server_sock
            elif isinstance(end, ClientEnd):
                sock = end.sock
            else:
                raise AssertionError(f"{handle} is not a pipe handle")
            assert sock is not None
            self.check(not any(io.handle == handle for io in self.pending), "adopted with I/O pending")
            return sock

    def wait_event(self, event: int, stop: threading.Event) -> bool:
        with self.cond:
            while not stop.is_set():
                found = self.handles.get(event)
                if not isinstance(found, FakeEvent):
                    return False
                if found.signaled:
                    return True
                self.cond.wait(0.05)
            return False

    def poke(self) -> None:
        with self.cond:
            self.cond.notify_all()


def run(scenario: Callable[[], Awaitable[T]], seconds: float = 30.0) -> T:
    """An asyncio scenario on a fresh loop, bounded in time."""

    async def bounded() -> T:
        return await asyncio.wait_for(scenario(), seconds)

    return asyncio.run(bounded())


class EmulatedProactor:
    """The loop side (``PipeLoop``): an event waited on by its own thread, as RegisterWaitForSingleObject's
    pool does, then handed to the loop; asyncio streams over the connection's socket."""

    def __init__(self, host: PipeWindows) -> None:
        self.host = host

    def wait_for_event(self, event: int) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        stop = threading.Event()

        def settle() -> None:
            if not future.done():
                future.set_result(True)

        def wait() -> None:
            if self.host.wait_event(event, stop):
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    loop.call_soon_threadsafe(settle)

        def stop_waiting(_: asyncio.Future[Any]) -> None:
            stop.set()
            self.host.poke()

        future.add_done_callback(stop_waiting)
        threading.Thread(target=wait, daemon=True).start()
        return future

    async def open_streams(self, pipe: int, limit: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        sock = self.host.adopt(pipe)
        try:
            return await asyncio.open_connection(sock=sock, limit=limit)
        except BaseException:
            sock.close()
            raise
