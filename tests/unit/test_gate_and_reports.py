"""The packaging gate and the pipeline's report, by hand."""

import json

import numpy as np
import pytest


def test_gate_decision():
    from cpfd.config import GateConfig
    from cpfd.gate import gate_decision

    gate = GateConfig(min_gain_over_baseline=0.01, max_gap_to_teacher=0.05)
    ok, why = gate_decision({"baseline": 0.70, "teacher": 0.80, "distilled": 0.78}, gate)
    assert ok and why.startswith("packaged")
    ok, why = gate_decision({"baseline": 0.70, "teacher": 0.80, "distilled": 0.705}, gate)
    assert not ok and "not above the margin +0.0100" in why and "gap to the teacher 0.0950 exceeds 0.0500" in why
    ok, why = gate_decision({"baseline": 0.70, "teacher": 0.80, "distilled": 0.78}, GateConfig(min_f1=0.9))
    assert not ok and "below the minimum 0.9000" in why
    ok, why = gate_decision(
        {"baseline": 0.70, "teacher": 0.80, "distilled": 0.78}, gate, {"baseline": 0.66, "teacher": 0.71}
    )
    assert ok and "teacher better than the baseline on validation (0.7100 vs 0.6600)" in why


def test_gate_flags_a_teacher_not_better_on_validation_and_refuses_it_when_required():
    """Validation is where the teacher was chosen: a teacher that did not beat X-VLM there is always called out,
    and refused whatever the test split says when the scenario's gate requires a better teacher."""
    from cpfd.config import GateConfig
    from cpfd.gate import gate_decision

    lenient = GateConfig(min_gain_over_baseline=-1.0, max_gap_to_teacher=1.0)
    strict = lenient.model_copy(update={"require_teacher_better": True})
    test_f1 = {"baseline": 0.70, "teacher": 0.80, "distilled": 0.78}  # would pass on test alone
    for val in ({"baseline": 0.72, "teacher": 0.69}, {"baseline": 0.70, "teacher": 0.70}):  # worse, and a tie
        ok, why = gate_decision(test_f1, lenient, val)
        assert ok and why.endswith(
            f"; flagged: the teacher is not better than the baseline student on validation "
            f"(macro-F1 {val['teacher']:.4f} vs {val['baseline']:.4f}), the gain comes from its "
            f"out-of-fold soft targets, not from a better teacher"
        )
        ok, why = gate_decision(test_f1, strict, val)
        assert not ok
        assert why == (
            f"not packaged: the teacher is not better than the baseline student on validation "
            f"(macro-F1 {val['teacher']:.4f} vs {val['baseline']:.4f}), so distilling it is not justified"
        )
    ok, why = gate_decision(
        {"baseline": 0.70, "teacher": 0.69, "distilled": 0.69},
        GateConfig(min_gain_over_baseline=0.0, require_teacher_better=True),
        {"baseline": 0.72, "teacher": 0.69},
    )
    assert not ok and why.index("not better than the baseline student on validation") < why.index(
        "not above the margin"
    )


