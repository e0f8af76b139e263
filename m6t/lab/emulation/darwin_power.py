"""An emulated macOS power manager: IOKit's root power domain and CoreFoundation's run loops, for
:mod:`m6t.platform.darwin.power`, in the unit tests and in the lab's emulated macOS.

:class:`EmulatedPower` hands out a :class:`~m6t.platform.darwin.power.PowerApi` whose two "frameworks" export
real C function pointers with the documented prototypes (``Dll``/``export`` from
:mod:`m6t.lab.emulation.windows_abi`), so every call crosses ``ctypes`` as it would on a Mac, and the callback
the code registers is called back through its C pointer.  What it follows:

* **IORegisterForSystemPower** (IOKit/pwr_mgt/IOPMLib.h) writes the notification port and the notifier and
  returns a session, or IO_OBJECT_NULL when the root domain cannot be reached (:attr:`EmulatedPower.available`).
  The port delivers nothing until its run loop source is in a running run loop ("The caller should also enable
  IONotificationPortRef by calling IONotificationPortGetRunLoopSource"): messages wait in the port, as in a
  Mach port's queue.
* **Acknowledgements**: "Callers MUST acknowledge" kIOMessageSystemWillSleep and kIOMessageCanSystemSleep with
  IOAllowPowerChange and the notification ID that came with the message; otherwise "the sleep will continue
  anyway after a 30 second timeout" (:meth:`EmulatedPower.sleep` reports who did not answer in time).
  Acknowledging any other message is a violation ("The caller should not call IOAllowPowerChange in response
  to any messages except for these two"), as is an ID nobody was sent.
* **The wake**: kIOMessageSystemWillPowerOn "at early wakeup time", then kIOMessageSystemHasPoweredOn "at
  wakeup completion time"; an idle sleep asks first (kIOMessageCanSystemSleep), and a veto
  (IOCancelPowerChange) turns it into kIOMessageSystemWillNotSleep.
* **Tearing down** "in this order": IODeregisterForSystemPower with the notifier, then IONotificationPortDestroy;
  IOServiceClose "after calling IODeregisterForSystemPower".  Another order, a second release, or anything left
  registered at the end is a violation (:meth:`EmulatedPower.assert_clean`).
* **Run loops** (CFRunLoop.h): one per thread (CFRunLoopGetCurrent); CFRunLoopRunInMode returns
  kCFRunLoopRunFinished at once when the mode has no source, kCFRunLoopRunStopped when CFRunLoopStop was called
  during the activation, kCFRunLoopRunTimedOut after ``seconds``.  Callbacks run on the run loop's own thread,
  inside CFRunLoopRunInMode.  The surprise kept: CFRunLoopStop marks a run loop stopped only while it runs a
  mode (CFRunLoop.c: ``if (rl->_currentMode) { __CFRunLoopSetStopped(rl); ...}``), so a stop between two
  activations is lost.
* **Idle means idle**: :attr:`EmulatedPower.activations` counts run loop activations, so a test can tell a
  thread that sleeps in its run loop from one that polls.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from m6t.lab.emulation.windows_abi import Dll, export, guarded
from m6t.platform.darwin.power import PowerApi

# Restated from the headers on purpose: the emulation must not trust the code under test's numbers.
SYS_IOKIT = 0xE0000000
CAN_SYSTEM_SLEEP = SYS_IOKIT | 0x270
SYSTEM_WILL_SLEEP = SYS_IOKIT | 0x280
SYSTEM_WILL_NOT_SLEEP = SYS_IOKIT | 0x290
SYSTEM_HAS_POWERED_ON = SYS_IOKIT | 0x300
SYSTEM_WILL_POWER_ON = SYS_IOKIT | 0x320
kIOReturnSuccess = 0
kIOReturnBadArgument = 0xE00002C2 - (1 << 32)
"""An IOReturn is a signed 32-bit kern_return_t."""
RUN_FINISHED, RUN_STOPPED, RUN_TIMED_OUT, RUN_HANDLED_SOURCE = 1, 2, 3, 4
ROOT_DOMAIN_SERVICE = 0x1D03
ACK_TIMEOUT_S = 30.0
"""How long the system waits for acknowledgements before it sleeps anyway."""

_U32 = ctypes.c_uint32
_VP = ctypes.c_void_p


@dataclass
class _RunLoop:
    handle: int
    thread: int
    sources: dict[int, set[int]] = field(default_factory=dict)
    """Mode → the sources it holds."""
    running_mode: int | None = None
    stopped: bool = False


@dataclass
class _Registration:
    session: int
    port: int
    source: int
    notifier: int
    refcon: int | None
    callback: Callable[[int | None, int, int, int | None], None]
    queue: list[tuple[int, int]] = field(default_factory=list)
    """(message, notification ID) not delivered yet."""
    deregistered: bool = False
    closed: bool = False
    destroyed: bool = False


@dataclass
class _Question:
    message: int
    notification: int
    waiting: set[int]
    """Sessions that must still answer."""
    vetoed: bool = False


class EmulatedPower:
    """The power manager of one emulated Mac (see the module docstring)."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.violations: list[str] = []
        self.available = True
        """``False``: IORegisterForSystemPower fails (IO_OBJECT_NULL), as when the root domain is unreachable."""
        self.activations = 0
        self.delivered: list[tuple[int, int]] = []
        """(session, message) in the order the callbacks ran."""
        self.acknowledged: list[tuple[int, int]] = []
        """(session, message) per IOAllowPowerChange accepted."""
        self.callback_threads: set[int] = set()
        self._handles = itertools.count(0x7F0000001000, 0x40)
        self._ids = itertools.count(0x5EED)
        self._run_loops: dict[int, _RunLoop] = {}
        self._by_thread: dict[int, int] = {}
        self._registrations: dict[int, _Registration] = {}
        self._questions: dict[int, _Question] = {}
        self.default_mode = next(self._handles)
        self.api = PowerApi(iokit=_IOKit(self), corefoundation=_CoreFoundation(self), default_mode=self.default_mode)

    # ------------------------------------------------------------------------------------ the contract

    def violation(self, message: str) -> None:
        with self.lock:
            self.violations.append(message)

    def guard(self, name: str, function: Callable[..., Any], restype: Any) -> Callable[..., Any]:
        return guarded(name, function, restype, self.violation)

    def assert_clean(self) -> None:
        with self.lock:
            live = [r.session for r in self._registrations.values() if not (r.deregistered and r.destroyed)]
            unclosed = [r.session for r in self._registrations.values() if not r.closed]
            assert not self.violations, self.violations
            assert not live, f"still registered for power notifications: {live}"
            assert not unclosed, f"sessions never closed with IOServiceClose: {unclosed}"

    @property
    def registered(self) -> int:
        with self.lock:
            return sum(1 for r in self._registrations.values() if not r.deregistered)

    def wait_registered(self, count: int = 1, timeout: float = 5.0) -> bool:
        with self.lock:
            return self.lock.wait_for(lambda: self.registered >= count and self._listening(), timeout)

    def _listening(self) -> bool:
        """Some run loop runs a mode holding a registration's source."""
        sources = {r.source for r in self._registrations.values() if not r.deregistered}
        return any(
            loop.running_mode is not None and loop.sources.get(loop.running_mode, set()) & sources
            for loop in self._run_loops.values()
        )

    # ------------------------------------------------------------------------------- what the Mac does

    def sleep(self, *, idle: bool = False, timeout: float = ACK_TIMEOUT_S) -> set[int]:
        """The system goes to sleep (an idle sleep asks first and may be vetoed); the sessions that did not
        acknowledge within ``timeout`` (the system sleeps anyway).  A vetoed idle sleep returns ``{-1}``."""
        if idle:
            late = self._ask(CAN_SYSTEM_SLEEP, timeout)
            if late == {-1}:
                self._tell(SYSTEM_WILL_NOT_SLEEP)
                return late
        return self._ask(SYSTEM_WILL_SLEEP, timeout)

    def wake(self) -> None:
        self._tell(SYSTEM_WILL_POWER_ON)
        self._tell(SYSTEM_HAS_POWERED_ON)

    def _targets(self) -> list[_Registration]:
        return [r for r in self._registrations.values() if not r.deregistered]

    def _tell(self, message: int) -> None:
        with self.lock:
            for registration in self._targets():
                registration.queue.append((message, 0))
            self.lock.notify_all()

    def _ask(self, message: int, timeout: float) -> set[int]:
        with self.lock:
            notification = next(self._ids)
            question = _Question(message, notification, {r.session for r in self._targets()})
            self._questions[notification] = question
            for registration in self._targets():
                registration.queue.append((message, notification))
            self.lock.notify_all()
            self.lock.wait_for(lambda: not question.waiting or question.vetoed, timeout)
            del self._questions[notification]
            return {-1} if question.vetoed else set(question.waiting)

    # ------------------------------------------------------------------------------------- IOKit's side

    def register(self, refcon: int | None, port_out: int | None, callback: int | None, notifier_out: int | None) -> int:
        if not port_out or not notifier_out or not callback:
            self.violation("IORegisterForSystemPower needs thePortRef, a callback and notifier")
            return 0
        if not self.available:
            return 0
        function = ctypes.CFUNCTYPE(None, _VP, _U32, _U32, _VP)(callback)
        with self.lock:
            registration = _Registration(
                session=next(self._handles) & 0xFFFF_FFF0 | 0x3,
                port=next(self._handles),
                source=next(self._handles),
                notifier=next(self._handles) & 0xFFFF_FFF0 | 0x7,
                refcon=refcon,
                callback=function,
            )
            self._registrations[registration.session] = registration
        _VP.from_address(port_out).value = registration.port
        _U32.from_address(notifier_out).value = registration.notifier
        return registration.session

    def _by(self, what: str, key: Callable[[_Registration], int], value: int | None) -> _Registration | None:
        with self.lock:
            for registration in self._registrations.values():
                if key(registration) == value:
                    return registration
        self.violation(f"{what}: {value!r} is not one IORegisterForSystemPower returned")
        return None

    def port_source(self, port: int | None) -> int | None:
        registration = self._by("IONotificationPortGetRunLoopSource", lambda r: r.port, port)
        if registration is None or registration.destroyed:
            return None
        return registration.source

    def deregister(self, notifier_in: int | None) -> int:
        notifier = _U32.from_address(notifier_in).value if notifier_in else None
        registration = self._by("IODeregisterForSystemPower", lambda r: r.notifier, notifier)
        if registration is None:
            return kIOReturnBadArgument
        with self.lock:
            if registration.deregistered:
                self.violation("IODeregisterForSystemPower called twice")
                return kIOReturnBadArgument
            registration.deregistered = True
            for question in self._questions.values():
                question.waiting.discard(registration.session)
            self.lock.notify_all()
        return kIOReturnSuccess

    def service_close(self, session: int) -> int:
        registration = self._by("IOServiceClose", lambda r: r.session, session)
        if registration is None:
            return kIOReturnBadArgument
        with self.lock:
            if not registration.deregistered:
                self.violation("IOServiceClose before IODeregisterForSystemPower")
            if registration.closed:
                self.violation("IOServiceClose called twice")
            registration.closed = True
        return kIOReturnSuccess

    def port_destroy(self, port: int | None) -> None:
        registration = self._by("IONotificationPortDestroy", lambda r: r.port, port)
        if registration is None:
            return
        with self.lock:
            if not registration.deregistered:
                self.violation("IONotificationPortDestroy before IODeregisterForSystemPower")
            if registration.destroyed:
                self.violation("IONotificationPortDestroy called twice")
            if any(
                registration.source in sources for loop in self._run_loops.values() for sources in loop.sources.values()
            ):
                self.violation("IONotificationPortDestroy while its source is still in a run loop")
            registration.destroyed = True

    def answer(self, session: int, notification: int, *, allow: bool) -> int:
        what = "IOAllowPowerChange" if allow else "IOCancelPowerChange"
        with self.lock:
            registration = self._registrations.get(session)
            question = self._questions.get(notification)
            if registration is None or registration.closed:
                self.violation(f"{what} on session {session:#x}, which is not open")
                return kIOReturnBadArgument
            if question is None or session not in question.waiting:
                self.violation(f"{what} with notification ID {notification:#x}, which asked this session nothing")
                return kIOReturnBadArgument
            if not allow and question.message != CAN_SYSTEM_SLEEP:
                self.violation(f"{what} answers kIOMessageCanSystemSleep only")
            question.waiting.discard(session)
            question.vetoed |= not allow
            self.acknowledged.append((session, question.message))
            self.lock.notify_all()
        return kIOReturnSuccess

    # -------------------------------------------------------------------------------- CoreFoundation's side

    def current_run_loop(self) -> int:
        thread = threading.get_ident()
        with self.lock:
            handle = self._by_thread.get(thread)
            if handle is None:
                handle = next(self._handles)
                self._by_thread[thread] = handle
                self._run_loops[handle] = _RunLoop(handle, thread)
            return handle

    def _run_loop(self, what: str, handle: int | None) -> _RunLoop | None:
        with self.lock:
            found = self._run_loops.get(handle or 0)
        if found is None:
            self.violation(f"{what}: {handle!r} is not a run loop")
        return found

    def add_source(self, handle: int | None, source: int | None, mode: int | None) -> None:
        loop = self._run_loop("CFRunLoopAddSource", handle)
        if loop is None or not source or not mode:
            return
        with self.lock:
            loop.sources.setdefault(mode, set()).add(source)
            self.lock.notify_all()

    def remove_source(self, handle: int | None, source: int | None, mode: int | None) -> None:
        loop = self._run_loop("CFRunLoopRemoveSource", handle)
        if loop is None or not mode:
            return
        with self.lock:
            loop.sources.get(mode, set()).discard(source or 0)

    def run_in_mode(self, mode: int | None, seconds: float, return_after_source: int) -> int:
        handle = self.current_run_loop()
        deadline = time.monotonic() + max(0.0, min(seconds, 1.0e6))
        with self.lock:
            loop = self._run_loops[handle]
            self.activations += 1
            if not mode or not loop.sources.get(mode):
                return RUN_FINISHED
            loop.running_mode = mode
            self.lock.notify_all()
            try:
                while True:
                    if loop.stopped:
                        loop.stopped = False
                        return RUN_STOPPED
                    ready = self._ready(loop, mode)
                    if ready is not None:
                        registration, (message, notification) = ready
                        self.lock.release()
                        try:
                            self._deliver(registration, message, notification)
                        finally:
                            self.lock.acquire()
                        if return_after_source:
                            return RUN_HANDLED_SOURCE
                        continue
                    if not loop.sources.get(mode):
                        return RUN_FINISHED
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return RUN_TIMED_OUT
                    self.lock.wait(remaining)
            finally:
                loop.running_mode = None

    def _ready(self, loop: _RunLoop, mode: int) -> tuple[_Registration, tuple[int, int]] | None:
        for registration in self._registrations.values():
            if registration.queue and registration.source in loop.sources.get(mode, set()):
                return registration, registration.queue.pop(0)
        return None

    def _deliver(self, registration: _Registration, message: int, notification: int) -> None:
        with self.lock:
            self.delivered.append((registration.session, message))
            self.callback_threads.add(threading.get_ident())
        registration.callback(registration.refcon, ROOT_DOMAIN_SERVICE, message, notification or None)

    def stop(self, handle: int | None) -> None:
        loop = self._run_loop("CFRunLoopStop", handle)
        if loop is None:
            return
        with self.lock:
            if loop.running_mode is not None:  # a stop between activations is lost, as in CFRunLoop.c
                loop.stopped = True
                self.lock.notify_all()

    @contextlib.contextmanager
    def unavailable(self) -> Iterator[None]:
        self.available = False
        try:
            yield
        finally:
            self.available = True


