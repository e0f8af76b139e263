"""The ``m6t`` command line over the control API; :mod:`m6t.cli` adds the lab's commands and is the program.

Every command talks to the helper through :mod:`m6t.client.api.client`; nothing here needs root.
Exit codes: 0 success, 1 the helper refused or failed the request, 2 usage, 3 the helper cannot be
reached, 4 not allowed (read-only user), 130 interrupted.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from argparse import _SubParsersAction
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO, cast

from m6t.client.api import schema
from m6t.client.api.client import (
    HelperClient,
    HelperError,
    HelperTimeout,
    HelperUnavailable,
    RequestFailed,
)
from m6t.client.api.host import control_address, conventions
from m6t.client.api.schema import ErrorCode, EventKind, Method
from m6t.client.config import ConfigError, load_client_config
from m6t.client.i18n import _, ngettext
from m6t.protocol.access import decode_key

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_FORBIDDEN = 4
EXIT_INTERRUPTED = 130

SOCKET_ENV = "M6T_SOCKET"


class Output:
    """Where a command writes; injected so tests read what a user would see."""

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self.out = out
        self.err = err

    def line(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def json(self, value: Any) -> None:
        self.out.write(json.dumps(value, indent=2, sort_keys=True) + "\n")
        self.out.flush()

    def error(self, text: str) -> None:
        self.err.write(f"m6t: {text}\n")
        self.err.flush()


# ------------------------------------------------------------------------------------------ formatting


def _age(seconds: float | None) -> str:
    if seconds is None:
        return _("never")
    if seconds < 1.0:
        return _("just now")
    if seconds < 120:
        return _("{seconds:.0f} s ago").format(seconds=seconds)
    if seconds < 7200:
        return _("{minutes:.0f} min ago").format(minutes=seconds / 60)
    return _("{hours:.1f} h ago").format(hours=seconds / 3600)


def _interval(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return ""
    return f"{seconds:g} s"


def format_attachment(attachment: Any) -> str:
    if not isinstance(attachment, dict):
        return _("none (no IPv4 path to the gateway)")
    if attachment.get("router"):
        return _("{address} on {interface} via {router}").format(
            address=attachment.get("local_ipv4"), interface=attachment.get("interface"), router=attachment["router"]
        )
    return _("{address} on {interface}").format(
        address=attachment.get("local_ipv4"), interface=attachment.get("interface")
    )


def format_mtu(status: dict[str, Any]) -> str:
    """The tunnel MTU, and what path MTU discovery found and when."""
    mtu = status.get("mtu")
    if mtu is None:
        return "-"
    detail = status.get("mtu_detail") or {}
    search = detail.get("search") if isinstance(detail, dict) else None
    if not isinstance(search, dict):
        return str(mtu)
    if search.get("fragmentation"):
        return _("{mtu} (the path carries under 1308 bytes: larger packets rely on fragmentation)").format(mtu=mtu)
    if search.get("state") in ("base", "searching"):
        return _("{mtu} (searching the path MTU)").format(mtu=mtu)
    if search.get("mtu") is None:
        return str(mtu)
    when = time.strftime("%H:%M:%S", time.localtime(search["time"])) if search.get("time") else "?"
    probes = search.get("probes", 0)
    return ngettext(
        "{mtu} (path searched at {when}: {found}, {probes} probe)",
        "{mtu} (path searched at {when}: {found}, {probes} probes)",
        probes,
    ).format(mtu=mtu, when=when, found=search.get("found"), probes=probes)


def format_tunnel(tunnel: Any) -> str:
    """One tunnel of several (``tunnel.uplinks = "all"``): its interface and uplink, state, address, RTT, MTU."""
    if not isinstance(tunnel, dict):
        return "?"
    where = str(tunnel.get("interface") or "?")
    if tunnel.get("uplink"):
        where = _("{interface} via {uplink}").format(interface=where, uplink=tunnel["uplink"])
    parts = [f"{where}: {tunnel.get('state')}", str(tunnel.get("address") or "-")]
    rtt = tunnel.get("rtt_ms")
    if isinstance(rtt, int | float):
        parts.append(_("rtt {rtt:.1f} ms").format(rtt=rtt))
    if tunnel.get("mtu") is not None:
        parts.append(_("mtu {mtu}").format(mtu=tunnel["mtu"]))
    if tunnel.get("primary"):
        parts.append(_("primary"))
    return ", ".join(parts)


def format_status(status: dict[str, Any]) -> list[str]:
    """The compact human summary of ``m6t status``."""
    state = str(status.get("state"))
    wanted = status.get("wanted")
    first = _("{state} (wanted {wanted})").format(state=state, wanted=wanted) if wanted else state
    if status.get("detail"):
        first += f": {status['detail']}"
    rows = [(_("state"), first)]
    address = status.get("address")
    interface = status.get("interface")
    where = _("{address} on {interface}").format(address=address, interface=interface)
    rows.append((_("address"), where if address and interface else address or "-"))
    rows.append((_("gateway"), schema.gateway_label(cast(schema.Status, status)) or "-"))
    rows.append((_("mtu"), format_mtu(status)))
    ka = status.get("keepalive") or {}
    rtt = ka.get("rtt_ms")
    keepalive = (
        _("no answer yet")
        if rtt is None
        else _("rtt {rtt:.1f} ms, answered {age}").format(rtt=rtt, age=_age(ka.get("age_s")))
    )
    if ka.get("interval_s"):
        keepalive += " " + _("(every {interval})").format(interval=_interval(ka["interval_s"]))
    rows.append((_("keepalive"), keepalive))
    rows.append((_("attachment"), format_attachment(status.get("attachment"))))
    tunnels = status.get("tunnels")
    if isinstance(tunnels, list) and (
        len(tunnels) > 1 or any(isinstance(t, dict) and t.get("uplink") for t in tunnels)
    ):
        # One tunnel per uplink: the rows above are the primary's; each tunnel in one line.
        rows.extend((_("tunnel"), format_tunnel(tunnel)) for tunnel in tunnels)
    counters = status.get("counters") or {}
    if counters:
        traffic = _("{sent} packets out, {received} in").format(
            sent=counters.get("tx_packets", 0), received=counters.get("rx_packets", 0)
        )
        rows.append((_("traffic"), traffic))
    history = status.get("regenerations")
    if isinstance(history, list) and history:
        last = history[-1] if isinstance(history[-1], dict) else {}
        changes = ngettext(
            "{count} new address, last: {reason}", "{count} new addresses, last: {reason}", len(history)
        ).format(count=len(history), reason=last.get("reason", "?"))
        rows.append((_("changes"), changes))
    for problem in status.get("problems") or []:
        text = f"[{problem.get('code')}] {problem.get('message')}"
        if problem.get("hint"):
            text += f" ({problem['hint']})"
        rows.append((_("problem"), text))
    if state == schema.TunnelState.SIGN_IN_REQUIRED.value:
        rows.append((_("sign in"), _("open a web page to sign in to this network; the tunnel connects by itself then")))
    if status.get("access") == schema.Access.READ_ONLY.value:
        rows.append((_("access"), _("read-only (changes need root or the operator group)")))
    # The labels in a column as wide as the longest one needs (translations are longer or shorter).
    width = max(11, *(len(label) for label, _value in rows))
    return [f"{label:<{width}} {value}" for label, value in rows]


def format_event(event: dict[str, Any]) -> str:
    """One line per event for ``m6t watch``."""
    stamp = time.strftime("%H:%M:%S", time.localtime(event.get("time", time.time())))
    kind = str(event.get("event"))
    data = event.get("data") or {}
    if kind == EventKind.STATE:
        text = f"{data.get('previous')} → {data.get('state')}"
        if data.get("detail"):
            text += f" ({data['detail']})"
    elif kind == EventKind.ATTACHMENT:
        text = format_attachment(data.get("attachment"))
    elif kind == EventKind.ADDRESS:
        text = f"{data.get('address') or '-'}"
        if data.get("previous"):
            text += " " + _("(was {previous})").format(previous=data["previous"])
        if data.get("reason"):
            text += f" [{data['reason']}]"
        gateway = schema.gateway_label(cast(schema.AddressEvent, data))
        if gateway and data.get("address"):
            text += " " + _("via {gateway}").format(gateway=gateway)
    elif kind == EventKind.KEEPALIVE:
        text = _("answered in {rtt:.1f} ms").format(rtt=data.get("rtt_ms", 0))
    elif kind == EventKind.COUNTERS:
        counters = data.get("counters") or {}
        text = _("{sent} packets out, {received} in").format(
            sent=counters.get("tx_packets", 0), received=counters.get("rx_packets", 0)
        )
    elif kind == EventKind.MTU:
        text = f"{data.get('previous')} → {data.get('mtu')}" + (f" ({data['reason']})" if data.get("reason") else "")
    elif kind == EventKind.ERROR:
        text = f"[{data.get('code')}] {data.get('message')}" + (f" ({data['detail']})" if data.get("detail") else "")
    elif kind == EventKind.CONFIG:
        text = _("changed {keys}").format(keys=", ".join(data.get("changed") or []))
    elif kind == EventKind.WANTED:
        text = _("tunnel wanted {wanted}").format(wanted=data.get("wanted"))
    elif kind == EventKind.TUNNELS:
        tunnels = data.get("tunnels") or []
        text = "; ".join(format_tunnel(tunnel) for tunnel in tunnels) or _("no tunnel")
    elif kind == EventKind.DROPPED:
        text = _("{count} events missed (this terminal was too slow)").format(count=data.get("count"))
    else:
        text = json.dumps(data, sort_keys=True)
    return f"{stamp}  {kind:<10}  {text}"


def format_log_entry(entry: dict[str, Any]) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.get("time", 0)))
    return f"{stamp}  {str(entry.get('level', '')).upper():<7}  {entry.get('message', '')}"


def format_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return _("(not set)")
    return json.dumps(value)


# ---------------------------------------------------------------------------------------- commands


Command = Callable[[argparse.Namespace, HelperClient, Output], int]
LocalCommand = Callable[[argparse.Namespace, Output], int]
"""A command that does not talk to the helper; its parser sets ``local_handler``."""
Extension = Callable[["_SubParsersAction[argparse.ArgumentParser]"], None]
"""Adds commands to ``m6t`` (the lab's, from :mod:`m6t.cli`)."""


def cmd_status(args: argparse.Namespace, helper: HelperClient, out: Output) -> int:
    status = helper.call(Method.STATUS)
    if args.json:
        out.json(status)
    else:
        for line in format_status(status):
            out.line(line)
    return EXIT_OK


def _wait_connected(helper: HelperClient, seconds: float) -> dict[str, Any] | None:
    deadline = time.monotonic() + seconds
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        event = helper.next_event(remaining)
        if event is None:
            return None
        if event["event"] == EventKind.STATE and event["data"].get("state") == schema.TunnelState.CONNECTED.value:
            status: dict[str, Any] = helper.call(Method.STATUS)
            return status


def cmd_up(args: argparse.Namespace, helper: HelperClient, out: Output) -> int:
    if args.wait:
        helper.subscribe([EventKind.STATE.value])
    status: dict[str, Any] = helper.call(Method.UP, timeout=max(30.0, args.wait or 0.0))
    if args.wait and status.get("state") != schema.TunnelState.CONNECTED.value:
        waited = _wait_connected(helper, args.wait)
        if waited is None:
            latest = helper.call(Method.STATUS)
            if args.json:
                out.json(latest)
            out.error(
                _("the tunnel is not connected after {seconds:g} s (state: {state})").format(
                    seconds=args.wait, state=latest.get("state")
                )
            )
            session = latest.get("session") or {}
            if latest.get("state") == schema.TunnelState.CONNECTING.value and session.get("probe") is None:
                # Nothing answers an address before traffic does (draft 2.4): without a probe, only the user's.
                out.error(
                    _(
                        "without tunnel.probe the tunnel is confirmed only when traffic comes back through it; "
                        "set it to an address that answers pings behind the gateway (the Home Agent's): "
                        "m6t config set tunnel.probe ADDRESS"
                    )
                )
            return EXIT_FAILED
        status = waited
    if args.json:
        out.json(status)
    else:
        out.line(_("tunnel wanted up; state {state}").format(state=status.get("state")) + _address_suffix(status))
    return EXIT_OK


def _address_suffix(status: dict[str, Any]) -> str:
    return _(", address {address}").format(address=status["address"]) if status.get("address") else ""


def cmd_down(args: argparse.Namespace, helper: HelperClient, out: Output) -> int:
    status = helper.call(Method.DOWN, timeout=30.0)
    if args.json:
        out.json(status)
    else:
        out.line(_("tunnel wanted down; state {state}").format(state=status.get("state")))
    return EXIT_OK


def cmd_watch(args: argparse.Namespace, helper: HelperClient, out: Output) -> int:
    kinds = [k.strip() for k in args.events.split(",") if k.strip()] if args.events else None
    result = helper.subscribe(kinds)
    if args.json:
        out.json({"status": result["status"]})
    else:
        status = result["status"]
        watching = _("watching {path} (Ctrl-C to stop); state {state}").format(
            path=helper.path, state=status.get("state")
        )
        out.line(watching + _address_suffix(status))
    count = 0
    deadline = None if args.duration is None else time.monotonic() + args.duration
    while args.count is None or count < args.count:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            break
        event = helper.next_event(remaining)
        if event is None:
            continue
        count += 1
        if args.json:
            out.out.write(json.dumps(event, sort_keys=True) + "\n")
            out.out.flush()
        else:
            out.line(format_event(dict(event)))
    return EXIT_OK


def cmd_log(args: argparse.Namespace, helper: HelperClient, out: Output) -> int:
    page = helper.call(Method.LOG, {"limit": args.limit})
    if args.json:
        out.json(page)
        return EXIT_OK
    if page.get("dropped"):
        out.line(_("({count} older entries no longer kept)").format(count=page["dropped"]))
    for entry in page["entries"]:
        out.line(format_log_entry(entry))
    return EXIT_OK


def cmd_config_get(args: argparse.Namespace, helper: HelperClient, out: Output) -> int:
    params = {"key": args.key} if args.key else None
    result = helper.call(Method.CONFIG_GET, params)
    if args.json:
        out.json({"key": args.key, "value": result.get("value")} if args.key else result["config"])
    elif args.key:
        out.line(format_value(result.get("value")))
    else:
        out.out.write(f"# {result['path']}\n{result['toml']}")
        out.out.flush()
    return EXIT_OK


def cmd_config_set(args: argparse.Namespace, helper: HelperClient, out: Output) -> int:
    result = helper.call(Method.CONFIG_SET, {"changes": {args.key: args.value}}, timeout=30.0)
    if args.json:
        out.json(result)
        return EXIT_OK
    value = result["config"].get(args.key.split(".", 1)[0], {}).get(args.key.split(".", 1)[-1])
    if result.get("changed"):
        out.line(_("{key} = {value} (saved and applied)").format(key=args.key, value=format_value(value)))
    else:
        out.line(_("{key} = {value} (unchanged)").format(key=args.key, value=format_value(value)))
    return EXIT_OK


def cmd_config_check(args: argparse.Namespace, out: Output) -> int:
    """Validate a file as the helper would load it, without applying it: every problem, exit 0 or 1."""
    path: Path | None = Path(args.file) if args.file else None
    if path is None:
        # The file the running helper uses, read here with the caller's rights.
        with HelperClient(args.socket) as helper:
            path = Path(helper.call(Method.CONFIG_GET)["path"])
    try:
        load_client_config(path)
    except ConfigError as exc:
        if args.json:
            out.json(
                {
                    "file": str(path),
                    "ok": False,
                    "problems": [{"key": p.key, "message": p.message} for p in exc.problems],
                }
            )
        else:
            for line in str(exc).splitlines():
                out.error(line)
        return EXIT_FAILED
    if args.json:
        out.json({"file": str(path), "ok": True, "problems": []})
    else:
        out.line(_("{path}: ok").format(path=path))
    return EXIT_OK


def cmd_diag(args: argparse.Namespace, helper: HelperClient, out: Output) -> int:
    result = helper.call(Method.DIAGNOSTICS, timeout=60.0)
    target = Path(args.out) if args.out else Path(f"m6t-diagnostics-{time.strftime('%Y%m%d-%H%M%S')}.json")
    # Written by the caller, with the caller's rights: the helper never writes where a user points it.
    try:
        target.write_text(json.dumps(result["bundle"], indent=1, sort_keys=True, default=str) + "\n", "utf-8")
    except OSError as exc:
        out.error(_("cannot write {path}: {why}").format(path=target, why=exc.strerror or exc))
        return EXIT_FAILED
    if args.json:
        out.json({"out": str(target), "helper_copy": result.get("path")})
    else:
        out.line(_("diagnostics written to {path}").format(path=target))
        if result.get("path"):
            out.line(_("(the helper kept a copy in {path})").format(path=result["path"]))
    return EXIT_OK


def cmd_probe_mtu(args: argparse.Namespace, helper: HelperClient, out: Output) -> int:
    result = helper.call(Method.MTU_PROBE, timeout=90.0)
    if args.json:
        out.json(result)
    else:
        text = _("path MTU through the tunnel: {mtu}").format(mtu=result["mtu"])
        extras = []
        if result.get("found"):
            how = _("found by {how}").format(how=result["found"])
            if result.get("probes"):
                how += ", " + _("{probes} probes in {seconds:.2f} s").format(
                    probes=result["probes"], seconds=result.get("duration", 0)
                )
            extras.append(how)
        if result.get("previous") is not None:
            extras.append(_("interface MTU {mtu}").format(mtu=result["previous"]))
        if extras:
            text += f" ({'; '.join(extras)})"
        out.line(text)
    return EXIT_OK


def cmd_key_set(args: argparse.Namespace, helper: HelperClient, out: Output) -> int:
    """Read the access key without echoing it (or from stdin) and hand it to the helper; show its fingerprint."""
    if args.stdin or not sys.stdin.isatty():
        text = sys.stdin.readline(256)
    else:
        text = getpass.getpass(_("Access key (the base64 line m6t-gateway keys add printed): "))
    try:
        decode_key(text)
    except ValueError as exc:
        out.error(_("that is {problem}").format(problem=exc))
        return EXIT_USAGE
    result = helper.call(Method.ACCESS_KEY, {"key": text.strip()})
    if args.json:
        out.json(result)
    else:
        out.line(
            _("access key {fingerprint} stored ({where})").format(
                fingerprint=result["fingerprint"], where=result["stored"]
            )
        )
    return EXIT_OK


# ------------------------------------------------------------------------------------------ parsing


def build_parser(extensions: Sequence[Extension] = ()) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="m6t",
        description=_("Control the m6t tunnel through the m6t-helper service."),
        epilog=_("exit codes: 0 ok, 1 failed, 2 usage, 3 helper unreachable, 4 not allowed"),
    )
    address = control_address()
    parser.add_argument(
        "--socket",
        default=os.environ.get(SOCKET_ENV, address),
        metavar="ADDRESS",
        help=_("where the helper listens: a socket path, a pipe name on Windows (default: ${env} or {address})").format(
            env=SOCKET_ENV, address=address
        ),
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help=_("machine-readable output"))
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("status", parents=[common], help=_("show the tunnel's state"))
    p.set_defaults(handler=cmd_status)
    p = sub.add_parser("up", parents=[common], help=_("bring the tunnel up (remembered across restarts)"))
    p.add_argument("--wait", type=float, metavar="SECONDS", help=_("wait until connected, fail after SECONDS"))
    p.set_defaults(handler=cmd_up)
    p = sub.add_parser("down", parents=[common], help=_("bring the tunnel down (remembered across restarts)"))
    p.set_defaults(handler=cmd_down)
    p = sub.add_parser("watch", parents=[common], help=_("follow the helper's events live"))
    p.add_argument("--events", help=_("comma-separated event names (default: all)"))
    p.add_argument("--count", type=int, help=_("stop after this many events"))
    p.add_argument("--duration", type=float, metavar="SECONDS", help=_("stop after this long"))
    p.set_defaults(handler=cmd_watch)
    p = sub.add_parser("log", parents=[common], help=_("show the helper's recent log"))
    p.add_argument("--limit", type=int, default=50, help=_("how many entries (default %(default)s)"))
    p.set_defaults(handler=cmd_log)

    config = sub.add_parser("config", help=_("read or change the configuration"))
    config_sub = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    p = config_sub.add_parser("get", parents=[common], help=_("print the configuration, or one setting"))
    p.add_argument("key", nargs="?", metavar="KEY", help=_("section.key, e.g. tunnel.mtu"))
    p.set_defaults(handler=cmd_config_get)
    p = config_sub.add_parser("set", parents=[common], help=_("change one setting (validated, saved, applied)"))
    p.add_argument("key", metavar="KEY", help=_("section.key, e.g. tunnel.mtu"))
    p.add_argument("value", metavar="VALUE", help=_('e.g. 1400, true, "[3544, 4500]", gw.example.org'))
    p.set_defaults(handler=cmd_config_set)
    p = config_sub.add_parser("check", parents=[common], help=_("validate a configuration file without applying it"))
    p.add_argument("file", nargs="?", metavar="FILE", help=_("the file to check (default: the one the helper uses)"))
    p.set_defaults(local_handler=cmd_config_check)

    p = sub.add_parser("diag", parents=[common], help=_("write a diagnostics bundle"))
    p.add_argument("--out", metavar="FILE", help=_("where to write it (default: ./m6t-diagnostics-TIME.json)"))
    p.set_defaults(handler=cmd_diag)
    p = sub.add_parser(
        "probe-mtu",
        parents=[common],
        help=_("search the largest packet the tunnel carries now (applied as its MTU when tunnel.pmtud is on)"),
    )
    p.set_defaults(handler=cmd_probe_mtu)
    key = sub.add_parser("key", help=_("the access key for an enrolled gateway"))
    key_sub = key.add_subparsers(dest="key_command", metavar="ACTION", required=True)
    p = key_sub.add_parser(
        "set", parents=[common], help=_("store the access key (asked without echo, or read from stdin)")
    )
    p.add_argument("--stdin", action="store_true", help=_("read the key from standard input"))
    p.set_defaults(handler=cmd_key_set)

    for extend in extensions:
        extend(sub)
    return parser