def test_report_table_shows_teacher_not_better_and_calibration():
    import json

    from cpfd.components.reports import report_tables, summary_json
    from cpfd.config import GateConfig
    from cpfd.gate import gate_decision

    gate = GateConfig(min_gain_over_baseline=-1.0, max_gap_to_teacher=1.0, require_teacher_better=True)
    cal = {"temperature": 1.8, "nll_before": 0.9, "nll_after": 0.6, "ece_before": 0.1234, "ece_after": 0.0456, "n": 100}
    rows = []
    for name, val in (
        ("clickbait", {"baseline": 0.60, "teacher": 0.75, "distilled": 0.70}),
        ("originality", {"baseline": 0.72, "teacher": 0.70, "distilled": 0.71}),
    ):
        f1 = {"baseline": 0.65, "teacher": 0.80, "distilled": 0.75}
        ok, why = gate_decision(f1, gate, val)
        rows.append(json.loads(summary_json(name, "cpfd", 0, f1, 0.66, ok, why, gate, val, cal, "oof")))
    assert rows[0]["gate"]["passed"] and not rows[1]["gate"]["passed"]
    assert rows[1]["val_f1"]["teacher"] == 0.70 and rows[1]["teacher_outputs"] == "oof"
    _, md = report_tables(rows)
    assert "| teacher vs X-VLM (val F1) | teacher ECE (val) | gate |" in md
    line = {ln.split("|")[1].strip(): ln for ln in md.splitlines() if ln.startswith("| ")}
    assert line["clickbait"].endswith("| 0.750 vs 0.600 | 0.123 -> 0.046 | passed |")
    assert line["originality"].endswith(
        "| 0.700 vs 0.720 (not better) | 0.123 -> 0.046 | refused: the teacher is not better than the baseline "
        "student on validation (macro-F1 0.7000 vs 0.7200), so distilling it is not justified |"
    )
    assert "| 66.7 |" in line["clickbait"] and "| n/a (teacher not better on val) |" in line["originality"]
    assert "**1 not better**" in line["**average**"] and "**1/2 passed**" in line["**average**"]
    assert "- originality: not packaged: the teacher is not better than the baseline student on validation" in md
    result, _ = report_tables(rows)
    assert result["average"]["f1"] == {"baseline": {"mean": 0.65}, "teacher": {"mean": 0.80}, "cpfd": {"mean": 0.75}}
    from cpfd.components.reports import chart_png

    assert chart_png(result).startswith(b"\x89PNG")


def test_roc_points_by_hand():
    from cpfd.components.reports import roc_points

    fpr, tpr, thr = roc_points(np.array([0.9, 0.8, 0.8, 0.3]), np.array([True, False, True, False]))
    assert fpr == [0.0, 0.0, 0.5, 1.0] and tpr == [0.0, 0.5, 1.0, 1.0] and thr == [1.0, 0.9, 0.8, 0.3]
    scores = np.linspace(0, 1, 500)
    fpr, tpr, _ = roc_points(scores, scores > 0.5, max_points=21)
    assert len(fpr) <= 21 and fpr[0] == tpr[0] == 0.0 and fpr[-1] == tpr[-1] == 1.0


def test_report_marks_a_flagged_pass():
    from cpfd.components.reports import report_tables, summary_json
    from cpfd.config import GateConfig
    from cpfd.gate import gate_decision

    gate = GateConfig(min_gain_over_baseline=0.0, max_gap_to_teacher=1.0)  # require_teacher_better off
    f1, val = {"baseline": 0.65, "teacher": 0.66, "distilled": 0.70}, {"baseline": 0.72, "teacher": 0.70}
    ok, why = gate_decision(f1, gate, val)
    assert ok and "flagged: the teacher is not better" in why
    _, md = report_tables(
        [json.loads(summary_json("minor_safety", "cpfd", 0, f1, None, ok, why, gate, val, {}, "oof"))]
    )
    row = next(line for line in md.splitlines() if line.startswith("| minor_safety"))
    assert row.endswith("| 0.700 vs 0.720 (not better) | n/a | passed (flagged: teacher not better on val) |")


def test_report_lists_each_scenarios_title_rates():
    from cpfd.components.reports import report_tables, summary_json
    from cpfd.config import GateConfig

    f1, gate = {"baseline": 0.65, "teacher": 0.70, "distilled": 0.68}, GateConfig()
    titles = {"titles": 60, "unk_rate": 0.001, "truncated_rate": 0.02, "p95_tokens": 14.0, "max_tokens": 16}
    rows = [
        json.loads(summary_json("clickbait", "cpfd", 0, f1, 0.6, True, "ok", gate, None, {}, "oof", titles)),
        json.loads(summary_json("originality", "cpfd", 0, f1, 0.6, True, "ok", gate)),  # a row without them
    ]
    _, md = report_tables(rows)
    assert "- clickbait: 16 tokens, [UNK] 0.10 %, truncated 2.0 %" in md and "- originality: 16" not in md


def _row(name, f1, val, gate=None):
    from cpfd.components.reports import summary_json
    from cpfd.config import GateConfig
    from cpfd.evaluate import gap_closed_or_why
    from cpfd.gate import gate_decision

    gate = gate or GateConfig(min_gain_over_baseline=0.01, max_gap_to_teacher=1.0)
    ok, why = gate_decision(f1, gate, val)
    return json.loads(summary_json(name, "cpfd", 0, f1, gap_closed_or_why(f1, val)[0], ok, why, gate, val, {}, "oof"))


