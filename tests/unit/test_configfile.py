"""The shared configuration machinery: converters, the reader, TOML in and out."""

from __future__ import annotations

import math
import pickle
import tomllib
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from m6t.configfile import (
    ConfigError,
    Converter,
    Invalid,
    Problem,
    Reader,
    array,
    boolean,
    describe,
    dump_toml,
    host_name_problem,
    host_or_ipv4,
    integer,
    interface_name,
    ipv4_address,
    ipv6_address,
    ipv6_network,
    ipv6_unicast,
    number,
    parse_cli_value,
    parse_toml,
    plain_number,
    read_toml_file,
    refine,
    text,
    toml_value,
)


def invalid_message(convert: Converter[Any], value: object) -> str:
    with pytest.raises(Invalid) as info:
        convert(value)
    return str(info.value)


# --------------------------------------------------------------------------- errors


def test_problem_str_names_file_and_key() -> None:
    assert str(Problem("c.toml", "tunnel.mtu", "too small")) == "c.toml: tunnel.mtu: too small"
    assert str(Problem("c.toml", "", "cannot read")) == "c.toml: cannot read"


def test_config_error_lists_one_problem_per_line_and_pickles() -> None:
    problems = [Problem("a.toml", "x.y", "bad"), Problem("a.toml", "x.z", "worse")]
    error = ConfigError(problems)
    assert error.problems == problems
    assert str(error).splitlines() == ["a.toml: x.y: bad", "a.toml: x.z: worse"]
    assert isinstance(error, ValueError)
    clone = pickle.loads(pickle.dumps(error))
    assert clone.problems == problems
    assert str(clone) == str(error)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, "a boolean (true)"),
        (3, "an integer (3)"),
        (2**100, "an integer (a very large integer)"),
        (1.5, "a float (1.5)"),
        ("x", "a string ('x')"),
        ("y" * 100, "a string ('yyyy"),
        ([1], "an array"),
        ({"a": 1}, "a table"),
        (tomllib.loads("d = 1979-05-27T07:32:00Z")["d"], "a date-time"),
        (tomllib.loads("d = 1979-05-27")["d"], "a date"),
        (tomllib.loads("d = 07:32:00")["d"], "a time"),
        (None, "null"),
        (object(), "a object"),
    ],
)
def test_describe(value: object, expected: str) -> None:
    assert describe(value).startswith(expected)


# --------------------------------------------------------------------------- converters


def test_integer_refuses_bool_float_and_string() -> None:
    convert = integer(1, 10)
    assert convert(5) == 5
    assert "must be an integer, not a boolean" in invalid_message(convert, True)
    assert "must be an integer, not a float" in invalid_message(convert, 5.0)
    assert "must be an integer, not a string" in invalid_message(convert, "5")


@pytest.mark.parametrize(
    ("convert", "value", "message"),
    [
        (integer(1, 10), 0, "must be in the range 1..10, not 0"),
        (integer(1, 10), 11, "must be in the range 1..10, not 11"),
        (integer(1), 0, "must be at least 1, not 0"),
        (integer(None, 5), 6, "must be at most 5, not 6"),
        (integer(1, 10), 2**100, "not a very large integer"),
    ],
)
def test_integer_range_messages(convert: Converter[int], value: int, message: str) -> None:
    assert message in invalid_message(convert, value)


def test_number_accepts_int_and_float_as_float() -> None:
    convert = number(1, 10)
    assert convert(2) == 2.0
    assert isinstance(convert(2), float)
    assert convert(2.5) == 2.5


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "must be a number, not a boolean"),
        ("1", "must be a number, not a string"),
        (math.nan, "must be a finite number"),
        (math.inf, "must be a finite number"),
        (0.5, "must be in the range 1..10, not 0.5"),
        (10**400, "must be in the range 1..10"),
    ],
)
def test_number_rejects(value: object, message: str) -> None:
    assert message in invalid_message(number(1, 10), value)


def test_number_greater_than_and_overflow() -> None:
    assert "must be greater than 0, not 0" in invalid_message(number(greater_than=0), 0)
    assert "too large" in invalid_message(number(), 10**400)
    assert number(greater_than=0)(1e-9) == 1e-9


