"""The README is a front page: at most 150 lines, its one results table equal to what benchmarks/results/quality.json
renders to (cpfd.benchmarks.tables.headline_table), and every docs page it links to exists."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_the_readme_is_a_front_page():
    assert len(README.splitlines()) <= 150, "long material belongs in docs/ (the docs site), not in the README"


def test_the_readme_results_table_is_the_one_the_json_holds():
    from cpfd.benchmarks.tables import headline_table

    table = headline_table(json.loads((ROOT / "benchmarks" / "results" / "quality.json").read_text()))
    assert table in README, "README's results table differs from benchmarks/results/quality.json: paste\n" + table


def test_the_readme_links_resolve():
    targets = re.findall(r"\]\((?!https?://|#)([^)]+)\)", README)
    assert targets and [t for t in targets if not (ROOT / t.split("#")[0]).exists()] == []