def _cells(md: str, scenario: str) -> list[str]:
    line = next(ln for ln in md.splitlines() if ln.startswith(f"| {scenario} "))
    return [c.strip() for c in line.strip("|").split("|")]


def test_gap_closed_is_not_a_percentage_of_noise():
    """A teacher 0.4 points better than X-VLM turned a 0.5-point gain into "120.9 %": under one point (on validation
    or on test) the cell says n/a and why, and so does the average; a clear gap still shows its ratio."""
    from cpfd.components.reports import report_tables
    from cpfd.evaluate import gap_closed_or_why

    close = {"baseline": 0.700, "teacher": 0.704, "distilled": 0.7048}
    assert gap_closed_or_why(close) == (None, "teacher only +0.4 pts over X-VLM on test")
    clear_val = {"baseline": 0.70, "teacher": 0.75}
    assert gap_closed_or_why(close, clear_val)[0] is None
    assert gap_closed_or_why({"baseline": 0.7, "teacher": 0.8, "distilled": 0.75}, {"baseline": 0.7, "teacher": 0.705})
    assert gap_closed_or_why({"baseline": 0.7, "teacher": 0.8, "distilled": 0.75}, {"baseline": 0.7, "teacher": 0.705})[
        1
    ] == ("teacher only +0.5 pts over X-VLM on val")
    assert gap_closed_or_why({"baseline": 0.7, "teacher": 0.8, "distilled": 0.75}, clear_val) == (
        pytest.approx(0.5),
        "",
    )
    rows = [
        _row("minor_safety", close, clear_val),
        _row("clickbait", {"baseline": 0.60, "teacher": 0.62, "distilled": 0.615}, {"baseline": 0.6, "teacher": 0.7}),
        _row("originality", {"baseline": 0.60, "teacher": 0.601, "distilled": 0.61}, {"baseline": 0.6, "teacher": 0.7}),
    ]
    assert rows[0]["gap_closed"] is None and rows[1]["gap_closed"] == pytest.approx(0.75)
    _, md = report_tables(rows)
    column = _cells(md, "scenario").index("gap closed (%)")
    assert _cells(md, "minor_safety")[column] == "n/a (teacher only +0.4 pts over X-VLM on test)"
    assert _cells(md, "clickbait")[column] == "75.0"
    assert _cells(md, "originality")[column] == "n/a (teacher only +0.1 pts over X-VLM on test)"
    # not a ratio of averages (291.7 %) while scenarios' teachers are not clearly better
    assert _cells(md, "**average**")[column] == "**n/a (the teacher is not clearly better in 2 of 3 scenarios)**"
    assert "%" not in "".join(_cells(md, s)[column] for s in ("minor_safety", "originality", "**average**"))


def test_the_gate_column_quotes_the_gates_own_reason():
    """minor_safety: the teacher is better on validation, and the gate refused the student on the F1 margin; the
    column said "teacher not better than X-VLM"."""
    from cpfd.components.reports import report_tables

    row = _row(
        "minor_safety", {"baseline": 0.70, "teacher": 0.75, "distilled": 0.704}, {"baseline": 0.7, "teacher": 0.74}
    )
    assert not row["gate"]["passed"]
    _, md = report_tables([row])
    gate = _cells(md, "minor_safety")[-1]
    assert gate == "refused: F1 gain over the baseline student +0.0040 is not above the margin +0.0100"
    assert "not better" not in gate


def test_report_html_is_rendered_markdown_with_the_chart():
    from cpfd.components.reports import chart_png, markdown_to_html, report_tables

    rows = [_row("clickbait", {"baseline": 0.6, "teacher": 0.7, "distilled": 0.65}, {"baseline": 0.6, "teacher": 0.7})]
    result, md = report_tables(rows)
    page = markdown_to_html(md + "\nNotes:\n\n- a `code` bullet with <b>html</b>\n", "Title <x>", chart_png(result))
    assert "<p>- " not in page and "<li>clickbait: " in page and "<li>a <code>code</code> bullet" in page
    assert "<th>gap closed (%)</th>" in page and "<td>clickbait</td>" in page and "<strong>" in page
    assert "<b>html</b>" not in page and "<title>Title &lt;x&gt;</title>" in page  # raw HTML is escaped
    assert page.count('src="data:image/png;base64,') == 1