def test_boolean() -> None:
    assert boolean(False) is False
    assert "must be true or false, not an integer" in invalid_message(boolean, 1)
    assert "not a string" in invalid_message(boolean, "true")


def test_text() -> None:
    assert text()("") == ""
    assert text()("héllo wörld") == "héllo wörld"
    assert "must not be empty" in invalid_message(text(1), "")
    assert "at least 3 characters" in invalid_message(text(3), "ab")
    assert "at most 2 characters, not 3" in invalid_message(text(0, 2), "abc")
    assert "control characters (U+0007)" in invalid_message(text(), "a\x07")
    assert "control characters (U+D800)" in invalid_message(text(), "a\ud800")
    assert "must be a string, not an integer" in invalid_message(text(), 1)


def test_refine_adds_a_check() -> None:
    even = refine(integer(), lambda n: None if n % 2 == 0 else f"{n} is odd")
    assert even(4) == 4
    assert invalid_message(even, 3) == "3 is odd"
    assert "must be an integer" in invalid_message(even, "x")


def test_ip_converters() -> None:
    assert ipv4_address("198.51.100.2") == IPv4Address("198.51.100.2")
    assert "is not an IPv4 address" in invalid_message(ipv4_address, "198.51.100.256")
    assert "must be a string" in invalid_message(ipv4_address, 3325256706)
    assert ipv6_address("FD00:AB::1") == IPv6Address("fd00:ab::1")
    assert "carries a zone" in invalid_message(ipv6_address, "fe80::1%eth0")
    assert "is not an IPv6 address" in invalid_message(ipv6_address, "198.51.100.2")
    assert ipv6_unicast("2001:db8::1") == IPv6Address("2001:db8::1")
    assert "multicast" in invalid_message(ipv6_unicast, "ff02::1")
    assert "unspecified" in invalid_message(ipv6_unicast, "::")
    assert "loopback" in invalid_message(ipv6_unicast, "::1")


def test_ipv6_network_is_strict() -> None:
    assert ipv6_network("2001:db8::/32") == IPv6Network("2001:db8::/32")
    assert "the length is missing" in invalid_message(ipv6_network, "2001:db8::")
    assert "has host bits set" in invalid_message(ipv6_network, "2001:db8::1/32")
    assert invalid_message(ipv6_network, "2001:db8::1/32").endswith("did you mean 2001:db8::/32?")
    assert "is not an IPv6 prefix" in invalid_message(ipv6_network, "2001:db8::/129")
    assert "is not an IPv6 prefix" in invalid_message(ipv6_network, "198.51.100.0/24")
    assert "carries a zone" in invalid_message(ipv6_network, "fe80::%1/64")


@pytest.mark.parametrize(
    "name",
    [
        "gw.example.org",
        "GW-1.Example.ORG.",
        "localhost",
        "a",
        "1password.example",
        "xn--bcher-kva.example",
        "a" * 63 + ".example",
        ".".join(["a" * 63] * 3) + "." + "b" * 61,
    ],
)
def test_host_names_accepted(name: str) -> None:
    assert host_name_problem(name) is None
    assert host_or_ipv4(name) == name


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "must not be empty"),
        (".", "must not be empty"),
        ("-gw.example.org", "not a valid host name"),
        ("gw-.example.org", "not a valid host name"),
        ("gw_1.example.org", "not a valid host name"),
        ("gw..example.org", "not a valid host name"),
        ("gw example.org", "not a valid host name"),
        ("a" * 64 + ".example", "not a valid host name"),
        (".".join(["a" * 63] * 4), "at most 253"),
        ("198.51.100.300", "not a valid IPv4 address"),
        ("10.1", "not a valid IPv4 address"),
        ("gw.example.123", "not a valid IPv4 address"),
        ("bücher.example", "not a valid host name"),
    ],
)
def test_host_names_rejected(name: str, message: str) -> None:
    assert message in invalid_message(host_or_ipv4, name)


