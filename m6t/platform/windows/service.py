"""The helper as the Windows service ``m6t-helper``: the Service Control Manager's dispatcher, the control
handler, and the state reported as it changes.

Why ctypes and not pywin32 (``win32serviceutil``/``servicemanager``, the ecosystem's convention): three
advapi32 calls and two callbacks are all a service needs; pywin32 would add a C extension with its own
DLLs (pythoncomXY, pywintypesXY) that PyInstaller must find and place next to a service executable, for
a dispatcher whose threads and hand-over we would still have to get right ourselves.  And this way the
emulated SCM in the tests (``tests/platform/windows_scm_fakes.py``) drives the very code that runs on
Windows, through real C function pointers, instead of a stand-in for pywin32.

What the SCM expects, from Microsoft's documentation (learn.microsoft.com, "Service Control Handler
Function", HandlerEx, SERVICE_STATUS, StartServiceCtrlDispatcherW):

* The process's main thread calls ``StartServiceCtrlDispatcherW``, which "does not return until all running
  services in the process have entered the SERVICE_STOPPED state"; the SCM starts ``ServiceMain`` on a
  thread of its own, and calls the control handler on the dispatcher's (main) thread.  So the asyncio loop
  (the Proactor loop, the policy's default on Windows) runs on the ``ServiceMain`` thread, and the handler
  only marshals into it with ``call_soon_threadsafe`` and returns at once: "The control handler must
  return within 30 seconds, or the SCM returns ERROR_SERVICE_REQUEST_TIMEOUT."
* While a start or stop is pending, ``dwWaitHint`` is "the estimated time required for a pending start,
  stop ... operation ... Before the specified amount of time has elapsed, the service should make its
  next call to the SetServiceStatus function with either an incremented dwCheckPoint value or a change in
  dwCurrentState"; otherwise the SCM assumes the service hung.  The checkpoints are advanced *from the
  loop* (a timer thread asks the loop to do it), so a loop that is really stuck stops advancing them and
  the SCM's verdict stays true.  ``dwCheckPoint`` "should be zero when the service does not have a start,
  stop, pause, or continue operation pending".
* Controls are accepted only once running (the SCM refuses them in the pending states anyway):
  ``SERVICE_CONTROL_STOP`` and ``SERVICE_CONTROL_SHUTDOWN`` report STOP_PENDING and set the helper's stop
  event; ``SERVICE_CONTROL_POWEREVENT`` with ``PBT_APMRESUMEAUTOMATIC`` ("delivered every time the system
  resumes") or ``PBT_APMRESUMESUSPEND`` (the user is back) is a resume; ``SERVICE_CONTROL_INTERROGATE``
  is answered with NO_ERROR ("the SCM is aware of the current state of the service").
* A start-up failure ends in SERVICE_STOPPED with ``dwWin32ExitCode = ERROR_SERVICE_SPECIFIC_ERROR`` and
  our code in ``dwServiceSpecificExitCode``, which ``sc query`` shows and the event log records.

Nothing may unwind through the C callbacks: they catch and log everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from m6t.platform.base import PlatformError, ServiceHost, ServiceMain
from m6t.platform.windows.system import bind

log = logging.getLogger("m6t.platform")

SERVICE_NAME = "m6t-helper"

DWORD = ctypes.c_uint32
BOOL = ctypes.c_int32

# winsvc.h, winerror.h, pbt.h
SERVICE_WIN32_OWN_PROCESS = 0x10
SERVICE_STOPPED, SERVICE_START_PENDING, SERVICE_STOP_PENDING, SERVICE_RUNNING = 1, 2, 3, 4
SERVICE_ACCEPT_STOP, SERVICE_ACCEPT_SHUTDOWN, SERVICE_ACCEPT_POWEREVENT = 0x1, 0x4, 0x40
SERVICE_CONTROL_STOP, SERVICE_CONTROL_INTERROGATE, SERVICE_CONTROL_SHUTDOWN = 1, 4, 5
SERVICE_CONTROL_POWEREVENT = 0xD
PBT_APMRESUMESUSPEND, PBT_APMRESUMEAUTOMATIC = 0x7, 0x12
NO_ERROR = 0
ERROR_CALL_NOT_IMPLEMENTED = 120
ERROR_SERVICE_SPECIFIC_ERROR = 1066
ERROR_FAILED_SERVICE_CONTROLLER_CONNECT = 1063

ACCEPTED_WHILE_RUNNING = SERVICE_ACCEPT_STOP | SERVICE_ACCEPT_SHUTDOWN | SERVICE_ACCEPT_POWEREVENT
START_WAIT_HINT_MS = 30_000
"""Start-up opens Wintun (driver installation on the first run), recovers a dead run's leftovers and loads
the configuration: generous, since the checkpoints prove progress meanwhile."""
STOP_WAIT_HINT_MS = 15_000
"""The helper's own shutdown bound (SHUTDOWN_TIMEOUT_S, 10 s) and then some."""
EXIT_CRASHED = 2
"""Service-specific exit code when the helper's coroutine raised instead of returning."""


