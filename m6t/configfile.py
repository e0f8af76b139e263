"""Configuration files validated as a whole: every problem is found and reported in one go.

A :class:`Reader` walks a parsed TOML document (or the same shape from JSON, for the control
API).  Each getter validates one key with a *converter*; a bad value is recorded as a
:class:`Problem` naming the file and the dotted key, and the getter hands back a placeholder so
reading can go on and find the next problem.  :meth:`Reader.finish` then reports every key
nobody asked for (with a "did you mean ...?" when one is close) and raises a single
:class:`ConfigError` if anything was wrong, so callers only ever see a complete, valid
configuration or an exception: the placeholders never escape.

Converters are plain callables ``object -> T`` raising :class:`Invalid`; they compose
(:func:`array`, :func:`refine`) so the client and gateway modules only describe their schema.
"""

from __future__ import annotations

import difflib
import math
import re
import tomllib
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from enum import Enum
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from pathlib import Path
from typing import Any, Final, TypeVar

T = TypeVar("T")

Converter = Callable[[object], T]
"""Turns a raw TOML/JSON value into a typed one, or raises :class:`Invalid`."""

IFNAMSIZ: Final = 16
"""Linux interface names hold 15 characters plus the terminating NUL."""


# --------------------------------------------------------------------------- errors


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a configuration: where (file and dotted key) and what."""

    file: str
    key: str
    message: str

    def __str__(self) -> str:
        # Some problems (an unreadable file) belong to no key; "FILE: : message" would look broken.
        return f"{self.file}: {self.key}: {self.message}" if self.key else f"{self.file}: {self.message}"


class ConfigError(ValueError):
    """A configuration was rejected; ``problems`` lists every reason, one line each in ``str()``."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(problem) for problem in self.problems)

    def __reduce__(self) -> tuple[type[ConfigError], tuple[list[Problem]]]:
        # The default reduction would rebuild from the joined text, not from the problems.
        return (type(self), (self.problems,))

    @classmethod
    def single(cls, file: str, key: str, message: str) -> ConfigError:
        return cls([Problem(file, key, message)])


class Invalid(Exception):
    """Raised by a converter.  ``items`` pairs a key suffix ("" or "[2]") with a message."""

    def __init__(self, message: str = "", *, items: Sequence[tuple[str, str]] = ()) -> None:
        self.items: list[tuple[str, str]] = list(items) if items else [("", message)]
        super().__init__("; ".join(f"{suffix} {text}".strip() for suffix, text in self.items))


# --------------------------------------------------------------------------- describing values


def _short(text: str, limit: int = 40) -> str:
    shown = repr(text)
    return shown if len(shown) <= limit else shown[: limit - 4] + "...'"


def _int_text(value: int) -> str:
    # str() of a huge int raises past 4300 digits, and nobody wants to read 64 digits anyway.
    return str(value) if value.bit_length() <= 64 else "a very large integer"


def describe(value: object) -> str:
    """The TOML type of ``value`` with a short rendering, for "must be X, not Y" messages."""
    if isinstance(value, bool):
        return f"a boolean ({'true' if value else 'false'})"
    if isinstance(value, int):
        return f"an integer ({_int_text(value)})"
    if isinstance(value, float):
        return f"a float ({value!r})"
    if isinstance(value, str):
        return f"a string ({_short(value)})"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, Mapping):
        return "a table"
    # datetime is a subclass of date: test it first.
    if isinstance(value, datetime):
        return "a date-time"
    if isinstance(value, date):
        return "a date"
    if isinstance(value, time):
        return "a time"
    if value is None:
        return "null"
    return f"a {type(value).__name__}"


def _number_text(value: float) -> str:
    return _int_text(value) if isinstance(value, int) else repr(value)


def _check_range(value: float, min_value: float | None, max_value: float | None) -> None:
    too_low = min_value is not None and value < min_value
    too_high = max_value is not None and value > max_value
    if not (too_low or too_high):
        return
    shown = _number_text(value)
    if min_value is not None and max_value is not None:
        raise Invalid(f"must be in the range {_number_text(min_value)}..{_number_text(max_value)}, not {shown}")
    if too_low:
        raise Invalid(f"must be at least {_number_text(min_value or 0)}, not {shown}")
    raise Invalid(f"must be at most {_number_text(max_value or 0)}, not {shown}")


# --------------------------------------------------------------------------- converters


