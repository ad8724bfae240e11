"""Reports: the pipeline's cross-scenario table and chart, a self-contained HTML page, ROC points."""

from __future__ import annotations

import base64
import html
import json
import posixpath

import numpy as np

from cpfd.config import GateConfig
from cpfd.errors import DataContractError
from cpfd.gate import teacher_not_better


def roc_points(
    scores: np.ndarray, positives: np.ndarray, max_points: int = 101
) -> tuple[list[float], list[float], list[float]]:
    """ROC curve (fpr, tpr, threshold) of a binary score, thinned to at most ``max_points``."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], positives[order].astype(bool)
    tps, fps = np.cumsum(y), np.cumsum(~y)
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # last index of every distinct threshold
    p, n = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    fpr = np.r_[0.0, fps[last] / n]
    tpr = np.r_[0.0, tps[last] / p]
    thr = np.r_[1.0, s[last]]
    if len(fpr) > max_points:
        keep = np.unique(np.linspace(0, len(fpr) - 1, max_points).round().astype(int))
        fpr, tpr, thr = fpr[keep], tpr[keep], thr[keep]
    return fpr.tolist(), tpr.tolist(), thr.tolist()


def describe_title_stats(stats: dict) -> str:
    """``cpfd.preprocess.title_stats`` in one line: ``24 tokens, [UNK] 0.10 %, truncated 1.2 %``."""
    return (
        f"{stats['max_tokens']} tokens, [UNK] {100 * stats['unk_rate']:.2f} %, "
        f"truncated {100 * stats['truncated_rate']:.1f} %"
    )


def report_tables(summaries: list[dict]) -> tuple[dict, str]:
    """The cross-scenario table (X-VLM, DF-X-VLM, distilled F1, gain, gap closed, teacher vs baseline on validation,
    teacher calibration, gate) as Markdown, and the chart's data: test F1 per model (``baseline``, ``teacher``, the
    distillation method) and scenario, and their averages."""
    from cpfd.evaluate import MIN_TEACHER_GAP, gap_closed_or_why

    if not summaries:
        raise DataContractError("the report got no scenario summaries")
    methods = sorted({s["method"] for s in summaries})
    name = "/".join(m.upper() for m in methods)
    scenarios = [s["scenario"] for s in summaries]
    models = {"baseline": "baseline", "teacher": "teacher", name.lower(): "distilled"}
    f1 = {m: {s["scenario"]: float(s["f1"][key]) for s in summaries} for m, key in models.items()}
    result = {
        "scenarios": scenarios,
        "seeds": sorted({s["seed"] for s in summaries}),
        "f1": f1,
        "average": {"f1": {m: {"mean": float(np.mean(list(v.values())))} for m, v in f1.items()}},
    }
    if all((s.get("intervals") or {}).get("f1") for s in summaries):  # 95 % paired bootstrap, the chart's error bars
        result["f1_interval"] = {
            m: {s["scenario"]: [float(x) for x in s["intervals"]["f1"][key]] for s in summaries}
            for m, key in models.items()
        }

    def gap_value(s: dict) -> tuple[float | None, str]:
        return gap_closed_or_why(
            s["f1"], s.get("val_f1"), teacher_interval=s.get("intervals", {}).get("teacher_minus_baseline")
        )

    def gap_cell(value: float | None, why: str) -> str:
        return f"n/a ({why})" if value is None else f"{100 * value:.1f}"

    def val_cell(s):
        val = s.get("val_f1")
        if not val:
            return "n/a"
        return f"{val['teacher']:.3f} vs {val['baseline']:.3f}" + (" (not better)" if teacher_not_better(s) else "")

    def ece_cell(s):
        cal = s.get("teacher_calibration") or {}
        return f"{cal['ece_before']:.3f} -> {cal['ece_after']:.3f}" if "ece_before" in cal else "n/a"

    def estimate_cell(s):
        e = s.get("estimate") or {}
        if e.get("refused"):
            return "none: a pool run (the estimate covers labelled-only runs)"
        if not e.get("estimated"):
            return "off"
        skipped = ", fold teachers skipped" if e.get("skipped_folds") else ""
        return f"{100 * e['predicted']:+.1f} [{100 * e['low']:+.1f}, {100 * e['high']:+.1f}] {e['verdict']}{skipped}"

    def sizes_cell(s):
        z = s.get("sizes") or {}
        if not z:
            return "n/a"
        used = "" if z["pool_used"] == z["pool"] else f" ({z['pool_used']} used)"
        return f"{z['labelled']:,} / {z['pool']:,}{used}"

    def gate_cell(s):  # the gate's own reason, which the list under the table repeats in full
        if s["gate"]["passed"]:
            return "passed (flagged: teacher not better on val)" if teacher_not_better(s) else "passed"
        return "refused: " + s["gate"]["reason"].removeprefix("not packaged: ")

    lines = [
        "Macro-F1 on each scenario's test split; the teacher against the baseline and the teacher's calibration "
        "(ECE of its distillation outputs before -> after temperature scaling) on the validation split. "
        "Gap closed is (distilled - X-VLM) / (teacher - X-VLM), shown only where the teacher is clearly better than "
        f"X-VLM: by at least {100 * MIN_TEACHER_GAP:.0f} F1 point on validation and on test, and with a 95 % paired "
        "bootstrap interval of teacher - X-VLM on test above 0; otherwise the ratio divides by noise.",
        "",
        "| scenario | videos (labelled / pool) | X-VLM (baseline) | DF-X-VLM (teacher) "
        f"| {name} (distilled) | gain over X-VLM (F1 pts) "
        "| predicted gain [95 %] (estimate) | gap closed (%) | teacher vs X-VLM (val F1) | teacher ECE (val) | gate |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        f = s["f1"]
        lines.append(
            f"| {s['scenario']} | {sizes_cell(s)} | {f['baseline']:.3f} | {f['teacher']:.3f} | {f['distilled']:.3f} | "
            f"{100 * (f['distilled'] - f['baseline']):+.1f} | {estimate_cell(s)} | {gap_cell(*gap_value(s))} | "
            f"{val_cell(s)} | {ece_cell(s)} | "
            f"{gate_cell(s)} |"
        )
    avg = {k: float(np.mean([s["f1"][k] for s in summaries])) for k in ("baseline", "teacher", "distilled")}
    with_val = [s["val_f1"] for s in summaries if s.get("val_f1")]
    avg_val = {k: float(np.mean([v[k] for v in with_val])) for k in ("baseline", "teacher")} if with_val else None
    unclear = sum(gap_value(s)[0] is None for s in summaries)
    avg_gap = (
        gap_cell(None, f"the teacher is not clearly better in {unclear} of {len(summaries)} scenarios")
        if unclear
        else gap_cell(*gap_closed_or_why(avg, avg_val))
    )
    passed = sum(s["gate"]["passed"] for s in summaries)
    not_better = sum(teacher_not_better(s) for s in summaries)
    lines.append(
        f"| **average** | | **{avg['baseline']:.3f}** | **{avg['teacher']:.3f}** | **{avg['distilled']:.3f}** | "
        f"**{100 * (avg['distilled'] - avg['baseline']):+.1f}** | | "
        f"**{avg_gap}** | "
        f"**{not_better} not better** | | **{passed}/{len(summaries)} passed** |"
    )
    lines += ["", "Gate decisions:", ""] + [f"- {s['scenario']}: {s['gate']['reason']}" for s in summaries]
    titled = [s for s in summaries if s.get("titles")]
    if titled:
        lines += ["", "Titles on the test split, with the distilled student's tokenizer and length:", ""]
        lines += [f"- {s['scenario']}: {describe_title_stats(s['titles'])}" for s in titled]
    return result, "\n".join(lines) + "\n"


def grouped_bars(ax, values: dict[str, dict[str, float]], errors: dict[str, dict] | None = None) -> None:
    """Macro-F1 bars ``values[model][group]`` grouped by group, on an axis from 0 (an axis starting near the lowest
    bar exaggerated every difference); ``errors[model][group]``: a symmetric error (a std) or a ``[low, high]``
    interval. The legend sits under the axes, one model a line, so that long variant names are not cut."""
    import matplotlib

    methods = list(values)
    groups = list(next(iter(values.values())))
    x = np.arange(len(groups))
    width = 0.8 / len(methods)
    for i, m in enumerate(methods):
        v = [values[m][g] for g in groups]
        e = None
        if errors:
            spans = [_span(values[m][g], errors[m][g]) for g in groups]
            e = np.array([[lo for lo, _ in spans], [hi for _, hi in spans]])
        ax.bar(x + i * width, v, width, yerr=e, label=m, capsize=2, color=matplotlib.colormaps["tab20"](i % 20))
    high = max(v + (_span(v, errors[m][g])[1] if errors else 0.0) for m, per in values.items() for g, v in per.items())
    ax.set_xticks(x + 0.4 - width / 2, groups, rotation=15)
    ax.set_ylabel("macro-F1 (test)")
    ax.set_ylim(0.0, min(1.0, high + 0.05) if high < 0.95 else 1.02)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=1, fontsize=7, frameon=False)


def _span(value: float, error) -> tuple[float, float]:
    """How far an error bar reaches below and above ``value``: a symmetric error, or a [low, high] interval."""
    if isinstance(error, list | tuple):
        return max(value - error[0], 0.0), max(error[1] - value, 0.0)
    return float(error), float(error)


def chart_png(result: dict) -> bytes:
    """Grouped bars of test macro-F1: X-VLM, DF-X-VLM and the distilled student per scenario, from 0, with 95 % paired
    bootstrap intervals over the test split where the summaries carry them (``f1_interval``); one pipeline run trains
    each model once, so there is no seed spread, and the subtitle says which it is."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {"baseline": "X-VLM (baseline)", "teacher": "DF-X-VLM (teacher)"}
    values = {labels.get(m, f"{m.upper()} (distilled)"): per for m, per in result["f1"].items()}
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(result["scenarios"])), 5))
    spans = result.get("f1_interval")
    errors = {labels.get(m, f"{m.upper()} (distilled)"): per for m, per in spans.items()} if spans else None
    grouped_bars(ax, values, errors)
    seeds = ", ".join(str(s) for s in result.get("seeds", []))
    what = "95 % paired bootstrap intervals over the test split" if spans else "no interval"
    ax.set_title(f"Test macro-F1 per scenario\n(one run per model, seed {seeds or '?'}: {what})", fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def markdown_to_html(markdown: str, title: str, png: bytes | None = None) -> str:
    """A self-contained HTML page: the Markdown rendered by markdown-it-py (CommonMark with tables: lists, code and
    emphasis as Markdown means them), under the chart, inlined."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)
    img = f'<img alt="F1 per scenario" src="data:image/png;base64,{base64.b64encode(png).decode()}">' if png else ""
    style = (
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #bbb;padding:4px 8px;text-align:left;vertical-align:top}th{background:#eee}"
        "img{max-width:100%}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style>"
        f"</head><body><h1>{html.escape(title)}</h1>{img}{body}</body></html>"
    )


def with_file_name(artifact, name: str):
    """Point a KFP output artifact at ``name`` (``report.html``) in the folder KFP chose for it, instead of a file
    named after the output (``html``); KFP reads the changed URI back from the step's executor output (the local
    runner and the backend's launcher both take it), so viewers see the extension. Returns the artifact."""
    artifact.uri = posixpath.join(posixpath.dirname(artifact.uri.rstrip("/")), name)
    return artifact


def summary_json(
    scenario: str,
    method: str,
    seed: int,
    f1: dict,
    gap: float | None,
    passed: bool,
    reason: str,
    gate: GateConfig,
    val_f1: dict | None = None,
    teacher_calibration: dict | None = None,
    teacher_outputs: str | None = None,
    titles: dict | None = None,
    estimate: dict | None = None,
    sizes: dict | None = None,
    intervals: dict | None = None,
) -> str:
    """The evaluate step's row for the report: test F1, validation F1 of teacher and baseline, the teacher outputs'
    source and calibration, the gate, ``titles``: the test titles' ``cpfd.preprocess.title_stats``, and
    ``estimate``: the gain estimate's prediction (``cpfd.training.estimate``: predicted, low, high, verdict), ``sizes``:
    labelled and unlabelled pool videos (``labelled``, ``train``, ``pool``, ``pool_used``, ``pool_per_epoch``),
    ``intervals``: 95 % paired bootstrap intervals on the test split (``cpfd.evaluate.paired_f1_intervals``: ``f1`` per
    model, ``teacher_minus_baseline``)."""
    return json.dumps(
        {
            "scenario": scenario,
            "method": method,
            "seed": seed,
            "f1": f1,
            "gain": f1["distilled"] - f1["baseline"],
            "gap_closed": gap,
            "val_f1": val_f1,
            "teacher_outputs": teacher_outputs,
            "teacher_calibration": teacher_calibration or {},
            "titles": titles,
            "estimate": estimate or {},
            "sizes": sizes or {},
            "intervals": intervals or {},
            "gate": {"passed": passed, "reason": reason, **gate.model_dump()},
        }
    )


def dataset_sizes(dataset_dir: str, distilled_info: dict) -> dict:
    """Labelled videos (all splits) and unlabelled pool videos of the scenario, and how many pool videos the student
    read per epoch."""
    from pathlib import Path

    manifest = json.loads((Path(dataset_dir) / "manifest.json").read_text())
    pool = distilled_info.get("pool") or {}
    return {
        "labelled": int(sum(manifest["rows"].values())),
        "train": int(manifest["rows"]["train"]),
        "pool": int((manifest.get("pool") or {}).get("rows", 0)),
        "pool_used": int(pool.get("rows", 0)),
        "pool_per_epoch": int(pool.get("per_epoch", 0)),
    }
