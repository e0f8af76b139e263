"""An emulated Service Control Manager: advapi32's service-side calls, and the SCM's side of one service.

Written from Microsoft's documentation, independently of :mod:`m6t.platform.windows.service`, on the shared
export machinery (:mod:`m6t.lab.emulation.windows_abi`): each export is a real C function pointer with the
documented prototype, structures are read as raw memory at their documented offsets.

What it holds the service to (the quotes are Microsoft's):

* StartServiceCtrlDispatcherW: "If StartServiceCtrlDispatcher succeeds, it connects the calling thread to
  the service control manager and does not return until all running services in the process have entered
  the SERVICE_STOPPED state."  Run from a console instead, it fails with
  ERROR_FAILED_SERVICE_CONTROLLER_CONNECT.  The table ends with an entry of NULL members; for an
  own-process service the name "is ignored, but cannot be NULL".
* ServiceMain runs on a new thread; its first argument vector entry "is the name of the service".
* The control handler runs on the dispatcher's thread (the one blocked in StartServiceCtrlDispatcherW),
  one control at a time: the SCM "waits for the handler function to return before sending additional
  control codes", and "The control handler must return within 30 seconds, or the SCM returns
  ERROR_SERVICE_REQUEST_TIMEOUT" (recorded as a violation here, as is any handler slower than
  ``handler_budget_s``, which the tests shorten).
* ControlService refuses a control with ERROR_SERVICE_CANNOT_ACCEPT_CTRL when "the state of the service is
  SERVICE_STOPPED, SERVICE_START_PENDING, or SERVICE_STOP_PENDING", and one the service did not list in
  dwControlsAccepted with ERROR_INVALID_SERVICE_CONTROL; "By default, all services accept the
  SERVICE_CONTROL_INTERROGATE value".
* SERVICE_STATUS: dwWaitHint is "The estimated time required for a pending start, stop ... operation ...
  Before the specified amount of time has elapsed, the service should make its next call to the
  SetServiceStatus function with either an incremented dwCheckPoint value or a change in dwCurrentState.
  If the amount of time specified by dwWaitHint passes, and dwCheckPoint has not been incremented or
  dwCurrentState has not changed, the service control manager ... can assume that an error has occurred"
  (a violation here).  dwCheckPoint "should be zero when the service does not have a start, stop, pause,
  or continue operation pending" (a violation otherwise).
* After a stop it asked for, the SCM expects STOP_PENDING or STOPPED promptly (``stop_answer_s``; Windows
  gives the handler 30 s).
"""

from __future__ import annotations

import ctypes
import queue
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any

from m6t.lab.emulation.windows_abi import DWORD, Dll, Host, export
from m6t.platform.windows.service import ServiceApi

BOOL = ctypes.c_int32
ERROR_INVALID_HANDLE = 6
ERROR_INVALID_DATA = 13
ERROR_INVALID_SERVICE_CONTROL = 1052
ERROR_SERVICE_CANNOT_ACCEPT_CTRL = 1061
ERROR_FAILED_SERVICE_CONTROLLER_CONNECT = 1063
ERROR_SERVICE_ALREADY_RUNNING = 1056

SERVICE_WIN32_OWN_PROCESS = 0x10
STOPPED, START_PENDING, STOP_PENDING, RUNNING = 1, 2, 3, 4
PENDING = (START_PENDING, STOP_PENDING, 5, 6)
CONTROL_STOP, CONTROL_INTERROGATE, CONTROL_SHUTDOWN, CONTROL_POWEREVENT = 1, 4, 5, 0xD
ACCEPT_FOR = {CONTROL_STOP: 0x1, CONTROL_SHUTDOWN: 0x4, CONTROL_POWEREVENT: 0x40}
PBT_APMSUSPEND, PBT_APMRESUMESUSPEND, PBT_APMRESUMEAUTOMATIC = 0x4, 0x7, 0x12
HANDLER_LIMIT_S = 30.0
SERVICE_STATUS_SIZE = 28
TABLE_ENTRY_SIZE = 16
"""SERVICE_TABLE_ENTRYW on x64: LPWSTR lpServiceName; LPSERVICE_MAIN_FUNCTIONW lpServiceProc."""

