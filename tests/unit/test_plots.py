"""Every plot has a title and a whole legend: the quality figure (docs/quality.png) and the monitoring plots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def saved(monkeypatch):
    """The figures that savefig is called on, with how they were saved."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figures: list[tuple[Figure, dict]] = []
    original = Figure.savefig

    def record(self, fname, *args, **kwargs):
        figures.append((self, kwargs))
        return original(self, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", record)
    return figures


def test_the_quality_figure_has_titles_whole_legends_and_axes_from_zero(saved, tmp_path):
    from cpfd.benchmarks.tables import plot_quality

    result = json.loads((ROOT / "benchmarks" / "results" / "quality.json").read_text())
    plot_quality(result, tmp_path)
    ((fig, kwargs),) = saved
    assert kwargs.get("bbox_inches") == "tight"  # legends under the axes are inside the image, not cut at its edge
    axes = [ax for ax in fig.axes if ax.get_visible() and ax.axison]
    assert all(ax.get_title() for ax in axes)
    legends = {ax.get_title(): [t.get_text() for t in ax.get_legend().get_texts()] for ax in axes if ax.get_legend()}
    f1_panel = next(v for k, v in legends.items() if k.startswith("Macro-F1"))
    assert f1_panel == ["baseline", "teacher", *result["variants"]]
    confidence = next(k for k in legends if k.startswith("Teacher confidence"))
    assert confidence == "Teacher confidence: out-of-fold (3 folds) outputs only (the run stored no other source)"
    bars = [ax for ax in axes if ax.get_title().startswith(("Macro-F1", "Where the distillation"))]
    assert len(bars) == 2 and all(ax.get_ylim()[0] == 0.0 for ax in bars)


def test_the_confidence_title_names_what_the_run_stored():
    from cpfd.benchmarks.tables import confidence_title

    assert confidence_title(["insample", "oof3"]) == "Teacher confidence: in-sample vs out-of-fold (3 folds)"


def test_the_monitoring_plots_have_titles(saved, tmp_path):
    from cpfd.monitoring.html import _plots

    arm = {"n": 200, "confidence_mean": 0.8, "reference_confidence_mean": 0.78, "checks": {}}
    summary = {
        "scenarios": {
            "clickbait": {
                "ab": {"diff": 0.02, "ci_low": -0.01, "ci_high": 0.05, "verdict": "no verdict"},
                "arms": {"treatment": arm, "control": arm},
            }
        }
    }
    assert _plots(summary, tmp_path) == ["plots/ab.png", "plots/confidence.png"]
    titles = [ax.get_title() for fig, _ in saved for ax in fig.axes]
    assert titles[0].startswith("A/B: treatment - control macro-F1") and titles[1].startswith("Mean confidence")
