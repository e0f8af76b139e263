"""``python -m m6t.lab.emulation.run --os windows --config ... --socket ...``: the real helper service with the
backend of an emulated OS, in the current (lab) namespace.

It is ``m6t-helper --foreground`` with one difference: ``run_helper`` gets the registry's backend factory
instead of the platform's.  The control API stays the Unix socket the lab drives (Linux's transport).  Signals
an emulation gives a meaning to (the emulated Mac's power button: SIGUSR1 sleep, SIGUSR2 wake) press its buttons
on a thread of their own, as the hardware would, away from the helper's loop.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from m6t.client.helper.entry import run_helper
from m6t.client.helper.service import HelperOptions, StartupError
from m6t.lab.emulation import EMULATIONS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m m6t.lab.emulation.run", description=__doc__)
    parser.add_argument("--os", required=True, choices=sorted(EMULATIONS), help="the emulated operating system")
    parser.add_argument("--config", required=True, type=Path, help="client configuration file (TOML)")
    parser.add_argument("--socket", required=True, help="control socket path")
    parser.add_argument("--state-dir", required=True, type=Path, help="state directory")
    parser.add_argument("--verbose", "-v", action="store_true", help="log debug messages")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    emulation = EMULATIONS[args.os]
    logging.getLogger(__name__).info("emulated %s: %s", emulation.name, emulation.summary)
    options = HelperOptions(
        config_path=args.config.absolute(), socket_path=args.socket, state_dir=args.state_dir.absolute()
    )
    buttons = emulation.signal_buttons()

    async def serve() -> None:
        loop = asyncio.get_running_loop()

        def press(button: Callable[[], object]) -> None:
            threading.Thread(target=button, name="emulated-button", daemon=True).start()

        for signum, button in buttons.items():
            loop.add_signal_handler(signum, press, button)
        await run_helper(options, backend_factory=emulation.backend_factory())

    try:
        asyncio.run(serve())
    except StartupError as exc:
        sys.stderr.write(f"m6t-helper (emulated {emulation.name}): {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