class _IOKit(Dll):
    """IOKit.framework's exports the power notifications use."""

    def __init__(self, power: EmulatedPower) -> None:
        self.power = power
        super().__init__(power)  # type: ignore[arg-type]  # Dll only asks its host for guard()

    @export(_U32, _VP, _VP, _VP, _VP)
    def IORegisterForSystemPower(
        self, refcon: int | None, port: int | None, callback: int | None, notifier: int | None
    ) -> int:
        return self.power.register(refcon, port, callback, notifier)

    @export(ctypes.c_int32, _VP)
    def IODeregisterForSystemPower(self, notifier: int | None) -> int:
        return self.power.deregister(notifier)

    @export(ctypes.c_int32, _U32, ctypes.c_ssize_t)
    def IOAllowPowerChange(self, session: int, notification: int) -> int:
        return self.power.answer(session, notification, allow=True)

    @export(ctypes.c_int32, _U32, ctypes.c_ssize_t)
    def IOCancelPowerChange(self, session: int, notification: int) -> int:
        return self.power.answer(session, notification, allow=False)

    @export(ctypes.c_int32, _U32)
    def IOServiceClose(self, session: int) -> int:
        return self.power.service_close(session)

    @export(_VP, _VP)
    def IONotificationPortGetRunLoopSource(self, port: int | None) -> int | None:
        return self.power.port_source(port)

    @export(None, _VP)
    def IONotificationPortDestroy(self, port: int | None) -> None:
        self.power.port_destroy(port)


class _CoreFoundation(Dll):
    """CoreFoundation.framework's run loop exports."""

    def __init__(self, power: EmulatedPower) -> None:
        self.power = power
        super().__init__(power)  # type: ignore[arg-type]

    @export(_VP)
    def CFRunLoopGetCurrent(self) -> int:
        return self.power.current_run_loop()

    @export(None, _VP, _VP, _VP)
    def CFRunLoopAddSource(self, run_loop: int | None, source: int | None, mode: int | None) -> None:
        self.power.add_source(run_loop, source, mode)

    @export(None, _VP, _VP, _VP)
    def CFRunLoopRemoveSource(self, run_loop: int | None, source: int | None, mode: int | None) -> None:
        self.power.remove_source(run_loop, source, mode)

    @export(ctypes.c_int32, _VP, ctypes.c_double, ctypes.c_ubyte)
    def CFRunLoopRunInMode(self, mode: int | None, seconds: float, return_after_source: int) -> int:
        return self.power.run_in_mode(mode, seconds, return_after_source)

    @export(None, _VP)
    def CFRunLoopStop(self, run_loop: int | None) -> None:
        self.power.stop(run_loop)