ServiceMainProto = ctypes.CFUNCTYPE(None, DWORD, ctypes.c_void_p)
HandlerExProto = ctypes.CFUNCTYPE(DWORD, DWORD, DWORD, ctypes.c_void_p, ctypes.c_void_p)


@dataclass(frozen=True)
class StatusReport:
    at: float
    service_type: int
    state: int
    accepted: int
    win32_exit: int
    specific_exit: int
    checkpoint: int
    wait_hint_ms: int
    thread: str


@dataclass(frozen=True)
class HandledControl:
    control: int
    event_type: int
    result: int
    thread: str
    seconds: float


class FakeAdvapi32(Dll):
    def __init__(self, scm: FakeScm) -> None:
        super().__init__(scm)
        self.scm = scm

    @export(BOOL, ctypes.c_void_p)
    def StartServiceCtrlDispatcherW(self, table: int | None) -> int:
        return self.scm.dispatch(table)

    @export(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)
    def RegisterServiceCtrlHandlerExW(self, name: int | None, handler: int | None, context: int | None) -> int:
        return self.scm.register(name, handler, context)

    @export(BOOL, ctypes.c_void_p, ctypes.c_void_p)
    def SetServiceStatus(self, handle: int | None, status: int | None) -> int:
        return self.scm.set_status(handle, status)


