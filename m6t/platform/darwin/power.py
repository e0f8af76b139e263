"""Sleep and wake on macOS: IOKit's system power notifications, on a CoreFoundation run loop of their own.

``IORegisterForSystemPower`` (IOKit/pwr_mgt/IOPMLib.h) "Connects the caller to the Root Power Domain IOService
for the purpose of receiving sleep & wake notifications for the system".  Its notification port only
delivers once enabled through a run loop source ("The caller should also enable IONotificationPortRef by
calling IONotificationPortGetRunLoopSource"), so one thread here runs a CFRunLoop with that source and nothing
else, and hands each announcement to the asyncio loop with ``call_soon_threadsafe``.  The thread sleeps in
the run loop's wait between notifications: nothing wakes up while the system is idle.

What each message asks for, as the header documents it:

* ``kIOMessageSystemWillSleep`` "is delivered at the point the system is initiating a non-abortable sleep.
  Callers MUST acknowledge this event by calling IOAllowPowerChange. If a caller does not acknowledge the sleep
  notification, the sleep will continue anyway after a 30 second timeout": announced as
  :attr:`~m6t.platform.base.PowerEvent.SLEEPING`, then acknowledged at once from the run loop's thread (the
  helper has nothing to do before a sleep, as with logind, where it takes no inhibitor lock).
* ``kIOMessageCanSystemSleep`` "indicates the system is pondering an idle sleep ... Caller must acknowledge
  kIOMessageCanSystemSleep by calling IOAllowPowerChange or IOCancelPowerChange": allowed, never vetoed.
* ``kIOMessageSystemHasPoweredOn`` "is delivered at wakeup completion time, after all device drivers and
  hardware have handled the wakeup event ... Caller must NOT acknowledge": announced as
  :attr:`~m6t.platform.base.PowerEvent.RESUMED`.  ``kIOMessageSystemWillPowerOn`` comes earlier, "before most
  hardware has been powered on ... any attempts to access disk, network ... may result in errors": ignored,
  like ``kIOMessageSystemWillNotSleep``; neither is acknowledged ("The caller should not call
  IOAllowPowerChange in response to any messages except for these two").

Tearing down follows the header's order: "To deregister for sleep/wake notifications, the caller must make two
calls, in this order: Call IODeregisterForSystemPower with the 'notifier' argument returned here. Then call
IONotificationPortDestroy", and the session returned "must close ... via IOServiceClose() after calling
IODeregisterForSystemPower".

Stopping the thread: ``CFRunLoopStop`` "forces rl to stop running and return control to the function that
called CFRunLoopRun or CFRunLoopRunInMode for the current run loop activation" -- there must be one.
CoreFoundation only marks a run loop stopped while it runs a mode (``if (rl->_currentMode)`` in CFRunLoop.c),
so a stop that lands between two activations is lost: :meth:`IOKitPowerEvents.stop` sets a flag the thread
reads between activations and repeats the stop until the thread has ended (a bounded number of times).

Every call goes through :class:`PowerApi` (IOKit and CoreFoundation as ctypes objects, and the run loop mode
constant), so that the tests run this module over an emulation of both frameworks.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from m6t.platform.base import PlatformError, PowerCallback, PowerEvent, PowerEvents

log = logging.getLogger(__name__)

IOKIT_PATH: Final = "/System/Library/Frameworks/IOKit.framework/IOKit"
COREFOUNDATION_PATH: Final = "/System/Library/Frameworks/CoreFoundation.framework/CoreFoundation"

# IOKit/IOMessage.h: iokit_common_msg(message) = sys_iokit | sub_iokit_common | message, where
# sys_iokit = err_system(0x38) = (0x38 & 0x3f) << 26 and sub_iokit_common = err_sub(0) = 0.
_SYS_IOKIT: Final = (0x38 & 0x3F) << 26
kIOMessageCanSystemSleep: Final = _SYS_IOKIT | 0x270
kIOMessageSystemWillSleep: Final = _SYS_IOKIT | 0x280
kIOMessageSystemWillNotSleep: Final = _SYS_IOKIT | 0x290
kIOMessageSystemHasPoweredOn: Final = _SYS_IOKIT | 0x300
kIOMessageSystemWillPowerOn: Final = _SYS_IOKIT | 0x320

IO_OBJECT_NULL: Final = 0
kIOReturnSuccess: Final = 0

# CFRunLoop.h: CFRunLoopRunInMode's results.
kCFRunLoopRunFinished: Final = 1
kCFRunLoopRunStopped: Final = 2
kCFRunLoopRunTimedOut: Final = 3
kCFRunLoopRunHandledSource: Final = 4

RUN_SECONDS: Final = 1.0e10
"""How long one run loop activation may wait: for ever, in practice (it ends when stopped)."""
STOP_ATTEMPTS: Final = 50
STOP_WAIT_S: Final = 0.1
"""A stop is repeated every ``STOP_WAIT_S`` until the thread ends, at most ``STOP_ATTEMPTS`` times."""

io_connect_t = ctypes.c_uint32
"""mach_port_t, an unsigned 32-bit port name (io_object_t and io_service_t are the same type)."""
io_object_t = ctypes.c_uint32
IOReturn = ctypes.c_int32
IOServiceInterestCallback = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_void_p)
"""``void (*)(void *refcon, io_service_t service, uint32_t messageType, void *messageArgument)``
(IOKit/IOKitLib.h)."""


@dataclass(frozen=True)
class PowerApi:
    """What the power notifications take from the OS: :func:`native_power_api`, or an emulation."""

    iokit: object
    corefoundation: object
    default_mode: int
    """The value of ``kCFRunLoopDefaultMode`` (a CFStringRef exported as a variable)."""


def native_power_api() -> PowerApi:
    """IOKit and CoreFoundation from /System/Library/Frameworks, by absolute path."""
    if sys.platform != "darwin":
        raise PlatformError(f"IOKit's power notifications need macOS, not {sys.platform}")
    corefoundation = ctypes.CDLL(COREFOUNDATION_PATH)
    mode = ctypes.c_void_p.in_dll(corefoundation, "kCFRunLoopDefaultMode").value
    if not mode:
        raise PlatformError("CoreFoundation exports no kCFRunLoopDefaultMode")
    return PowerApi(iokit=ctypes.CDLL(IOKIT_PATH), corefoundation=corefoundation, default_mode=mode)


def _bind(library: object, name: str, restype: Any, *argtypes: Any) -> Callable[..., Any]:
    function = getattr(library, name)
    function.restype = restype
    function.argtypes = argtypes
    return function  # type: ignore[no-any-return]


class SystemPower:
    """The calls, with their C prototypes declared (IOKit/pwr_mgt/IOPMLib.h, IOKit/IOKitLib.h, CFRunLoop.h)."""

    def __init__(self, api: PowerApi) -> None:
        io, cf, vp = api.iokit, api.corefoundation, ctypes.c_void_p
        self.default_mode = api.default_mode
        self._register = _bind(
            io, "IORegisterForSystemPower", io_connect_t, vp, ctypes.POINTER(vp), IOServiceInterestCallback,
            ctypes.POINTER(io_object_t),
        )  # fmt: skip
        self._deregister = _bind(io, "IODeregisterForSystemPower", IOReturn, ctypes.POINTER(io_object_t))
        self._allow = _bind(io, "IOAllowPowerChange", IOReturn, io_connect_t, ctypes.c_ssize_t)
        self._service_close = _bind(io, "IOServiceClose", IOReturn, io_connect_t)
        self._port_source = _bind(io, "IONotificationPortGetRunLoopSource", vp, vp)
        self._port_destroy = _bind(io, "IONotificationPortDestroy", None, vp)
        self._current = _bind(cf, "CFRunLoopGetCurrent", vp)
        self._add_source = _bind(cf, "CFRunLoopAddSource", None, vp, vp, vp)
        self._remove_source = _bind(cf, "CFRunLoopRemoveSource", None, vp, vp, vp)
        self._run_in_mode = _bind(cf, "CFRunLoopRunInMode", ctypes.c_int32, vp, ctypes.c_double, ctypes.c_ubyte)
        self._stop = _bind(cf, "CFRunLoopStop", None, vp)

    def register(self, callback: Any) -> tuple[int, int, int] | None:
        """IORegisterForSystemPower: ``(session, notification port, notifier)``, ``None`` when it failed
        ("Returns a io_connect_t session for the IOPMrootDomain or IO_OBJECT_NULL if request failed")."""
        port = ctypes.c_void_p()
        notifier = io_object_t()
        session = int(self._register(None, ctypes.byref(port), callback, ctypes.byref(notifier)))
        if session == IO_OBJECT_NULL or not port.value:
            return None
        return session, port.value, notifier.value

    def deregister(self, notifier: int) -> int:
        return int(self._deregister(ctypes.byref(io_object_t(notifier))))

    def allow_power_change(self, session: int, notification: int) -> int:
        return int(self._allow(session, notification))

    def service_close(self, session: int) -> int:
        return int(self._service_close(session))

    def port_source(self, port: int) -> int | None:
        source = self._port_source(port)
        return int(source) if source else None

    def port_destroy(self, port: int) -> None:
        self._port_destroy(port)

    def current_run_loop(self) -> int:
        return int(self._current())

    def add_source(self, run_loop: int, source: int) -> None:
        self._add_source(run_loop, source, self.default_mode)

    def remove_source(self, run_loop: int, source: int) -> None:
        self._remove_source(run_loop, source, self.default_mode)

    def run(self, seconds: float) -> int:
        """CFRunLoopRunInMode(kCFRunLoopDefaultMode, seconds, false) on the calling thread's run loop."""
        return int(self._run_in_mode(self.default_mode, seconds, 0))

    def stop(self, run_loop: int) -> None:
        self._stop(run_loop)


