"""``m6t-gateway``: run the tunnel gateway in the foreground, check a configuration, show live status.

m6t-gateway [--config FILE] [--key-file FILE]   run (systemd style: foreground, logs on stderr)
m6t-gateway check --config FILE [--key-file FILE]   validate; problems on stderr, exit status 1
m6t-gateway status [--config FILE | --metrics ADDR] [--raw]
m6t-gateway keys add|list|remove|stage ...   manage an enrolled gateway's key file (m6t.gateway.keys_cli)
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from m6t.configfile import ConfigError, Invalid
from m6t.gateway.config import (
    AccessMode,
    GatewayConfig,
    MetricsEndpoint,
    load_gateway_config,
    parse_metrics_endpoint,
)
from m6t.gateway.core import settings_from_config
from m6t.gateway.keys import load_key_file
from m6t.gateway.keys_cli import add_keys_parser, run_keys
from m6t.gateway.metrics import format_status
from m6t.gateway.metrics_server import MetricsError, fetch_metrics
from m6t.platform import require_linux
from m6t.platform.base import PlatformError

DEFAULT_CONFIG = "/etc/m6t/gateway.toml"
PROG = "m6t-gateway"

log = logging.getLogger("m6t.gateway")
_KEY_FILE_HELP = (
    "read an enrolled gateway's keys from FILE instead of [access] key_file "
    "(the systemd unit's copy: m6t-gateway keys stage)"
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="The m6t tunnel gateway (draft-ebalard-mext-m6t-02): IPv6 over UDP/IPv4 to a Home Agent."
    )
    parser.add_argument("--config", metavar="FILE", help=f"configuration file (default {DEFAULT_CONFIG})")
    parser.add_argument("--key-file", metavar="FILE", help=_KEY_FILE_HELP)
    parser.add_argument(
        "--log-level",
        default="info",
        choices=("debug", "info", "warning", "error"),
        help="how much to log on stderr (default info)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    # SUPPRESS keeps a subcommand's absent --config from overwriting one given before the subcommand.
    run = commands.add_parser("run", help="run the gateway in the foreground (the default)")
    run.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help="configuration file")
    run.add_argument("--key-file", metavar="FILE", default=argparse.SUPPRESS, help=_KEY_FILE_HELP)
    check = commands.add_parser("check", aliases=["check-config"], help="validate a configuration file and exit")
    check.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help="configuration file")
    check.add_argument("--key-file", metavar="FILE", default=argparse.SUPPRESS, help=_KEY_FILE_HELP)
    status = commands.add_parser("status", help="print a running gateway's metrics, human-readably")
    status.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help="read the endpoint from FILE")
    status.add_argument(
        "--metrics", metavar="ADDR", help="the metrics endpoint: HOST:PORT, [IPv6]:PORT or unix:/path (overrides FILE)"
    )
    status.add_argument("--raw", action="store_true", help="print the Prometheus text as served")
    status.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the gateway (default 5)")
    add_keys_parser(commands)
    return parser


def _load(path: str, key_file: str | None = None, *, keys: bool = True) -> GatewayConfig | None:
    """The configuration at ``path``, checked as the daemon would use it (``key_file`` in place of its
    [access] key_file; the keys read unless ``keys`` is False), or None with every problem on stderr."""
    try:
        config = load_gateway_config(path)
        settings_from_config(config)
        if key_file is not None:
            config = dataclasses.replace(config, access=dataclasses.replace(config.access, key_file=key_file))
        if keys and config.access.mode is AccessMode.ENROLLED:
            load_key_file(config.access.key_file)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return None
    except ValueError as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return None
    return config


def _check(path: str, key_file: str | None) -> int:
    config = _load(path, key_file)
    if config is None:
        return 1
    print(f"{path}: ok")
    return 0


def _run(path: str, key_file: str | None, level: str) -> int:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )
    # pyroute2 narrates every netlink message at debug level: ours are what an operator debugs.
    logging.getLogger("pyroute2").setLevel(max(logging.getLogger().level, logging.WARNING))
    config = _load(path, key_file)
    if config is None:
        return 1
    try:
        require_linux("the m6t gateway")
        from m6t.gateway.daemon import serve

        asyncio.run(serve(config))
    except PlatformError as exc:
        log.error("%s%s", exc, f" (hint: {exc.hint})" if exc.hint else "")
        return 1
    except (MetricsError, ConfigError) as exc:
        log.error("%s", exc)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def _status(config_path: str | None, metrics: str | None, raw: bool, timeout: float) -> int:
    endpoint: MetricsEndpoint
    if metrics is not None:
        try:
            endpoint = parse_metrics_endpoint(metrics)
        except Invalid as exc:
            print(f"--metrics: {exc}", file=sys.stderr)
            return 2
    else:
        path = config_path if config_path is not None else DEFAULT_CONFIG
        if config_path is None and not Path(path).exists():
            print(f"{PROG} status: pass --config FILE or --metrics ADDR ({DEFAULT_CONFIG} not found)", file=sys.stderr)
            return 2
        # The keys are no business of a status reader, who need not be able to read them.
        config = _load(path, keys=False)
        if config is None:
            return 1
        if config.metrics.listen is None:
            print(f"{path}: metrics are off ([metrics] listen is not set); nothing to ask", file=sys.stderr)
            return 1
        endpoint = config.metrics.listen
    try:
        text = fetch_metrics(endpoint, timeout)
    except MetricsError as exc:
        print(f"{PROG} status: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(text if raw else f"m6t gateway at {endpoint}\n" + format_status(text))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config: str | None = args.config
    if args.command in ("check", "check-config"):
        return _check(config or DEFAULT_CONFIG, args.key_file)
    if args.command == "status":
        return _status(config, args.metrics, args.raw, args.timeout)
    if args.command == "keys":
        return run_keys(args, config or DEFAULT_CONFIG)
    return _run(config or DEFAULT_CONFIG, args.key_file, args.log_level)
