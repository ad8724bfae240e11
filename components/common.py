"""Plain helpers the component bodies import at run time (inside the project image).

Kept out of the component functions so they are unit-testable without KFP: config from the
pipeline parameter, evaluation of a saved model on a split, the packaging gate, ROC points and
the cross-scenario report.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import numpy as np

from cpfd.config import GateConfig, ProjectConfig
from cpfd.errors import ConfigError, DataContractError


def project_from_yaml(text: str) -> ProjectConfig:
    """The project config passed to the pipeline as a YAML string (a JSON-able parameter)."""
    import yaml
    from pydantic import ValidationError

    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"pipeline parameter config_yaml is not valid YAML: {e}") from None
    try:
        return ProjectConfig.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        raise ConfigError(f"pipeline parameter config_yaml: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None


def gate_decision(f1: dict[str, float], gate: GateConfig) -> tuple[bool, str]:
    """Package the distilled student only if it beats the baseline by the margin and stays near the teacher.

    ``f1`` has ``student`` (baseline X-VLM), ``teacher`` (DF-X-VLM) and ``distilled``.
    """
    gain = f1["distilled"] - f1["student"]
    gap = f1["teacher"] - f1["distilled"]
    reasons = []
    if gain <= gate.min_gain_over_baseline:
        reasons.append(f"F1 gain over the baseline student {gain:+.4f} is not above the margin {gate.min_gain_over_baseline:+.4f}")
    if gap > gate.max_gap_to_teacher:
        reasons.append(f"F1 gap to the teacher {gap:.4f} exceeds {gate.max_gap_to_teacher:.4f}")
    if f1["distilled"] < gate.min_f1:
        reasons.append(f"F1 {f1['distilled']:.4f} is below the minimum {gate.min_f1:.4f}")
    if reasons:
        return False, "not packaged: " + "; ".join(reasons)
    return True, (f"packaged: F1 {f1['distilled']:.4f}, {gain:+.4f} over the baseline (margin {gate.min_gain_over_baseline:+.4f}), "
                  f"{gap:.4f} from the teacher (limit {gate.max_gap_to_teacher:.4f})")


def roc_points(scores: np.ndarray, positives: np.ndarray, max_points: int = 101) -> tuple[list[float], list[float], list[float]]:
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


def log_classification(artifact, metrics: dict, probs: np.ndarray, labels: np.ndarray) -> None:
    """Confusion matrix on a ClassificationMetrics artifact, plus the ROC curve for a binary task."""
    artifact.log_confusion_matrix(metrics["label_names"], metrics["confusion_matrix"])
    if probs.shape[1] == 2:
        artifact.log_roc_curve(*roc_points(probs[:, 1], labels == 1))


# ---- the cross-scenario report -----------------------------------------------------------------


def report_tables(summaries: list[dict]) -> tuple[dict, str]:
    """The cross-scenario table (X-VLM, DF-X-VLM, distilled F1, gain, gap closed, gate) as Markdown, and the
    quality benchmark's result dict for its chart."""
    from benchmarks.quality import summarise
    from cpfd.evaluate import gap_closed

    if not summaries:
        raise DataContractError("the report got no scenario summaries")
    methods = sorted({s["method"] for s in summaries})
    name = "/".join(m.upper() for m in methods)
    runs = [{"scenario": s["scenario"], "seed": s["seed"],
             "f1": {"xvlm": s["f1"]["student"], "teacher": s["f1"]["teacher"], **{m: s["f1"]["distilled"] for m in methods}}}
            for s in summaries]
    result = summarise(runs, methods)
    result["seeds"] = sorted({s["seed"] for s in summaries})

    def pct(v):
        return "n/a" if v is None else f"{100 * v:.1f}"

    lines = ["Macro-F1 on each scenario's test split.", "",
             f"| scenario | X-VLM (student) | DF-X-VLM (teacher) | {name} (distilled) | gain over X-VLM (F1 pts) | gap closed (%) | gate |",
             "|---|---|---|---|---|---|---|"]
    for s in summaries:
        f = s["f1"]
        lines.append(f"| {s['scenario']} | {f['student']:.3f} | {f['teacher']:.3f} | {f['distilled']:.3f} | "
                     f"{100 * (f['distilled'] - f['student']):+.1f} | {pct(s['gap_closed'])} | "
                     f"{'passed' if s['gate']['passed'] else 'failed'} |")
    avg = {k: float(np.mean([s["f1"][k] for s in summaries])) for k in ("student", "teacher", "distilled")}
    passed = sum(s["gate"]["passed"] for s in summaries)
    lines.append(f"| **average** | **{avg['student']:.3f}** | **{avg['teacher']:.3f}** | **{avg['distilled']:.3f}** | "
                 f"**{100 * (avg['distilled'] - avg['student']):+.1f}** | "
                 f"**{pct(gap_closed(avg['distilled'], avg['student'], avg['teacher']))}** | **{passed}/{len(summaries)} passed** |")
    lines += ["", "Gate decisions:", ""] + [f"- {s['scenario']}: {s['gate']['reason']}" for s in summaries]
    return result, "\n".join(lines) + "\n"


def chart_png(result: dict) -> bytes:
    from benchmarks.quality import plot_quality
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f1.png"
        plot_quality(result, path)
        return path.read_bytes()


def markdown_to_html(markdown: str, title: str, png: bytes | None = None) -> str:
    """A self-contained HTML page: the Markdown's tables and paragraphs, and the chart inlined."""
    body, table = [], []

    def flush():
        if table:
            rows = [r for r in table if not set(r.replace("|", "").strip()) <= set("-: ")]
            cells = [[c.strip().replace("**", "") for c in r.strip().strip("|").split("|")] for r in rows]
            head = "".join(f"<th>{html.escape(c)}</th>" for c in cells[0])
            rest = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in cells[1:])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rest}</tbody></table>")
            table.clear()

    for line in markdown.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        if line.strip():
            body.append(f"<p>{html.escape(line.replace('`', ''))}</p>")
    flush()
    img = f'<img alt="F1 per scenario" src="data:image/png;base64,{base64.b64encode(png).decode()}">' if png else ""
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #bbb;padding:4px 8px;text-align:left}th{background:#eee}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style>"
            f"</head><body><h1>{html.escape(title)}</h1>{img}{''.join(body)}</body></html>")


def summary_json(scenario: str, method: str, seed: int, f1: dict, gap: float | None, passed: bool, reason: str,
                 gate: GateConfig) -> str:
    return json.dumps({"scenario": scenario, "method": method, "seed": seed, "f1": f1, "gain": f1["distilled"] - f1["student"],
                       "gap_closed": gap, "gate": {"passed": passed, "reason": reason, **gate.model_dump()}})

