"""``m6t``: the client's command line (:mod:`m6t.client.cli`) with the lab's ``m6t lab demo`` added.

Composed here, one floor above both, so that the client never imports the lab: the lab runs the client's
real helper, and the shipped client has no use for network namespaces.
"""

from __future__ import annotations

import argparse
import sys
from argparse import _SubParsersAction
from typing import TextIO

from m6t.client import cli as client_cli


def add_lab_commands(commands: _SubParsersAction[argparse.ArgumentParser]) -> None:
    lab = commands.add_parser("lab", help="network-namespace labs (root)")
    lab_sub = lab.add_subparsers(dest="lab_command", metavar="ACTION", required=True)
    p = lab_sub.add_parser("demo", help="build a lab, run the real helper and gateway, narrate a move")
    p.add_argument("--keep", action="store_true", help="leave the lab running at the end")
    # Checked by the demo, so that building this parser never loads the lab.
    p.add_argument(
        "--emulate",
        metavar="OS",
        help="windows or darwin: the helper runs that OS's real backend over an emulation carrying real packets",
    )
    p.set_defaults(local_handler=cmd_lab_demo)


def cmd_lab_demo(args: argparse.Namespace, out: client_cli.Output) -> int:
    # Imported here: `m6t status` should not pay for loading the lab.
    from m6t.lab import demo

    if args.emulate is None:
        return demo.run(keep=args.keep, out=out.out)
    return demo.run(keep=args.keep, out=out.out, emulate=args.emulate)


def main(argv: list[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    return client_cli.main(argv, stdout=stdout, stderr=stderr, extensions=(add_lab_commands,))


if __name__ == "__main__":
    sys.exit(main())
