"""Ranges in the library, the tested set in a lock: pyproject.toml's core declares lower bounds, constraints.txt pins
every declared package at a version inside its declared range, and CI's lower-bound run installs those bounds."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from packaging.requirements import Requirement

from tests.unit.test_dependencies import PYPROJECT, ROOT, canonical

pytestmark = pytest.mark.unit
PROJECT = PYPROJECT["project"]


def locked() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonical(name)] = version
    return pins


# what `make install` installs (the Makefile: .[platform,dev], then katib with --no-deps); `cloud` is left to the user
INSTALLED_EXTRAS = ("platform", "dev", "katib")


def declared_requirements() -> list[Requirement]:
    """The core's and INSTALLED_EXTRAS' requirements, self-references (``cpfd[text-pretrained]``) followed."""
    out, todo, seen = [], [*PROJECT["dependencies"]], set()
    for extra in INSTALLED_EXTRAS:
        todo += PROJECT["optional-dependencies"][extra]
    while todo:
        req = Requirement(todo.pop())
        if canonical(req.name) != PROJECT["name"]:
            out.append(req)
            continue
        for extra in req.extras - seen:
            seen.add(extra)
            todo += PROJECT["optional-dependencies"][extra]
    return out


def test_the_core_declares_ranges_not_pins():
    pinned = [r for r in PROJECT["dependencies"] if "==" in r]
    assert pinned == [], "the library declares ranges; the tested versions belong in constraints.txt"
    assert all(">=" in r for r in PROJECT["dependencies"]), "every core dependency names its lowest version"


def test_the_lock_pins_every_declared_package_inside_its_range():
    pins = locked()
    missing = sorted({canonical(r.name) for r in declared_requirements()} - set(pins))
    assert missing == [], f"constraints.txt has no pin for {missing}: install them, then `make lock`"
    outside = [
        f"{r} vs {pins[canonical(r.name)]}"
        for r in declared_requirements()
        if pins[canonical(r.name)] not in r.specifier
    ]
    assert outside == []
    assert pins["torch"] == "2.13.0"  # no +cpu: the same line serves the CPU and the CUDA image
    assert not any(
        line.startswith("-e") or "cpfd" in line
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if not line.startswith("#")
    )


def test_the_lower_bound_run_installs_each_declared_lower_bound():
    out = subprocess.run(
        [sys.executable, str(ROOT / ".ci" / "lower_bounds.py")], capture_output=True, text=True, check=True
    )
    pins = dict(line.split("==") for line in out.stdout.split())
    assert pins.pop("torch") == "2.13.0"  # any other torch pulls a CUDA build
    for req in PROJECT["dependencies"]:
        name = canonical(Requirement(req).name)
        if name in ("torch", "pydantic-core"):
            continue
        low = re.search(r">=\s*([\w.]+)", req).group(1)
        assert pins.pop(name) == low, req
    assert pins == {}