class FakeScm(Host):
    """The SCM with one installed own-process service; ``connected=False`` is a console run."""

    def __init__(self, *, connected: bool = True, handler_budget_s: float = 1.0, stop_answer_s: float = 1.0) -> None:
        super().__init__()
        self.connected = connected
        self.handler_budget_s = handler_budget_s
        self.stop_answer_s = stop_answer_s
        self.advapi32 = FakeAdvapi32(self)
        self.statuses: list[StatusReport] = []
        self.handled: list[HandledControl] = []
        self.service_main_args: list[str] = []
        self.changed = threading.Condition(self.lock)
        self._handle: int | None = None
        self._handler: Any = None
        self._context: int | None = None
        self._dispatcher: threading.Thread | None = None
        self._main_thread: threading.Thread | None = None
        self._controls: queue.Queue[tuple[int, int, queue.Queue[int]] | None] = queue.Queue()
        self._stop_asked_at: float | None = None

    def api(self) -> ServiceApi:
        return ServiceApi(advapi32=self.advapi32, get_last_error=self.get_last_error, functype=ctypes.CFUNCTYPE)

    # -- advapi32

    def dispatch(self, table: int | None) -> int:
        if not self.connected:
            self.set_last_error(ERROR_FAILED_SERVICE_CONTROLLER_CONNECT)
            return 0
        if not table:
            self.set_last_error(ERROR_INVALID_DATA)
            return 0
        name_ptr, proc = struct.unpack("<QQ", ctypes.string_at(table, TABLE_ENTRY_SIZE))
        self.check(
            struct.unpack("<QQ", ctypes.string_at(table + TABLE_ENTRY_SIZE, 16)) == (0, 0),
            "no NULL entry ends the table",
        )
        if not name_ptr or not proc:
            self.set_last_error(ERROR_INVALID_DATA)
            return 0
        with self.lock:
            if self._dispatcher is not None:
                self.set_last_error(ERROR_SERVICE_ALREADY_RUNNING)
                return 0
            self._dispatcher = threading.current_thread()
        name = ctypes.wstring_at(name_ptr)
        argv = (ctypes.c_wchar_p * 1)(name)
        service_main = ServiceMainProto(proc)
        self._main_thread = threading.Thread(target=service_main, args=(1, ctypes.addressof(argv)), name="ServiceMain")
        self._main_thread.start()
        while True:
            item = self._controls.get()
            if item is None:
                break
            control, event_type, answer = item
            answer.put(self._call_handler(control, event_type))
        self._main_thread.join(timeout=5)
        self.check(not self._main_thread.is_alive(), "ServiceMain did not return after SERVICE_STOPPED")
        return 1

    def register(self, name: int | None, handler: int | None, context: int | None) -> int:
        with self.lock:
            if self._dispatcher is None or not handler or not name:
                self.set_last_error(ERROR_INVALID_DATA)
                return 0
            self.service_main_args.append(ctypes.wstring_at(name))
            self._handler = HandlerExProto(handler)
            self._context = context
            self._handle = self.new_handle()
            return self._handle

    def set_status(self, handle: int | None, pointer: int | None) -> int:
        with self.lock:
            if handle is None or handle != self._handle:
                self.set_last_error(ERROR_INVALID_HANDLE)
                return 0
            if not pointer:
                self.set_last_error(ERROR_INVALID_DATA)
                return 0
            kind, state, accepted, win32_exit, specific, checkpoint, hint = struct.unpack(
                "<7I", ctypes.string_at(pointer, SERVICE_STATUS_SIZE)
            )
            thread = threading.current_thread().name
            report = StatusReport(
                time.monotonic(), kind, state, accepted, win32_exit, specific, checkpoint, hint, thread
            )
            if report.service_type != SERVICE_WIN32_OWN_PROCESS or not STOPPED <= report.state <= 7:
                self.set_last_error(ERROR_INVALID_DATA)
                return 0
            self._check_progress(report)
            self.statuses.append(report)
            if report.state == STOPPED:
                self._controls.put(None)  # the dispatcher returns once its (only) service stopped
            self.changed.notify_all()
            return 1

    def _check_progress(self, report: StatusReport) -> None:
        previous = self.statuses[-1] if self.statuses else None
        if report.state not in PENDING:
            self.check(report.checkpoint == 0, f"checkpoint {report.checkpoint} outside a pending state")
            self.check(report.wait_hint_ms == 0 or report.state != STOPPED, "a wait hint on SERVICE_STOPPED")
        else:
            self.check(report.wait_hint_ms > 0, "a pending state without a wait hint")
            if previous is not None and previous.state == report.state:
                self.check(
                    report.checkpoint > previous.checkpoint, f"checkpoint did not advance in state {report.state}"
                )
        if previous is not None and previous.state in PENDING:
            late = report.at - previous.at > previous.wait_hint_ms / 1000
            self.check(
                not late, f"no progress within the wait hint of state {previous.state} ({previous.wait_hint_ms} ms)"
            )
        if report.state in (STOP_PENDING, STOPPED):
            self._stop_asked_at = None

    # -- the SCM's side

    def _call_handler(self, control: int, event_type: int) -> int:
        started = time.monotonic()
        result = int(self._handler(control, event_type, None, self._context))
        seconds = time.monotonic() - started
        self.check(
            seconds < min(self.handler_budget_s, HANDLER_LIMIT_S), f"handler took {seconds:.2f} s for control {control}"
        )
        with self.lock:
            self.handled.append(HandledControl(control, event_type, result, threading.current_thread().name, seconds))
        return result

    @property
    def state(self) -> int:
        with self.lock:
            return self.statuses[-1].state if self.statuses else STOPPED

    def control(self, control: int, event_type: int = 0) -> int:
        """ControlService (or, for shutdown and power events, the system) sending a control; the handler's
        answer, or the SCM's refusal."""
        with self.lock:
            current = self.statuses[-1] if self.statuses else None
            if current is None or current.state in (STOPPED, START_PENDING, STOP_PENDING):
                return ERROR_SERVICE_CANNOT_ACCEPT_CTRL
            if control != CONTROL_INTERROGATE and not current.accepted & ACCEPT_FOR.get(control, 0):
                return ERROR_INVALID_SERVICE_CONTROL
            if control in (CONTROL_STOP, CONTROL_SHUTDOWN):
                self._stop_asked_at = time.monotonic()
        answer: queue.Queue[int] = queue.Queue()
        self._controls.put((control, event_type, answer))
        result = answer.get(timeout=HANDLER_LIMIT_S)
        with self.lock:
            if self._stop_asked_at is not None:
                self.changed.wait_for(lambda: self._stop_asked_at is None, timeout=self.stop_answer_s)
                self.check(self._stop_asked_at is None, "no STOP_PENDING or STOPPED after a stop")
        return result

    def wait_for(self, state: int, timeout: float = 10.0) -> StatusReport:
        with self.lock:
            found = self.changed.wait_for(lambda: any(s.state == state for s in self.statuses), timeout=timeout)
            assert found, f"the service never reported state {state}: {self.statuses}"
            return next(s for s in self.statuses if s.state == state)

    def states(self) -> list[int]:
        """The states reported, consecutive repeats (checkpoints) folded."""
        with self.lock:
            folded: list[int] = []
            for report in self.statuses:
                if not folded or folded[-1] != report.state:
                    folded.append(report.state)
            return folded
