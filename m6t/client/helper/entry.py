"""The ``m6t-helper`` command: arguments, detaching from the terminal, and running until a signal or the
service manager's stop (:func:`m6t.platform.service_host`: Windows' SCM with ``--service``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from m6t.client.api import schema
from m6t.client.config import ClientConfig
from m6t.client.helper.service import (
    BackendFactory,
    Driver,
    DriverFactory,
    HelperOptions,
    HelperService,
    StartupError,
    default_backend_factory,
    default_driver_factory,
)
from m6t.platform import control_transport, default_control_address, service_host
from m6t.platform.base import Backend, ControlTransport, PlatformError, ServiceHost

EXIT_STARTUP_FAILED = 1
"""The exit status of a start-up failure (the SCM's service-specific exit code on Windows)."""


async def run_helper(
    options: HelperOptions,
    *,
    transport: ControlTransport | None = None,
    backend_factory: BackendFactory = default_backend_factory,
    driver_factory: DriverFactory = default_driver_factory,
    ready: Callable[[], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run until SIGTERM/SIGINT (or ``stop`` is set); raises :class:`StartupError` if it cannot start.
    ``transport``: the control channel to serve, the platform's unless given."""
    try:
        channel = transport if transport is not None else control_transport()
    except PlatformError as exc:
        raise StartupError(str(exc)) from None
    service = HelperService(options, transport=channel, backend_factory=backend_factory, driver_factory=driver_factory)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)
    try:
        await service.start()
    except BaseException:
        await service.stop()
        raise
    if ready is not None:
        ready()
    try:
        await stop.wait()
    finally:
        await service.stop()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="m6t-helper", description="The m6t privileged helper: runs the tunnel and serves the control API."
    )
    parser.add_argument("--config", required=True, type=Path, help="client configuration file (TOML)")
    parser.add_argument(
        "--socket",
        default=default_control_address(),
        metavar="ADDRESS",
        help="where the control API listens: a socket path, a pipe name on Windows (%(default)s)",
    )
    parser.add_argument(
        "--state-dir", default=Path(schema.DEFAULT_STATE_DIR), type=Path, help="state directory (%(default)s)"
    )
    parser.add_argument("--foreground", action="store_true", help="do not detach; log to stderr")
    parser.add_argument(
        "--service",
        action="store_true",
        help="run as the Windows service (the installer's command line); log to the state directory",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="log debug messages")
    return parser


def _daemonize() -> Callable[[str], None] | None:
    """Detach, returning (in the child) the function that tells the waiting parent how start-up went.

    The parent exits only once the socket listens (or start-up failed, with the reason), so
    ``m6t-helper && m6t status`` works.  ``None`` where the OS cannot fork: the caller stays in front.
    """
    fork = getattr(os, "fork", None)
    setsid = getattr(os, "setsid", None)
    if fork is None or setsid is None:
        return None
    read_end, write_end = os.pipe()
    if fork() > 0:
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            message = pipe.read().decode("utf-8", "replace")
        if message.startswith("ok"):
            os._exit(0)
        sys.stderr.write(message or "m6t-helper: exited during start-up\n")
        os._exit(1)
    os.close(read_end)
    setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)

    def report(message: str) -> None:
        with contextlib.suppress(OSError):
            os.write(write_end, message.encode("utf-8"))
            os.close(write_end)

    return report


def serve(
    options: HelperOptions,
    host: ServiceHost,
    *,
    backend_factory: BackendFactory = default_backend_factory,
    driver_factory: DriverFactory = default_driver_factory,
    report: Callable[[str], None] | None = None,
) -> int:
    """Run the helper under ``host`` until it is stopped; its exit status.  ``report`` tells a waiting parent
    (the detached daemon's) how start-up went."""
    drivers: list[Driver] = []

    def keep_driver(config: ClientConfig, backend: Backend, more_backends: BackendFactory) -> Driver:
        driver = driver_factory(config, backend, more_backends)
        drivers.append(driver)
        return driver

    def on_resume() -> None:
        if drivers:
            drivers[-1].resumed()

    async def body(ready: Callable[[], None], stop: asyncio.Event) -> int:
        def started() -> None:
            ready()
            if report is not None:
                report("ok\n")

        try:
            await run_helper(
                options, backend_factory=backend_factory, driver_factory=keep_driver, ready=started, stop=stop
            )
        except StartupError as exc:
            message = f"m6t-helper: {exc}\n"
            if sys.stderr is not None:
                sys.stderr.write(message)
            if report is not None:
                report(message)
            return EXIT_STARTUP_FAILED
        return 0

    return host.run(body, on_resume)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config_path: Path = args.config.absolute()
    state_dir: Path = args.state_dir.absolute()
    report: Callable[[str], None] | None = None
    console = sys.stderr
    try:
        host = service_host(service_manager=args.service)
    except PlatformError as exc:
        return _fail(exc, console, report)
    if args.service:
        # The SCM gives a service no console: stderr (the log, a start-up failure, a traceback ctypes prints
        # from a callback) goes where the diagnostics look for it.
        state_dir.mkdir(parents=True, exist_ok=True)
        sys.stderr = open(state_dir / "helper.log", "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - for the run
    elif not args.foreground:
        report = _daemonize()
        if report is not None:
            state_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
            logfile = os.open(state_dir / "helper.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
            os.dup2(logfile, 2)
            os.close(logfile)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    options = HelperOptions(config_path=config_path, socket_path=args.socket, state_dir=state_dir)
    try:
        return serve(options, host, report=report)
    except PlatformError as exc:
        # --service typed in a console: the dispatcher refused, and the person who typed it should read why.
        if console is not sys.stderr:
            _fail(exc, console, None)
        return _fail(exc, sys.stderr, report)
    except KeyboardInterrupt:
        return 0


def _fail(exc: PlatformError, stream: TextIO | None, report: Callable[[str], None] | None) -> int:
    hint = f" ({exc.hint})" if exc.hint else ""
    message = f"m6t-helper: {exc}{hint}\n"
    if stream is not None:
        stream.write(message)
    if report is not None:
        report(message)
    return EXIT_STARTUP_FAILED