def _report_failure(exc: RequestFailed, out: Output) -> int:
    if exc.problems:
        out.error(exc.message)
        for problem in exc.problems:
            key = problem.get("key") or _("configuration")
            out.error(f"{key}: {problem.get('message')}")
    else:
        text = exc.message
        if exc.hint:
            text += f" ({exc.hint})"
        out.error(text)
    return EXIT_FORBIDDEN if exc.code == ErrorCode.FORBIDDEN else EXIT_FAILED


def main(
    argv: list[str] | None = None,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    extensions: Sequence[Extension] = (),
) -> int:
    out = Output(stdout or sys.stdout, stderr or sys.stderr)
    parser = build_parser(extensions)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    try:
        local_handler: LocalCommand | None = getattr(args, "local_handler", None)
        if local_handler is not None:
            return local_handler(args, out)
        handler: Command = args.handler
        with HelperClient(args.socket) as helper:
            return handler(args, helper, out)
    except HelperUnavailable as exc:
        out.error(
            _("cannot reach the helper at {path}: is m6t-helper running? ({command})").format(
                path=exc.path, command=conventions().start_helper
            )
        )
        return EXIT_UNREACHABLE
    except RequestFailed as exc:
        return _report_failure(exc, out)
    except HelperTimeout as exc:
        out.error(str(exc))
        return EXIT_FAILED
    except HelperError as exc:
        out.error(str(exc))
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `m6t watch | head` closing the pipe is a normal way to stop.
        return EXIT_OK
