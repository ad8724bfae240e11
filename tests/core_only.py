"""A pytest plugin for the run on the core dependencies alone (.ci/run): a test module or test that fails because a
package of a pyproject.toml extra is not installed is skipped, naming the extra; every other error still fails.

    python -m pytest -p tests.core_only tests/unit tests/model
"""

from __future__ import annotations

import re

import pytest

from tests.unit.test_dependencies import PYPROJECT, canonical, declared

CORE = declared(())
EXTRAS = {extra: declared((extra,)) - CORE for extra in PYPROJECT["project"]["optional-dependencies"]}


def skip_reason(missing: str | None) -> str | None:
    """``needs the 'x' extra`` when ``missing`` (a module name) belongs to a distribution an extra declares
    (the smallest such extra: `platform` includes `text-pretrained`)."""
    dist = canonical((missing or "").split(".")[0])
    owners = [extra for extra, dists in EXTRAS.items() if dist in dists]
    extra = min(owners, key=lambda e: len(EXTRAS[e])) if owners else None
    return f"needs the '{extra}' extra ({missing} is not installed)" if extra else None


def _skipped(report, reason: str):
    path, line, _ = report.location
    report.outcome = "skipped"
    report.longrepr = (str(path), line, f"Skipped: {reason}")
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    report = yield
    found = report.failed and re.search(r"ModuleNotFoundError: No module named '([\w.]+)'", str(report.longrepr))
    reason = skip_reason(found.group(1)) if found else None
    if reason:
        report.result = []
        return _skipped(report, reason)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    error = call.excinfo.value if call.excinfo else None
    reason = skip_reason(error.name) if isinstance(error, ModuleNotFoundError) else None
    return _skipped(report, reason) if reason else report