class SERVICE_STATUS(ctypes.Structure):
    _fields_ = [
        ("dwServiceType", DWORD),
        ("dwCurrentState", DWORD),
        ("dwControlsAccepted", DWORD),
        ("dwWin32ExitCode", DWORD),
        ("dwServiceSpecificExitCode", DWORD),
        ("dwCheckPoint", DWORD),
        ("dwWaitHint", DWORD),
    ]


class SERVICE_TABLE_ENTRYW(ctypes.Structure):
    _fields_ = [("lpServiceName", ctypes.c_wchar_p), ("lpServiceProc", ctypes.c_void_p)]


@dataclass(frozen=True)
class ServiceApi:
    """advapi32's service functions, the last error and the callback prototype factory (``WINFUNCTYPE``)."""

    advapi32: object
    get_last_error: Callable[[], int]
    functype: Callable[..., Any]


def native_service_api() -> ServiceApi:
    """The real advapi32, from System32 only; only on Windows."""
    if sys.platform != "win32":
        raise PlatformError(f"the Windows service host cannot run on {sys.platform}")
    api: Any = ctypes
    advapi32 = api.WinDLL("advapi32.dll", use_last_error=True, winmode=0x800)  # LOAD_LIBRARY_SEARCH_SYSTEM32
    return ServiceApi(advapi32=advapi32, get_last_error=api.get_last_error, functype=api.WINFUNCTYPE)