def test_host_or_ipv4_normalizes_literals_and_refuses_ipv6() -> None:
    assert host_or_ipv4("198.51.100.2") == "198.51.100.2"
    assert "looks like an IPv6 address" in invalid_message(host_or_ipv4, "2001:db8::1")
    # Leading zeros are ambiguous (octal in some parsers): refused rather than guessed.
    assert "not a valid IPv4 address" in invalid_message(host_or_ipv4, "198.051.100.2")


@pytest.mark.parametrize("name", ["m6t0", "a", "tun_1.x-y", "A" * 15, "...", "-"])
def test_interface_names_accepted(name: str) -> None:
    assert interface_name(name) == name


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "must not be empty"),
        ("a" * 16, "at most 15"),
        ("m6t 0", "may only contain"),
        ("m6t/0", "may only contain"),
        ("m6t:0", "may only contain"),
        ("é", "may only contain"),
        (".", "not a usable interface name"),
        ("..", "not a usable interface name"),
    ],
)
def test_interface_names_rejected(name: str, message: str) -> None:
    assert message in invalid_message(interface_name, name)


def test_array_reports_every_bad_element_by_index() -> None:
    convert = array(integer(1, 9))
    with pytest.raises(Invalid) as info:
        convert([1, 0, "x", 5])
    assert [suffix for suffix, _ in info.value.items] == ["[1]", "[2]"]
    assert convert((1, 2)) == (1, 2)
    assert convert([]) == ()


def test_array_nested_indexes() -> None:
    with pytest.raises(Invalid) as info:
        array(array(integer()))([[1], [2, "x"]])
    assert info.value.items[0][0] == "[1][1]"


def test_array_min_items_and_unique() -> None:
    assert "must not be empty" in invalid_message(array(integer(), min_items=1), [])
    assert "at least 2 elements" in invalid_message(array(integer(), min_items=2), [1])
    with pytest.raises(Invalid) as info:
        array(integer(), unique=True)([1, 2, 1, 2, 3])
    assert info.value.items == [("[2]", "repeats 1 (already at index 0)"), ("[3]", "repeats 2 (already at index 1)")]
    assert "must be an array, not a string" in invalid_message(array(integer()), "1,2")


# --------------------------------------------------------------------------- the reader


def test_reader_records_problems_and_returns_placeholders() -> None:
    root = Reader({"s": {"n": "x", "b": 1, "ok": 3}}, "f.toml")
    section = root.section("s")
    assert section.get_int("n", 7) == 7
    assert section.get_bool("b", False) is False
    assert section.get_int("ok", 7) == 3
    assert section.get_int("absent", 9) == 9
    with pytest.raises(ConfigError) as info:
        root.finish()
    assert [(p.file, p.key) for p in info.value.problems] == [("f.toml", "s.n"), ("f.toml", "s.b")]


def test_reader_finish_without_problems_returns() -> None:
    root = Reader({"s": {"n": 1}}, "f.toml")
    assert root.section("s").get_int("n", 0) == 1
    root.finish()
    assert root.problems == []


def test_reader_typed_getters() -> None:
    data = {
        "s": {
            "i": 3,
            "f": 2,
            "b": True,
            "t": "x",
            "l": [1, 2],
            "v4": "192.0.2.1",
            "v6": "2001:db8::1",
            "net": "2001:db8::/32",
        }
    }
    root = Reader(data, "f.toml")
    s = root.section("s")
    assert s.get_int("i", 0, min_value=1, max_value=5) == 3
    assert s.get_number("f", 0.0, min_value=1) == 2.0
    assert s.get_bool("b", False) is True
    assert s.get_str("t", "", min_length=1) == "x"
    assert s.get_list_of("l", integer(), (), unique=True) == (1, 2)
    assert s.get_ipv4("v4", IPv4Address(0)) == IPv4Address("192.0.2.1")
    assert s.get_ipv6("v6", IPv6Address(0)) == IPv6Address("2001:db8::1")
    assert s.get_ipv6_network("net", IPv6Network("::/0")) == IPv6Network("2001:db8::/32")
    root.finish()


