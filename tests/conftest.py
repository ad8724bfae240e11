"""Shared fixtures: a small synthetic data set, built once per test session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from cpfd.env import set_env_defaults

set_env_defaults()

# `make test` runs on pytest-xdist workers, which start as `python -c`: a main module without a file, which pyspark
# (imported by Great Expectations) takes for its own doctest run, and exits. Name the worker's main module.
if os.environ.get("PYTEST_XDIST_WORKER") and not hasattr(sys.modules["__main__"], "__file__"):
    sys.modules["__main__"].__file__ = "<pytest-xdist worker>"

TINY = ["model.size=tiny", "train.epochs=2", "train.batch_size=32"]


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory) -> Path:
    from cpfd.benchmarks.synthetic import generate

    out = tmp_path_factory.mktemp("synthetic")
    generate(out, videos_per_scenario=240, seed=7, scenarios=["clickbait", "originality"])
    return out


@pytest.fixture(scope="session")
def tiny_project(synthetic_dir):
    from cpfd.config import load_config

    return load_config(synthetic_dir / "scenarios.yaml", TINY)


@pytest.fixture(scope="session")
def clickbait_dataset(synthetic_dir, tiny_project, tmp_path_factory) -> Path:
    from cpfd.data.build import build_scenario_dataset

    out = tmp_path_factory.mktemp("ds") / "clickbait"
    build_scenario_dataset(
        synthetic_dir / "videos.parquet", synthetic_dir / "features.parquet", "clickbait", tiny_project, out
    )
    return out


@pytest.fixture(scope="session")
def clickbait_data(clickbait_dataset, tiny_project):
    from cpfd.data.tensors import prepare_data

    return prepare_data(clickbait_dataset, tiny_project.model)


TIERS = ("unit", "data", "model", "integration")


def pytest_collection_modifyitems(items):
    """Every test carries the marker of its tier folder (tests/<tier>/...): `pytest -m unit` runs one tier.

    The files with a test marked slow run first, each whole and in its own order: on two xdist workers (`make test`,
    a file per worker at a time, in this order) the long files start early and the short ones fill in at the end,
    instead of one long file running alone last."""
    for item in items:
        tier = Path(str(item.fspath)).parent.name
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)  # stable: the tests of a file keep their order


@pytest.fixture(scope="session")
def pool_dir(tmp_path_factory) -> Path:
    """Clickbait videos of which two in three are unlabelled (a pool twice the labelled set)."""
    from cpfd.benchmarks.synthetic import generate

    out = tmp_path_factory.mktemp("pool")
    generate(out, videos_per_scenario=200, seed=3, scenarios=["clickbait"], pool_multiple=2)
    return out