def _settle(future: concurrent.futures.Future[bool], value: bool) -> None:
    """Tell :meth:`IOKitPowerEvents.start` how registering went, unless it stopped waiting (cancelled)."""
    with contextlib.suppress(concurrent.futures.InvalidStateError):
        future.set_result(value)


class IOKitPowerEvents(PowerEvents):
    """:class:`~m6t.platform.base.PowerEvents` from IOKit's root power domain (see the module docstring)."""

    def __init__(self, api: Callable[[], PowerApi] = native_power_api) -> None:
        self._api = api
        self._thread: threading.Thread | None = None
        self._calls: SystemPower | None = None
        self._run_loop: int | None = None
        self._run_loop_lock = threading.Lock()
        """Held while stopping the run loop and while its thread gives it up: a run loop is freed when its
        thread ends, so it is only stopped while its thread is still inside :meth:`_run`."""
        self._stopping = threading.Event()
        self._callback: Any = None
        """The C function pointer IOKit calls: it must live as long as the registration."""

    async def start(self, on_event: PowerCallback) -> bool:
        try:
            self._calls = SystemPower(self._api())
        except (OSError, AttributeError, PlatformError) as exc:
            log.debug("IOKit's power notifications are not available: %s", exc)
            return False
        loop = asyncio.get_running_loop()

        def deliver(event: PowerEvent) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody is left to tell
                loop.call_soon_threadsafe(on_event, event)

        registered: concurrent.futures.Future[bool] = concurrent.futures.Future()
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._run, args=(self._calls, deliver, registered), name="m6t-iokit-power", daemon=True
        )
        self._thread.start()
        if await asyncio.wrap_future(registered):
            return True
        await asyncio.to_thread(self._thread.join)
        self._thread = None
        return False

    def _run(
        self, calls: SystemPower, deliver: Callable[[PowerEvent], None], registered: concurrent.futures.Future[bool]
    ) -> None:
        """The run loop's thread: register, serve notifications until stopped, deregister."""
        session = 0

        def on_message(refcon: int | None, service: int, message: int, argument: int | None) -> None:
            # Called by IOKit from inside CFRunLoopRunInMode on this thread; nothing may raise through C.
            try:
                if message == kIOMessageSystemWillSleep:
                    deliver(PowerEvent.SLEEPING)
                    self._allow(calls, session, argument)
                elif message == kIOMessageCanSystemSleep:
                    self._allow(calls, session, argument)
                elif message == kIOMessageSystemHasPoweredOn:
                    deliver(PowerEvent.RESUMED)
            except Exception:
                log.exception("handling the power notification %#x failed", message)

        try:
            self._callback = IOServiceInterestCallback(on_message)
            run_loop = calls.current_run_loop()
            registration = calls.register(self._callback)
        except Exception as exc:
            log.warning("cannot register for IOKit's power notifications: %s", exc)
            _settle(registered, False)
            return
        if registration is None:
            log.warning("IORegisterForSystemPower failed: sleep and wake will not be announced")
            _settle(registered, False)
            return
        session, port, notifier = registration
        source = calls.port_source(port)
        if source is not None:
            calls.add_source(run_loop, source)
            self._run_loop = run_loop
        try:
            _settle(registered, source is not None)
            while source is not None and not self._stopping.is_set():
                if calls.run(RUN_SECONDS) == kCFRunLoopRunFinished:
                    log.warning("the power notifications' run loop lost its source: no more sleep/wake announcements")
                    break
        finally:
            with self._run_loop_lock:
                self._run_loop = None
            if source is not None:
                calls.remove_source(run_loop, source)
            for what, result in (
                ("IODeregisterForSystemPower", calls.deregister(notifier)),
                ("IOServiceClose", calls.service_close(session)),
            ):
                if result != kIOReturnSuccess:
                    log.debug("%s returned %#x", what, result & 0xFFFFFFFF)
            calls.port_destroy(port)

    @staticmethod
    def _allow(calls: SystemPower, session: int, argument: int | None) -> None:
        # "A copy of the notification ID which came as part of the power state change notification".
        result = calls.allow_power_change(session, argument or 0)
        if result != kIOReturnSuccess:
            log.warning("IOAllowPowerChange returned %#x", result & 0xFFFFFFFF)

    async def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping.set()
        for _ in range(STOP_ATTEMPTS):
            with self._run_loop_lock:
                if self._run_loop is not None and self._calls is not None:
                    # "The functions in Core Foundation are generally thread-safe and can be called from any
                    # thread" (Threading Programming Guide, Run Loops).
                    self._calls.stop(self._run_loop)
            await asyncio.to_thread(thread.join, STOP_WAIT_S)
            if not thread.is_alive():
                break
        else:
            log.warning("the power notifications' run loop did not stop; leaving it behind")
            return
        self._callback = None