def test_reader_optional_required_and_empty() -> None:
    root = Reader({"s": {"e": "", "v": "1.2.3.4", "bad": "x", "null": None}}, "f.toml")
    s = root.section("s")
    assert s.get_optional("e", ipv4_address, empty_is_none=True) is None
    assert s.get_optional("v", ipv4_address) == IPv4Address("1.2.3.4")
    assert s.get_optional("bad", ipv4_address) is None
    assert s.get_optional("null", ipv4_address) is None
    assert s.get_optional("missing", ipv4_address, required=True) is None
    assert s.has("v")
    assert not s.has("null")
    assert [(p.key, p.message) for p in root.problems][-1] == ("s.missing", "is required")
    assert [p.key for p in root.problems] == ["s.bad", "s.missing"]


def test_reader_section_that_is_not_a_table() -> None:
    root = Reader({"s": 5}, "f.toml")
    s = root.section("s")
    assert root.section("s") is s
    assert s.get_int("n", 4) == 4
    with pytest.raises(ConfigError) as info:
        root.finish()
    assert str(info.value) == "f.toml: s: must be a table (a [s] section), not an integer (5)"


def test_reader_root_that_is_not_a_table() -> None:
    root = Reader([1, 2], "api")
    root.section("s").get_int("n", 1)
    with pytest.raises(ConfigError) as info:
        root.finish()
    assert str(info.value) == "api: must be a table of sections, not an array"


def _unknown(data: dict[str, Any]) -> list[str]:
    root = Reader(data, "f.toml")
    tunnel = root.section("tunnel")
    tunnel.get_int("mtu", 0)
    tunnel.get_int("keepalive_interval", 0)
    root.section("routes").get_bool("default", True)
    root.section("helper").get_bool("autoconnect", False)
    with pytest.raises(ConfigError) as info:
        root.finish()
    return [str(p) for p in info.value.problems]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"tunnel": {"mut": 1}}, "f.toml: tunnel.mut: unknown key; did you mean tunnel.mtu?"),
        (
            {"tunnel": {"keepalive": 1}},
            "f.toml: tunnel.keepalive: unknown key; did you mean tunnel.keepalive_interval?",
        ),
        ({"tunel": {}}, "f.toml: tunel: unknown section; did you mean [tunnel]?"),
        ({"route": {"default": True}}, "f.toml: route: unknown section; did you mean [routes]?"),
        ({"routes": {"mtu": 1}}, "f.toml: routes.mtu: unknown key; did you mean tunnel.mtu?"),
        (
            {"helper": {"auto_connect": True}},
            "f.toml: helper.auto_connect: unknown key; did you mean helper.autoconnect?",
        ),
        ({"mtu": 1400}, "f.toml: mtu: unknown key; did you mean tunnel.mtu?"),
        ({"zzz": {}}, "f.toml: zzz: unknown section"),
        ({"tunnel": {"qqqq": 1}}, "f.toml: tunnel.qqqq: unknown key"),
        ({"tunnel": {"sub": {"x": 1}}}, "f.toml: tunnel.sub: unknown key"),
        ({1: 2}, "f.toml: 1: unknown key"),
    ],
)
def test_unknown_keys_and_sections_with_suggestions(data: dict[str, Any], expected: str) -> None:
    assert _unknown(data) == [expected]


def test_known_keys() -> None:
    root = Reader({}, "f.toml")
    a = root.section("a")
    a.get_int("y", 0)
    a.get_int("x", 0)
    root.section("b").get_optional("z", integer())
    assert root.known_keys() == ["a.x", "a.y", "b.z"]


# --------------------------------------------------------------------------- TOML in


def test_parse_toml_syntax_error_names_file_and_line() -> None:
    with pytest.raises(ConfigError) as info:
        parse_toml('[gateway]\naddress = "x"\nports = [3544,\n\nmtu = = 3\n', "c.toml")
    (problem,) = info.value.problems
    assert problem.file == "c.toml"
    assert problem.key.startswith("line ")
    assert "TOML syntax error" in problem.message
    assert str(info.value).startswith("c.toml: line ")


