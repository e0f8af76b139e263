"""``m6t-gateway keys``: enrol mobile nodes in an enrolled gateway's key file.

m6t-gateway keys add NAME                 a new key from the OS CSPRNG, stored and printed once (on stdout)
m6t-gateway keys list                     names and fingerprints, never keys
m6t-gateway keys remove NAME [FINGERPRINT]
m6t-gateway keys stage COPY               the systemd unit's: the keys, checked, copied for its service user

The key file is the one ``[access] key_file`` of the configuration names (``--key-file`` overrides).  It is
root's alone, and the shipped unit runs the gateway as a dynamic user: the unit's root-run ``keys stage``
(at start and at ``systemctl reload m6t-gateway``, before the SIGHUP) gives the gateway a private copy in
its runtime directory, which is what it reads (``m6t-gateway --key-file``).  A gateway run as root reads
the key file itself on SIGHUP.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from m6t.configfile import ConfigError
from m6t.gateway.config import DEFAULT_KEY_FILE, AccessMode, load_gateway_config
from m6t.gateway.keys import KeyFile, generate_key, load_key_file, save_key_file, stage_key_file
from m6t.platform.private_file import PrivateFileError
from m6t.protocol.access import encode_key, fingerprint

_RELOAD = "a running gateway takes the change at `systemctl reload m6t-gateway` (run by hand: at SIGHUP)"


def add_keys_parser(commands: Any) -> None:
    keys = commands.add_parser("keys", help="manage the keys of an enrolled gateway ([access] key_file)")
    keys.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help="read key_file from FILE")
    keys.add_argument(
        "--key-file",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="the key file itself (overrides the configuration)",
    )
    actions = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="generate a key for NAME, store it and print it once")
    add.add_argument("name", metavar="NAME")
    actions.add_parser("list", help="names and fingerprints (never the keys)")
    remove = actions.add_parser("remove", help="remove NAME's keys, or only the one with FINGERPRINT")
    remove.add_argument("name", metavar="NAME")
    remove.add_argument("fingerprint", metavar="FINGERPRINT", nargs="?")
    stage = actions.add_parser(
        "stage",
        help="check the key file and copy it to COPY for the gateway's service user (the systemd unit runs this "
        "as root at start and reload); COPY is removed in open mode",
    )
    stage.add_argument("copy", metavar="COPY", help="the copy: owned by its directory's owner, mode 0600")


def _key_file(args: argparse.Namespace, config_path: str) -> str:
    if args.key_file:
        return str(args.key_file)
    if Path(config_path).exists():
        return load_gateway_config(config_path).access.key_file
    return DEFAULT_KEY_FILE


def _stage(args: argparse.Namespace, config_path: str, copy: str) -> int:
    config = load_gateway_config(config_path)
    if config.access.mode is not AccessMode.ENROLLED:
        # No keys may linger where an open gateway's user could read them.
        Path(copy).unlink(missing_ok=True)
        return 0
    path = args.key_file or config.access.key_file
    keys = load_key_file(path)
    stage_key_file(keys, copy)
    print(f"{len(keys)} key(s) of {path} handed to the gateway ({copy})", file=sys.stderr)
    return 0


def run_keys(args: argparse.Namespace, config_path: str) -> int:
    try:
        if args.keys_command == "stage":
            return _stage(args, config_path, args.copy)
        path = _key_file(args, config_path)
        if args.keys_command == "add":
            return _add(path, args.name)
        keys = load_key_file(path)
        if args.keys_command == "list":
            for name, print_ in keys.listing():
                print(f"{name}\t{print_}")
            if not len(keys):
                print(f"{path}: no keys (m6t-gateway keys add NAME)", file=sys.stderr)
            return 0
        save_key_file(path, keys.without(args.name, args.fingerprint))
        print(f"removed from {path}; {_RELOAD}", file=sys.stderr)
        return 0
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    except (ValueError, PrivateFileError) as exc:
        print(f"m6t-gateway keys: {exc}", file=sys.stderr)
        return 1


def _add(path: str, name: str) -> int:
    keys = load_key_file(path) if Path(path).exists() else KeyFile()
    key = generate_key()
    updated = keys.with_key(name, key)
    save_key_file(path, updated)
    rotating = len(updated.entries[name]) > 1
    print(encode_key(key))
    print(
        f"{name}: key {fingerprint(key)} stored in {path}"
        + (" beside the previous one (rotation: remove that one once the MN uses this)" if rotating else "")
        + f".\nThe key above is shown this once: store it on the MN with `m6t key set`; {_RELOAD}.",
        file=sys.stderr,
    )
    return 0