def test_the_chart_axis_starts_at_zero_and_its_legend_is_whole():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cpfd.components.reports import grouped_bars

    fig, ax = plt.subplots()
    long = "cpfd:max_prob:norm=mean:loss=decoupled:targets=oof:folds=3:cal=on:tuned"
    grouped_bars(ax, {"baseline": {"a": 0.71, "b": 0.74}, long: {"a": 0.75, "b": 0.78}}, None)
    assert ax.get_ylim()[0] == 0.0 and ax.get_ylim()[1] >= 0.78
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["baseline", long]
    plt.close(fig)


def test_report_artifacts_get_file_names_with_extensions():
    from kfp.dsl import HTML, Markdown

    from cpfd.components.reports import with_file_name

    html = with_file_name(HTML(uri="minio://mlpipeline/v2/artifacts/cpfd/run-1/report/html"), "report.html")
    assert html.uri == "minio://mlpipeline/v2/artifacts/cpfd/run-1/report/report.html"
    md = with_file_name(Markdown(uri="/tmp/root/cpfd-pipeline-1/report/markdown"), "report.md")
    assert md.path == "/tmp/root/cpfd-pipeline-1/report/report.md"


def test_gap_closed_needs_a_teacher_significantly_better_on_test():
    """The demo's clickbait: teacher 0.729 vs X-VLM 0.718 on test (+1.1 points, over the 1-point floor) printed
    418.9 %; with the paired interval of teacher - X-VLM on test including 0 it is n/a, quoting the interval."""
    from cpfd.components.reports import report_tables, summary_json
    from cpfd.config import GateConfig
    from cpfd.evaluate import paired_f1_intervals

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    noisy = {n: np.where(rng.random(400) < acc, y, 1 - y) for n, acc in (("teacher", 0.73), ("baseline", 0.72))}
    noisy["distilled"] = noisy["teacher"]
    wide = paired_f1_intervals(y, noisy, 2)
    assert wide["teacher_minus_baseline"][0] < 0 < wide["teacher_minus_baseline"][1]
    assert (
        set(wide["f1"]) == {"teacher", "baseline", "distilled"} and wide["f1"]["teacher"][0] < wide["f1"]["teacher"][1]
    )
    clear = paired_f1_intervals(y, {"teacher": y, "baseline": noisy["baseline"]}, 2)
    assert clear["teacher_minus_baseline"][0] > 0.2

    f1, val = {"baseline": 0.718, "teacher": 0.729, "distilled": 0.764}, {"baseline": 0.704, "teacher": 0.756}
    gate = GateConfig()
    rows = [json.loads(summary_json("clickbait", "cpfd", 0, f1, None, True, "ok", gate, val, intervals=wide))]
    result, md = report_tables(rows)
    column = _cells(md, "scenario").index("gap closed (%)")
    low, high = (100 * v for v in wide["teacher_minus_baseline"])
    assert (
        _cells(md, "clickbait")[column]
        == f"n/a (teacher not significantly better on test: +1.1 [{low:+.1f}, {high:+.1f}])"
    )
    assert result["f1_interval"]["baseline"]["clickbait"] == wide["f1"]["baseline"]


def test_the_chart_draws_the_intervals():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cpfd.components.reports import grouped_bars

    fig, ax = plt.subplots()
    grouped_bars(
        ax, {"baseline": {"a": 0.70}, "teacher": {"a": 0.80}}, {"baseline": {"a": [0.65, 0.74]}, "teacher": {"a": 0.02}}
    )
    bars = [c for c in ax.containers if hasattr(c, "errorbar") and c.errorbar is not None]
    segments = [seg for bar in bars for seg in bar.errorbar.lines[2][0].get_segments()]
    assert [tuple(np.round(sg[:, 1], 3)) for sg in segments] == [(0.65, 0.74), (0.78, 0.82)]
    assert ax.get_ylim()[0] == 0.0
    plt.close(fig)
