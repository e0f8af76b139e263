"""Suite-wide test policy.

Lab tests: a test that needs root, network namespaces, nftables or /dev/net/tun carries the `lab` marker
(`@pytest.mark.lab`, or `pytestmark = pytest.mark.lab` for a module). Everything under tests/lab/ gets it
automatically. Where labs cannot run, such tests are skipped with the reason given by
m6t.lab.unavailable_reason() (e.g. "needs root: network namespaces, nftables, /dev/net/tun").

CI: when the environment variable CI is non-empty, a skip is a failure reported as
"skipped in CI: <reason>", so that CI cannot pass by silently not running tests. This covers skips in
setup (skipif markers, the lab marker, pytest.skip in fixtures), in the test body, and module-level skips
at collection. xfail is not affected.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path

import pytest

from m6t.lab.environment import unavailable_reason

LAB_TESTS = Path(__file__).parent / "lab"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under tests/lab/ as a lab test."""
    for item in items:
        if item.path.is_relative_to(LAB_TESTS):
            item.add_marker(pytest.mark.lab)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip lab tests, before any fixture builds a lab, where labs cannot run."""
    if item.get_closest_marker("lab") is not None:
        reason = unavailable_reason()
        if reason is not None:
            pytest.skip(reason)


def _in_ci() -> bool:
    return bool(os.environ.get("CI"))


def _skip_reason(longrepr: object) -> str:
    # A skip's longrepr is (path, line, "Skipped: <reason>").
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        message = str(longrepr[2])
        return message.removeprefix("Skipped: ")
    return str(longrepr)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """In CI, turn a skipped test into a failed one; xfail (which also reports as skipped) is left alone."""
    report = yield
    if _in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI: {_skip_reason(report.longrepr)}"
        if report.when == "setup":
            # Left as a setup report it would count as an "error"; it is a test that did not run: a failure.
            report.when = "call"
    return report


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    """In CI, a module skipped at collection (pytest.skip(allow_module_level=True), importorskip) fails."""
    report = yield
    if _in_ci() and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"skipped in CI: {_skip_reason(report.longrepr)}"
    return report