def integer(min_value: int | None = None, max_value: int | None = None) -> Converter[int]:
    """An integer in range; booleans and integral floats are refused (``mtu = true`` is a mistake)."""

    def convert(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"must be an integer, not {describe(value)}")
        _check_range(value, min_value, max_value)
        return value

    return convert


def number(
    min_value: float | None = None, max_value: float | None = None, *, greater_than: float | None = None
) -> Converter[float]:
    """An integer or float in range, returned as a finite float."""

    def convert(value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Invalid(f"must be a number, not {describe(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise Invalid(f"must be a finite number, not {value!r}")
        if greater_than is not None and value <= greater_than:
            raise Invalid(f"must be greater than {_number_text(greater_than)}, not {_number_text(value)}")
        # Compare before converting: float() of a huge int overflows, int-vs-float compares are exact.
        _check_range(value, min_value, max_value)
        try:
            return float(value)
        except OverflowError:
            raise Invalid("is too large") from None

    return convert


def boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise Invalid(f"must be true or false, not {describe(value)}")
    return value


def _forbidden_character(value: str) -> str | None:
    for char in value:
        # Control characters hide in terminals and logs; lone surrogates (possible from JSON)
        # cannot be written back as TOML.
        if unicodedata.category(char) in ("Cc", "Cs"):
            return f"U+{ord(char):04X}"
    return None


def text(min_length: int = 0, max_length: int | None = None) -> Converter[str]:
    """A string of printable characters (no control characters) within a length range."""

    def convert(value: object) -> str:
        if not isinstance(value, str):
            raise Invalid(f"must be a string, not {describe(value)}")
        bad = _forbidden_character(value)
        if bad is not None:
            raise Invalid(f"must not contain control characters ({bad})")
        if len(value) < min_length:
            raise Invalid("must not be empty" if min_length == 1 else f"must be at least {min_length} characters")
        if max_length is not None and len(value) > max_length:
            raise Invalid(f"must be at most {max_length} characters, not {len(value)}")
        return value

    return convert


_string = text()


def refine(convert: Converter[T], check: Callable[[T], str | None]) -> Converter[T]:
    """``convert``, then ``check`` (which returns a message when the value is unacceptable)."""

    def refined(value: object) -> T:
        result = convert(value)
        message = check(result)
        if message is not None:
            raise Invalid(message)
        return result

    return refined


def ipv4_address(value: object) -> IPv4Address:
    """An IPv4 literal in dotted-quad form."""
    raw = _string(value)
    try:
        return IPv4Address(raw)
    except ValueError as exc:
        raise Invalid(f"{_short(raw)} is not an IPv4 address ({exc})") from None


def ipv6_address(value: object) -> IPv6Address:
    """An IPv6 literal without a zone: configured addresses must not depend on a local link name."""
    raw = _string(value)
    try:
        address = IPv6Address(raw)
    except ValueError as exc:
        raise Invalid(f"{_short(raw)} is not an IPv6 address ({exc})") from None
    if address.scope_id is not None:
        raise Invalid(f"{_short(raw)} carries a zone (%{address.scope_id}); give the address alone")
    return address


def ipv6_unicast(value: object) -> IPv6Address:
    """An IPv6 address that can be a packet's destination through a tunnel."""
    address = ipv6_address(value)
    if address.is_multicast:
        raise Invalid(f"{address} is a multicast address; a unicast address is needed")
    if address.is_unspecified or address.is_loopback:
        raise Invalid(f"{address} is {'unspecified' if address.is_unspecified else 'loopback'}; it is not reachable")
    return address


def ipv6_network(value: object) -> IPv6Network:
    """An IPv6 prefix in CIDR form with no host bits set (a typo there usually means a wrong prefix)."""
    raw = _string(value)
    if "/" not in raw:
        raise Invalid(f"{_short(raw)} is not an IPv6 prefix: the length is missing (write it as ADDRESS/LENGTH)")
    try:
        network = IPv6Network(raw, strict=True)
    except ValueError as exc:
        try:
            loose = IPv6Network(raw, strict=False)
        except ValueError:
            raise Invalid(f"{_short(raw)} is not an IPv6 prefix ({exc})") from None
        raise Invalid(f"{_short(raw)} has host bits set: did you mean {loose}?") from None
    if network.network_address.scope_id is not None:
        raise Invalid(f"{_short(raw)} carries a zone; give the prefix alone")
    return network


_LABEL: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def host_name_problem(name: str) -> str | None:
    """Why ``name`` is not an RFC 1123 host name, or ``None``.  Syntax only: nothing is resolved."""
    bare = name[:-1] if name.endswith(".") else name
    if not bare:
        return "must not be empty"
    if len(bare) > 253:
        return f"is {len(bare)} characters long; a host name has at most 253"
    labels = bare.split(".")
    for label in labels:
        if not _LABEL.fullmatch(label):
            return (
                f"{_short(name)} is not a valid host name: each dot-separated label must be 1 to 63 letters, "
                "digits or hyphens, not starting or ending with a hyphen"
            )
    # RFC 1123 2.1: a name never looks like a dotted number, so "10.0.0.300" is a bad address, not a name.
    if labels[-1].isdigit():
        return f"{_short(name)} is not a valid IPv4 address"
    return None


def host_or_ipv4(value: object) -> str:
    """An IPv4 literal (normalized) or a syntactically valid host name (kept as written)."""
    raw = _string(value)
    if ":" in raw:
        raise Invalid(f"{_short(raw)} looks like an IPv6 address; the gateway is reached over IPv4")
    try:
        return str(IPv4Address(raw))
    except ValueError:
        pass
    problem = host_name_problem(raw)
    if problem is not None:
        raise Invalid(problem)
    return raw


_IFNAME: Final = re.compile(r"[A-Za-z0-9_.-]+")


def interface_name(value: object) -> str:
    """A network interface name every supported OS accepts."""
    raw = _string(value)
    if not raw:
        raise Invalid("must not be empty")
    if len(raw) >= IFNAMSIZ:
        raise Invalid(f"{_short(raw)} is {len(raw)} characters long; an interface name has at most {IFNAMSIZ - 1}")
    if not _IFNAME.fullmatch(raw):
        raise Invalid(f"{_short(raw)} may only contain letters, digits, '_', '.' and '-'")
    if raw in (".", ".."):
        raise Invalid(f"{raw!r} is not a usable interface name")
    return raw


port = integer(1, 65535)
"""A UDP/TCP port a peer can send to (0 would mean "any", useless in a configuration)."""


def array(item: Converter[T], *, min_items: int = 0, unique: bool = False) -> Converter[tuple[T, ...]]:
    """An array of ``item`` (order kept), reporting every bad element by index."""

    def convert(value: object) -> tuple[T, ...]:
        if not isinstance(value, list | tuple):
            raise Invalid(f"must be an array, not {describe(value)}")
        converted: list[T] = []
        failures: list[tuple[str, str]] = []
        for index, element in enumerate(value):
            try:
                converted.append(item(element))
            except Invalid as exc:
                failures.extend((f"[{index}]{suffix}", message) for suffix, message in exc.items)
        if failures:
            raise Invalid(items=failures)
        if len(converted) < min_items:
            raise Invalid("must not be empty" if min_items == 1 else f"must have at least {min_items} elements")
        if unique:
            first_seen: dict[T, int] = {}
            repeats: list[tuple[str, str]] = []
            for index, element in enumerate(converted):
                if element in first_seen:
                    repeats.append((f"[{index}]", f"repeats {element} (already at index {first_seen[element]})"))
                else:
                    first_seen[element] = index
            if repeats:
                raise Invalid(items=repeats)
        return tuple(converted)

    return convert


# --------------------------------------------------------------------------- the reader


class _Missing(Enum):
    MISSING = "missing"


_MISSING: Final = _Missing.MISSING


class Reader:
    """One table of a configuration under validation; :meth:`section` gives the nested ones.

    All readers of a document share one problem list.  Every key a getter asks for becomes
    "known"; :meth:`finish` (on the root) reports the rest as unknown.  ``None`` values (JSON
    ``null``) count as absent, so a control-API client can clear an optional key.
    """

    __slots__ = ("_data", "_known", "_path", "_problems", "_sections", "source")

    def __init__(self, data: object, source: str) -> None:
        self.source = source
        self._path = ""
        self._problems: list[Problem] = []
        self._known: set[str] = set()
        self._sections: dict[str, Reader] = {}
        self._data: Mapping[Any, object] = {}
        if isinstance(data, Mapping):
            self._data = data
        else:
            self._problems.append(Problem(source, "", f"must be a table of sections, not {describe(data)}"))

    @property
    def problems(self) -> list[Problem]:
        return list(self._problems)

    def key_path(self, key: str) -> str:
        return f"{self._path}.{key}" if self._path else key

    def problem(self, key: str, message: str) -> None:
        """Record a problem with ``key`` of this table (cross-key rules use this directly)."""
        self._problems.append(Problem(self.source, self.key_path(key), message))

    def section(self, name: str) -> Reader:
        """The sub-table ``name``; an absent one reads as empty, so every default applies."""
        if name in self._sections:
            return self._sections[name]
        child = Reader({}, self.source)
        child._path = self.key_path(name)
        child._problems = self._problems
        self._known.add(name)
        self._sections[name] = child
        value = self._data.get(name)
        if isinstance(value, Mapping):
            child._data = value
        elif value is not None:
            self.problem(name, f"must be a table (a [{child._path}] section), not {describe(value)}")
        return child

    def _take(self, key: str) -> object:
        self._known.add(key)
        value = self._data.get(key)
        return _MISSING if value is None else value

    def has(self, key: str) -> bool:
        return self._take(key) is not _MISSING

    def _record(self, key: str, exc: Invalid) -> None:
        for suffix, message in exc.items:
            self._problems.append(Problem(self.source, self.key_path(key) + suffix, message))

    def get(self, key: str, convert: Converter[T], default: T) -> T:
        """The converted value of ``key``, or ``default`` when absent (or, recorded, when invalid)."""
        value = self._take(key)
        if value is _MISSING:
            return default
        try:
            return convert(value)
        except Invalid as exc:
            self._record(key, exc)
            return default

    def get_optional(
        self, key: str, convert: Converter[T], *, required: bool = False, empty_is_none: bool = False
    ) -> T | None:
        """The converted value, or ``None`` when absent or invalid (a required absent key is a problem).

        ``empty_is_none``: ``""`` means "not set", because TOML has no null and a command line
        needs some way to clear an optional setting.
        """
        value = self._take(key)
        if value is _MISSING or (empty_is_none and value == ""):
            if required:
                self.problem(key, "is required")
            return None
        try:
            return convert(value)
        except Invalid as exc:
            self._record(key, exc)
            return None

    def get_int(self, key: str, default: int, *, min_value: int | None = None, max_value: int | None = None) -> int:
        return self.get(key, integer(min_value, max_value), default)

    def get_number(
        self,
        key: str,
        default: float,
        *,
        min_value: float | None = None,
        max_value: float | None = None,
        greater_than: float | None = None,
    ) -> float:
        return self.get(key, number(min_value, max_value, greater_than=greater_than), default)

    def get_bool(self, key: str, default: bool) -> bool:
        return self.get(key, boolean, default)

    def get_str(self, key: str, default: str, *, min_length: int = 0, max_length: int | None = None) -> str:
        return self.get(key, text(min_length, max_length), default)

    def get_list_of(
        self, key: str, item: Converter[T], default: Sequence[T], *, min_items: int = 0, unique: bool = False
    ) -> tuple[T, ...]:
        return self.get(key, array(item, min_items=min_items, unique=unique), tuple(default))

    def get_ipv4(self, key: str, default: IPv4Address) -> IPv4Address:
        return self.get(key, ipv4_address, default)

    def get_ipv6(self, key: str, default: IPv6Address) -> IPv6Address:
        return self.get(key, ipv6_address, default)

    def get_ipv6_network(self, key: str, default: IPv6Network) -> IPv6Network:
        return self.get(key, ipv6_network, default)

    # ----------------------------------------------------------------------- unknown keys

    def _walk(self) -> Iterable[Reader]:
        yield self
        for child in self._sections.values():
            yield from child._walk()

    def known_keys(self) -> list[str]:
        """Every dotted key the getters asked for, sections excluded, in reading order of sections."""
        keys: list[str] = []
        for reader in self._walk():
            keys.extend(sorted(reader.key_path(k) for k in reader._known if k not in reader._sections))
        return keys

    def _suggestion(self, reader: Reader, key: str, all_keys: Sequence[str]) -> str:
        here = sorted(k for k in reader._known if k not in reader._sections)
        close = difflib.get_close_matches(key, here, n=1)
        if close:
            return f"; did you mean {reader.key_path(close[0])}?"
        sections = sorted(reader._sections)
        close = difflib.get_close_matches(key, sections, n=1)
        if close:
            return f"; did you mean [{reader.key_path(close[0])}]?"
        # A right key in the wrong section is a common slip: point at where it belongs.
        by_name: dict[str, str] = {}
        for path in all_keys:
            by_name.setdefault(path.rsplit(".", 1)[-1], path)
        close = difflib.get_close_matches(key, sorted(by_name), n=1)
        if close:
            return f"; did you mean {by_name[close[0]]}?"
        return ""

    def finish(self) -> None:
        """Report unknown keys everywhere, then raise :class:`ConfigError` if anything was wrong."""
        all_keys = self.known_keys()
        for reader in self._walk():
            for raw_key, value in reader._data.items():
                if raw_key in reader._known:
                    continue
                key = str(raw_key)
                what = "section" if isinstance(value, Mapping) and not reader._path else "key"
                hint = self._suggestion(reader, key, all_keys)
                self._problems.append(Problem(self.source, reader.key_path(key), f"unknown {what}{hint}"))
        if self._problems:
            raise ConfigError(self._problems)


# --------------------------------------------------------------------------- TOML in


_POSITION: Final = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")


def parse_toml(text: str, source: str) -> dict[str, Any]:
    """Parse TOML text; a syntax error becomes a :class:`ConfigError` naming the file and line."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = _POSITION.search(message)
        if found:
            line, column = found.groups()
            reason = message[: found.start()]
            raise ConfigError.single(
                source, f"line {line}", f"TOML syntax error at column {column}: {reason}"
            ) from None
        if message.endswith("(at end of document)"):
            reason = message.removesuffix("(at end of document)").strip()
            last = text.count("\n") + 1
            raise ConfigError.single(
                source, f"line {last}", f"TOML syntax error at the end of the file: {reason}"
            ) from None
        raise ConfigError.single(source, "", f"TOML syntax error: {message}") from None
    except ValueError as exc:
        # tomllib lets int() overflow its digit limit through as a bare ValueError.
        raise ConfigError.single(source, "", f"TOML value out of range: {exc}") from None
    except RecursionError:
        raise ConfigError.single(source, "", "TOML arrays or tables are nested too deeply") from None


def read_toml_file(path: str | Path) -> tuple[dict[str, Any], str]:
    """Read and parse a TOML file; returns the document and the name problems should carry."""
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError.single(source, "", f"cannot read the file: {exc.strerror or exc}") from None
    try:
        # utf-8-sig: Windows editors like to start UTF-8 files with a byte-order mark.
        decoded = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError.single(source, f"line {line}", "the file is not UTF-8 text") from None
    return parse_toml(decoded, source), source


def parse_cli_value(raw: str) -> object:
    """A command-line value: a TOML value when ``raw`` is one (``1400``, ``[1, 2]``, ``true``,
    ``"x"``), otherwise ``raw`` itself, so ``gw.example.org`` needs no quoting."""
    try:
        document = tomllib.loads(f"value = {raw}")
    except (ValueError, RecursionError):
        return raw
    # "1\nother = 2" parses too, but it is not one value.
    if list(document) != ["value"]:
        return raw
    return document["value"]


# --------------------------------------------------------------------------- TOML out


_BARE_KEY: Final = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES: Final = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def toml_string(value: str) -> str:
    out = ['"']
    for char in value:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else toml_string(key)


def toml_value(value: object) -> str:
    """One TOML value (scalars and arrays of them: all these configuration files hold)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        # repr() is the shortest text that reads back to the same float, and is valid TOML.
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(element) for element in value) + "]"
    raise TypeError(f"cannot write {describe(value)} as a TOML value")


def dump_toml(document: Mapping[str, Mapping[str, object]]) -> str:
    """TOML text for a document of flat sections; empty sections are left out."""
    blocks: list[str] = []
    for section, table in document.items():
        if not table:
            continue
        lines = [f"[{toml_key(section)}]"]
        lines.extend(f"{toml_key(key)} = {toml_value(value)}" for key, value in table.items())
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def plain_number(value: float) -> int | float:
    """Whole floats as ints, so a dumped ``30`` stays ``30`` rather than becoming ``30.0``.

    An ``int`` is a valid ``float`` to the type checker, so one may arrive here as it is."""
    if isinstance(value, int):
        return value
    if value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value
