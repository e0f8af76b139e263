"""``m6t-gateway keys``: enrol mobile nodes in an enrolled gateway's key file.

m6t-gateway keys add NAME                 a new key from the OS CSPRNG, stored and printed once (on stdout)
m6t-gateway keys list                     names and fingerprints, never keys
m6t-gateway keys remove NAME [FINGERPRINT]

The key file is the one ``[access] key_file`` of the configuration names (``--key-file`` overrides).  A
running gateway reads the change on SIGHUP (``systemctl reload m6t-gateway``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from m6t.configfile import ConfigError
from m6t.gateway.config import DEFAULT_KEY_FILE, load_gateway_config
from m6t.gateway.keys import KeyFile, generate_key, load_key_file, save_key_file
from m6t.platform.private_file import PrivateFileError
from m6t.protocol.access import encode_key, fingerprint

_RELOAD = "a running gateway accepts the change on SIGHUP (systemctl reload m6t-gateway)"


def add_keys_parser(commands: Any) -> None:
    keys = commands.add_parser("keys", help="manage the keys of an enrolled gateway ([access] key_file)")
    keys.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help="read key_file from FILE")
    keys.add_argument("--key-file", metavar="FILE", help="the key file itself (overrides the configuration)")
    actions = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="generate a key for NAME, store it and print it once")
    add.add_argument("name", metavar="NAME")
    actions.add_parser("list", help="names and fingerprints (never the keys)")
    remove = actions.add_parser("remove", help="remove NAME's keys, or only the one with FINGERPRINT")
    remove.add_argument("name", metavar="NAME")
    remove.add_argument("fingerprint", metavar="FINGERPRINT", nargs="?")


def _key_file(args: argparse.Namespace, config_path: str) -> str:
    if args.key_file:
        return str(args.key_file)
    if Path(config_path).exists():
        return load_gateway_config(config_path).access.key_file
    return DEFAULT_KEY_FILE


def run_keys(args: argparse.Namespace, config_path: str) -> int:
    try:
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
