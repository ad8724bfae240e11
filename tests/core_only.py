"""A pytest plugin for the run on the core dependencies alone (.ci/run): a test module or test that fails because a
package of a pyproject.toml extra is not installed (in the test's process or a subprocess it ran) is skipped,
naming the extra; every other error still fails.

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


MISSING = re.compile(r"ModuleNotFoundError: No module named '([\w.]+)'")


def _skipped_if_an_extra_is_missing(report):
    """The failed ``report`` turned into a skip when its error (or a subprocess's, in its message) is a missing
    module of an extra."""
    found = report.failed and MISSING.search(str(report.longrepr))
    reason = skip_reason(found.group(1)) if found else None
    if reason:
        path, line, _ = report.location
        report.outcome, report.longrepr = "skipped", (str(path), line, f"Skipped: {reason}")
        if hasattr(report, "result"):  # a test module that could not be imported: nothing collected
            report.result = []
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    return _skipped_if_an_extra_is_missing((yield))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    return _skipped_if_an_extra_is_missing((yield))
