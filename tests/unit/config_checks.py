"""What the client's and the gateway's configuration tests check alike: files written from dotted keys, how one
invalid value is reported, and that no text or dict whatever makes a loader raise anything but ConfigError
(and that whatever it accepts survives a round trip)."""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from hypothesis import strategies as st

from m6t.configfile import ConfigError, toml_value

Config = TypeVar("Config")

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3),
    max_leaves=10,
)
"""Anything a control API request's JSON may hold."""


def render(values: Mapping[str, str | None]) -> str:
    """TOML text from ``section.key`` → TOML literal (None: the key left out, its section kept)."""
    sections: dict[str, list[str]] = {}
    for dotted, literal in values.items():
        section, key = dotted.split(".", 1)
        lines = sections.setdefault(section, [])
        if literal is not None:
            lines.append(f"{key} = {literal}")
    return "".join(f"[{name}]\n" + "".join(f"{line}\n" for line in lines) for name, lines in sections.items())


def assert_one_problem(error: ConfigError, file: str, key: str, message: str) -> None:
    """``error`` reports exactly one problem: at ``key`` (or one of its items) of ``file``, saying ``message``."""
    assert len(error.problems) == 1, str(error)
    (problem,) = error.problems
    assert problem.file == file
    assert problem.key == key or problem.key.startswith(key + "["), problem
    assert message in problem.message
    assert str(error).startswith(f"{file}: {key}")


def toml_ish_texts(headers: Sequence[str], keys: Sequence[str], samples: Sequence[str]) -> st.SearchStrategy[str]:
    """Up to 20 lines of section ``headers``, ``keys`` (dotted and bare) set to TOML literals of every type or to
    the ``samples`` (near-valid values and broken syntax), and printable junk."""
    literals = st.one_of(
        st.integers(-(2**70), 2**70).map(str),
        st.floats().map(toml_value),
        st.booleans().map(toml_value),
        st.text(st.characters(exclude_categories=["Cs"]), max_size=30).map(toml_value),
        st.sampled_from(samples),
    )
    bare_keys = st.sampled_from(keys).map(lambda k: k.split(".")[-1])
    line = st.one_of(
        st.sampled_from(headers),
        st.builds(lambda key, value: f"{key} = {value}", bare_keys, literals),
        st.builds(lambda key, value: f"{key} = {value}", st.sampled_from(keys), literals),
        st.text(string.printable, max_size=20),
    )
    return st.lists(line, max_size=20).map("\n".join)


def config_shaped_dicts(sections: Sequence[str], names: Sequence[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Dicts of ``sections`` whose values are tables of the known key ``names`` or anything JSON holds."""
    return st.dictionaries(
        st.sampled_from(sections),
        st.dictionaries(st.sampled_from(names), JSON_VALUES, max_size=6) | JSON_VALUES,
        max_size=5,
    )


def assert_text_loads_or_config_error(
    text: str, file: str, parse: Callable[[str, str], Config], dump: Callable[[Config], str]
) -> None:
    """``parse`` refuses ``text`` with problems that name ``file``, or accepts a configuration ``dump`` keeps."""
    try:
        cfg = parse(text, file)
    except ConfigError as exc:
        assert exc.problems
        assert all(p.file == file for p in exc.problems)
    else:
        assert parse(dump(cfg), file) == cfg


def assert_dict_loads_or_config_error(
    data: dict[str, Any],
    from_dict: Callable[[Mapping[str, Any], str], Config],
    to_dict: Callable[[Config], Mapping[str, Any]],
) -> None:
    """``from_dict`` refuses ``data`` with problems, or accepts a configuration that survives ``to_dict``."""
    try:
        cfg = from_dict(data, "api")
    except ConfigError as exc:
        assert exc.problems
    else:
        assert from_dict(to_dict(cfg), "api") == cfg
