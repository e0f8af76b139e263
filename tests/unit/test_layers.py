"""The arrows of the design (shared/DESIGN.md), read from the source: who imports whom, who tests the OS.

Imports inside functions count too: a lazy import is still an arrow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import m6t

PACKAGE = Path(m6t.__file__).parent


def sources(*parts: str) -> list[Path]:
    where = PACKAGE.joinpath(*parts)
    return sorted(where.rglob("*.py")) if where.is_dir() else [where]


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, with the names ``from X import name`` may mean as modules."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def within(name: str, *packages: str) -> bool:
    return any(name == package or name.startswith(package + ".") for package in packages)


def name_of(path: Path) -> str:
    return str(path.relative_to(PACKAGE.parent))


@pytest.mark.parametrize("path", sources("client"), ids=name_of)
def test_the_client_never_imports_the_lab(path: Path) -> None:
    assert not [name for name in imports(path) if within(name, "m6t.lab")]


@pytest.mark.parametrize("path", sources("ui"), ids=name_of)
def test_the_ui_speaks_only_the_api(path: Path) -> None:
    ours = [name for name in imports(path) if within(name, "m6t")]
    assert [name for name in ours if not within(name, "m6t.client.api", "m6t.protocol", "m6t.ui")] == []


def os_tests(path: Path) -> list[str]:
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if (node.value.id, node.attr) == ("sys", "platform") or node.attr == "kernelType":
                found.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module == "sys":
            found.extend(f"line {node.lineno}: from sys import platform" for a in node.names if a.name == "platform")
    return found


@pytest.mark.parametrize(
    "path",
    [path for path in sources() if path.relative_to(PACKAGE).parts[0] != "platform"],
    ids=name_of,
)
def test_only_the_platform_tests_the_os(path: Path) -> None:
    assert os_tests(path) == []


def test_the_checks_see_what_they_look_for() -> None:
    assert os_tests(PACKAGE / "platform" / "__init__.py"), "sys.platform is found where it is"
    assert "m6t.client.api.host" in imports(PACKAGE / "ui" / "app.py")
    assert "m6t.lab.demo" in imports(PACKAGE / "cli.py"), "a lazy import counts"