def test_parse_toml_syntax_error_line_numbers() -> None:
    with pytest.raises(ConfigError) as info:
        parse_toml("a = 1\nb = 2\nc = = 3\n", "c.toml")
    assert info.value.problems[0].key == "line 3"
    assert "column" in info.value.problems[0].message
    with pytest.raises(ConfigError) as info:
        parse_toml("a = 1\nb =", "c.toml")
    assert info.value.problems[0].key == "line 2"
    with pytest.raises(ConfigError) as info:
        parse_toml("a = 1\na = 2\n", "c.toml")
    assert info.value.problems[0].key == "line 2"


def test_parse_toml_limits() -> None:
    with pytest.raises(ConfigError, match="out of range"):
        parse_toml("a = " + "9" * 5000, "c.toml")
    with pytest.raises(ConfigError, match="nested too deeply"):
        parse_toml("a = " + "[" * 5000, "c.toml")


def test_read_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_bytes(b"\xef\xbb\xbfa = 1\r\nb = 'x'\r\n")
    assert read_toml_file(path) == ({"a": 1, "b": "x"}, str(path))
    assert read_toml_file(str(path))[1] == str(path)


def test_read_toml_file_errors(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(ConfigError) as info:
        read_toml_file(missing)
    assert str(info.value).startswith(f"{missing}: cannot read the file")
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"a = 1\nb = '\xff'\n")
    with pytest.raises(ConfigError) as info:
        read_toml_file(bad)
    assert str(info.value) == f"{bad}: line 2: the file is not UTF-8 text"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1400", 1400),
        ("2.5", 2.5),
        ("[3544, 4500]", [3544, 4500]),
        ("true", True),
        ('"x y"', "x y"),
        ("'lit'", "lit"),
        ("gw.example.org", "gw.example.org"),
        ("198.51.100.2", "198.51.100.2"),
        ("fd6d:3674:a1b2:0:1::/80", "fd6d:3674:a1b2:0:1::/80"),
        ("", ""),
        ("1\nother = 2", "1\nother = 2"),
        ("# comment", "# comment"),
        ("[[[[", "[[[["),
    ],
)
def test_parse_cli_value(raw: str, expected: object) -> None:
    assert parse_cli_value(raw) == expected


# --------------------------------------------------------------------------- TOML out


def test_toml_value_scalars() -> None:
    assert toml_value(True) == "true"
    assert toml_value(-3) == "-3"
    assert toml_value(1e16) == "1e+16"
    assert toml_value(math.inf) == "inf"
    assert toml_value(-math.inf) == "-inf"
    assert toml_value(math.nan) == "nan"
    assert toml_value('a"b\\c\n\x7f') == '"a\\"b\\\\c\\n\\u007F"'
    assert toml_value(("a", 1)) == '["a", 1]'
    with pytest.raises(TypeError):
        toml_value({"a": 1})


def test_dump_toml_skips_empty_sections_and_quotes_odd_keys() -> None:
    out = dump_toml({"a": {"x": 1, "odd key": "v"}, "empty": {}, "b c": {"y": [1, 2]}})
    assert out == '[a]\nx = 1\n"odd key" = "v"\n\n["b c"]\ny = [1, 2]\n'
    assert tomllib.loads(out) == {"a": {"x": 1, "odd key": "v"}, "b c": {"y": [1, 2]}}


_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
_scalar = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    _text,
)
_value = st.one_of(_scalar, st.lists(_scalar, max_size=4), st.lists(st.lists(_scalar, max_size=3), max_size=3))


@given(st.dictionaries(_text, st.dictionaries(_text, _value, min_size=1, max_size=5), max_size=4))
def test_dump_toml_reads_back_equal(document: dict[str, dict[str, Any]]) -> None:
    assert tomllib.loads(dump_toml(document)) == document


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_plain_number_keeps_the_value(value: float) -> None:
    shown = plain_number(value)
    assert shown == value
    assert isinstance(shown, int) == (value.is_integer() and abs(value) < 2**53)


def test_plain_number_accepts_an_int_where_a_float_is_declared() -> None:
    assert plain_number(5) == 5 and isinstance(plain_number(5), int)