class WindowsServiceHost(ServiceHost):
    """Runs the helper's coroutine as the own-process service ``name``; see the module's notes."""

    def __init__(
        self,
        api: ServiceApi,
        *,
        name: str = SERVICE_NAME,
        start_wait_hint_ms: int = START_WAIT_HINT_MS,
        stop_wait_hint_ms: int = STOP_WAIT_HINT_MS,
    ) -> None:
        self._api = api
        self._name = name
        self._start_hint = start_wait_hint_ms
        self._stop_hint = stop_wait_hint_ms
        advapi32 = api.advapi32
        self._dispatch = bind(advapi32, "StartServiceCtrlDispatcherW", BOOL, ctypes.POINTER(SERVICE_TABLE_ENTRYW))
        self._register = bind(
            advapi32,
            "RegisterServiceCtrlHandlerExW",
            ctypes.c_void_p,
            ctypes.c_wchar_p,
            ctypes.c_void_p,
            ctypes.c_void_p,
        )
        self._set_status = bind(advapi32, "SetServiceStatus", BOOL, ctypes.c_void_p, ctypes.POINTER(SERVICE_STATUS))
        # Kept referenced for as long as the SCM may call them.
        self._main_pointer = api.functype(None, DWORD, ctypes.c_void_p)(self._service_main)
        self._handler_pointer = api.functype(DWORD, DWORD, DWORD, ctypes.c_void_p, ctypes.c_void_p)(self._handler)
        self._lock = threading.Lock()
        self._status = SERVICE_STATUS(dwServiceType=SERVICE_WIN32_OWN_PROCESS, dwCurrentState=SERVICE_STOPPED)
        self._status_handle: int | None = None
        self._pending_generation = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._main: ServiceMain | None = None
        self._on_resume: Callable[[], None] = lambda: None
        self._exit_code = 0

    # ------------------------------------------------------------------ the main thread

    def run(self, main: ServiceMain, on_resume: Callable[[], None]) -> int:
        """Hand the main thread to the SCM's dispatcher until the service stopped; its exit status."""
        self._main, self._on_resume = main, on_resume
        table = (SERVICE_TABLE_ENTRYW * 2)()
        table[0].lpServiceName = self._name
        table[0].lpServiceProc = ctypes.cast(self._main_pointer, ctypes.c_void_p).value
        if not self._dispatch(table):
            error = self._api.get_last_error()
            if error == ERROR_FAILED_SERVICE_CONTROLLER_CONNECT:
                raise PlatformError(
                    "--service: not started by the Service Control Manager",
                    hint=f"start the service (sc start {self._name}), or run m6t-helper --foreground in a console",
                )
            raise PlatformError(f"StartServiceCtrlDispatcherW failed (Windows error {error})")
        return self._exit_code

    # ------------------------------------------------------------------ ServiceMain's thread

    def _service_main(self, argc: int, argv: int | None) -> None:
        try:
            handle = self._register(self._name, ctypes.cast(self._handler_pointer, ctypes.c_void_p), None)
            if not handle:
                # Without a status handle nothing can be reported; the SCM times the start out.
                log.error("RegisterServiceCtrlHandlerExW failed (Windows error %d)", self._api.get_last_error())
                self._exit_code = EXIT_CRASHED
                return
            self._status_handle = handle
            self._pending(SERVICE_START_PENDING, self._start_hint)
            code = EXIT_CRASHED
            try:
                with asyncio.Runner() as runner:
                    code = runner.run(self._body())
            except BaseException:
                log.exception("the helper stopped on an unexpected error")
            self._exit_code = code
            self._settle(SERVICE_STOPPED, 0, exit_code=code)
        except BaseException:
            log.exception("ServiceMain failed")

    async def _body(self) -> int:
        assert self._main is not None
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            return await self._main(self._ready, self._stop)
        finally:
            self._loop = None

    def _ready(self) -> None:
        self._settle(SERVICE_RUNNING, ACCEPTED_WHILE_RUNNING)

    # ------------------------------------------------------------------ the dispatcher's thread

    def _handler(self, control: int, event_type: int, event_data: int | None, context: int | None) -> int:
        try:
            if control == SERVICE_CONTROL_INTERROGATE:
                return NO_ERROR
            if control in (SERVICE_CONTROL_STOP, SERVICE_CONTROL_SHUTDOWN):
                what = "stop" if control == SERVICE_CONTROL_STOP else "stop (the system shuts down)"
                log.info("the Service Control Manager asks the helper to %s", what)
                self._pending(SERVICE_STOP_PENDING, self._stop_hint)
                stop = self._stop
                if stop is not None:
                    self._post(stop.set)
                return NO_ERROR
            if control == SERVICE_CONTROL_POWEREVENT:
                if event_type in (PBT_APMRESUMEAUTOMATIC, PBT_APMRESUMESUSPEND):
                    log.info("the system resumed from sleep (power event %#x)", event_type)
                    self._post(self._on_resume)
                return NO_ERROR
            return ERROR_CALL_NOT_IMPLEMENTED
        except BaseException:
            log.exception("the service control handler failed")
            return NO_ERROR

    def _post(self, callback: Callable[[], None]) -> None:
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: the service is on its way out
            loop.call_soon_threadsafe(callback)

    # ------------------------------------------------------------------ the status

    def _report(self) -> None:
        """Report the status as it stands; called with the lock held."""
        if self._status_handle is not None and not self._set_status(self._status_handle, ctypes.byref(self._status)):
            log.warning("SetServiceStatus failed (Windows error %d)", self._api.get_last_error())

    def _pending(self, state: int, wait_hint_ms: int) -> None:
        """Enter a pending state, then advance its checkpoint until it is left."""
        with self._lock:
            status = self._status
            if state == SERVICE_STOP_PENDING and status.dwCurrentState in (SERVICE_STOP_PENDING, SERVICE_STOPPED):
                return  # a shutdown after a stop, or nothing left to stop
            self._pending_generation += 1
            generation = self._pending_generation
            status.dwCurrentState, status.dwControlsAccepted = state, 0
            status.dwCheckPoint, status.dwWaitHint = 1, wait_hint_ms
            self._report()
        pacer = threading.Thread(target=self._pace, args=(generation, wait_hint_ms), name="m6t-scm-checkpoints")
        pacer.daemon = True
        pacer.start()

    def _pace(self, generation: int, wait_hint_ms: int) -> None:
        """Ask for a checkpoint three times per wait hint while the state is pending, and stop once it is left."""
        while True:
            time.sleep(wait_hint_ms / 3000)
            with self._lock:
                if generation != self._pending_generation:
                    return
            loop = self._loop
            try:
                if loop is None:
                    raise RuntimeError  # between the loop's runs (before its start, after its end)
                loop.call_soon_threadsafe(self._checkpoint, generation)
            except RuntimeError:
                self._checkpoint(generation)

    def _checkpoint(self, generation: int) -> None:
        with self._lock:
            if generation == self._pending_generation:
                self._status.dwCheckPoint += 1
                self._report()

    def _settle(self, state: int, accepted: int, *, exit_code: int = 0) -> None:
        with self._lock:
            self._pending_generation += 1
            status = self._status
            status.dwCurrentState, status.dwControlsAccepted = state, accepted
            status.dwCheckPoint = status.dwWaitHint = 0
            status.dwWin32ExitCode = ERROR_SERVICE_SPECIFIC_ERROR if exit_code else NO_ERROR
            status.dwServiceSpecificExitCode = exit_code
            self._report()
