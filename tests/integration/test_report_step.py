"""The report step alone on kfp.local: its HTML and Markdown artifacts are files with extensions (report.html,
report.md) that KFP hands on, the HTML is rendered Markdown with the chart inlined, the gate column quotes the gate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_the_report_step_writes_report_html_and_report_md(tmp_path):
    from kfp import local

    from cpfd.components.report import report
    from tests.unit.test_gate_and_reports import _row

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    rows = [
        _row(
            "minor_safety", {"baseline": 0.70, "teacher": 0.75, "distilled": 0.704}, {"baseline": 0.7, "teacher": 0.74}
        ),
        _row("clickbait", {"baseline": 0.60, "teacher": 0.70, "distilled": 0.65}, {"baseline": 0.6, "teacher": 0.7}),
    ]
    rows[1]["intervals"] = {"f1": {"baseline": [0.55, 0.65], "teacher": [0.66, 0.74], "distilled": [0.6, 0.7]}}
    rows[1]["intervals"]["teacher_minus_baseline"] = [0.04, 0.16]
    rows[0]["intervals"] = {"f1": {"baseline": [0.66, 0.74], "teacher": [0.7, 0.8], "distilled": [0.66, 0.75]}}
    rows[0]["intervals"]["teacher_minus_baseline"] = [-0.01, 0.1]
    task = report(summaries=[json.dumps(r) for r in rows])
    html, markdown = task.outputs["html"], task.outputs["markdown"]
    assert html.uri.endswith("/report/report.html") and markdown.uri.endswith("/report/report.md")
    page = Path(html.path).read_text()
    assert "<li>minor_safety: not packaged: F1 gain over the baseline student +0.0040" in page and "<p>- " not in page
    assert "<td>refused: F1 gain over the baseline student +0.0040 is not above the margin +0.0100</td>" in page
    assert 'src="data:image/png;base64,' in page
    assert "<td>n/a (teacher not significantly better on test: +5.0 [-1.0, +10.0])</td>" in page  # minor_safety
    assert "<td>50.0</td>" in page  # clickbait: the teacher's interval is above 0
    assert Path(markdown.path).read_text().startswith("# CPFD pipeline: test macro-F1 per scenario\n")
