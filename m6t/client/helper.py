"""``m6t-helper``: the privileged process that owns the tunnel.

For now it runs the client in the foreground (``--config FILE --foreground``) until SIGTERM or SIGINT,
then removes the address, the routes and the interface and exits 0.  Logs go to stderr: state changes,
suffix regenerations with their reasons, MTU changes (never anything per packet).  The control API
server will be added here; the :class:`~m6t.client.driver.ClientDriver` does the work.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from m6t.client.config import ClientConfig, ConfigError, load_client_config
from m6t.client.driver import ClientDriver
from m6t.platform import default_backend
from m6t.platform.base import Backend, PlatformError

log = logging.getLogger("m6t.helper")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="m6t-helper", description="The m6t client helper (runs as root).")
    parser.add_argument("--config", required=True, type=Path, metavar="FILE", help="client configuration (TOML)")
    parser.add_argument(
        "--foreground", action="store_true", help="run the client in this process until SIGTERM or SIGINT"
    )
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    return parser


def _stop_on_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(signum, stop.set)
        except (NotImplementedError, RuntimeError):
            # No add_signal_handler on Windows' loops: a plain handler hands over to the loop.
            signal.signal(signum, lambda _n, _f: loop.call_soon_threadsafe(stop.set))


async def run_foreground(config: ClientConfig, backend: Backend) -> int:
    """Run the client until SIGTERM/SIGINT; everything installed is removed before returning."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    _stop_on_signals(loop, stop)
    driver = ClientDriver(config, backend)
    try:
        await driver.start()
        await driver.up()
        await stop.wait()
        log.info("stopping")
    except PlatformError as exc:
        log.error("%s%s", exc, f" (hint: {exc.hint})" if exc.hint else "")
        return EXIT_FAILURE
    finally:
        await driver.close()
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # pyroute2 narrates every netlink message at debug level: ours is the useful debug output.
    logging.getLogger("pyroute2").setLevel(max(logging.INFO, logging.getLogger().level))
    if not args.foreground:
        log.error("only --foreground is supported in this release")
        return EXIT_USAGE
    try:
        config = load_client_config(args.config)
    except ConfigError as exc:
        log.error("invalid configuration:\n%s", exc)
        return EXIT_USAGE
    try:
        backend = default_backend()
    except PlatformError as exc:
        log.error("%s%s", exc, f" (hint: {exc.hint})" if exc.hint else "")
        return EXIT_FAILURE
    return asyncio.run(run_foreground(config, backend))


if __name__ == "__main__":
    sys.exit(main())
