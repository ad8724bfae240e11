"""index.html: the summary table, the A/B verdicts, links to the Evidently reports, and plots."""

from __future__ import annotations

import html
from pathlib import Path


def _fmt(v, spec: str = ".3f") -> str:
    return "-" if v is None else format(v, spec)


def _plots(summary: dict, out: Path) -> list[str]:
    """ab.png (treatment - control F1 with CI per scenario) and confidence.png (mean confidence vs reference)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (out / "plots").mkdir(exist_ok=True)
    names = list(summary["scenarios"])
    files = []
    ab = [(s, r["ab"]) for s, r in summary["scenarios"].items() if "diff" in r["ab"]]
    if ab:
        fig, axis = plt.subplots(figsize=(7, 0.4 * len(ab) + 1.2))
        for i, (_, v) in enumerate(ab):
            colour = (
                "tab:green"
                if v["verdict"] == "treatment better"
                else "tab:red"
                if v["verdict"] == "treatment worse"
                else "grey"
            )
            axis.errorbar(
                v["diff"],
                i,
                xerr=[[v["diff"] - v["ci_low"]], [v["ci_high"] - v["diff"]]],
                fmt="o",
                color=colour,
                capsize=3,
            )
        axis.axvline(0, color="black", lw=0.8)
        axis.set_yticks(range(len(ab)), [s for s, _ in ab])
        axis.set_xlabel("treatment - control macro-F1 (bootstrap CI)")
        axis.set_title(
            "A/B: treatment - control macro-F1 per scenario\n(green: treatment better, red: worse, grey: no verdict)",
            fontsize=9,
        )
        fig.tight_layout()
        fig.savefig(out / "plots" / "ab.png", dpi=90, bbox_inches="tight")
        plt.close(fig)
        files.append("plots/ab.png")
    rows = [(s, a, sl) for s in names for a, sl in summary["scenarios"][s]["arms"].items() if sl["n"]]
    if rows:
        fig, axis = plt.subplots(figsize=(7, 0.3 * len(rows) + 1.2))
        for i, (_, _, sl) in enumerate(rows):
            failed = "fail" in (sl["checks"].get("confidence_ks"), sl["checks"].get("confidence_psi"))
            axis.plot(sl["confidence_mean"], i, "o", color="tab:red" if failed else "tab:blue")
            if "reference_confidence_mean" in sl:
                axis.plot(sl["reference_confidence_mean"], i, "|", color="black", ms=12)
        axis.set_yticks(range(len(rows)), [f"{s} / {a}" for s, a, _ in rows])
        axis.set_xlabel("mean confidence (dot: live, red = drift; bar: offline reference)")
        axis.set_title("Mean confidence per scenario and arm: live window vs offline reference", fontsize=9)
        fig.tight_layout()
        fig.savefig(out / "plots" / "confidence.png", dpi=90, bbox_inches="tight")
        plt.close(fig)
        files.append("plots/confidence.png")
    return files


def _experiment_plot(summary: dict, out: Path) -> list[str]:
    """experiments.png: per experiment, macro-F1 difference over the looks, the running always-valid interval
    (shaded) and each look's own confidence-sequence boundary (dashed)."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = []
    for s, st in summary.get("experiments", {}).items():
        try:
            looks = [lk for lk in json.loads(Path(st["state"]).read_text())["looks"] if "f1" in lk]
        except (OSError, ValueError, KeyError):
            continue
        if looks:
            series.append((s, looks))
    if not series:
        return []
    fig, axes = plt.subplots(len(series), 1, figsize=(7, 2.2 * len(series) + 0.6), squeeze=False)
    for axis, (s, looks) in zip(axes[:, 0], series, strict=True):
        x = range(1, len(looks) + 1)
        f1 = [lk["f1"] for lk in looks]
        axis.fill_between(x, [v["low"] for v in f1], [v["high"] for v in f1], alpha=0.25, label="running interval")
        axis.plot(x, [v["look_low"] for v in f1], "k--", lw=0.8, label="boundary at each look")
        axis.plot(x, [v["look_high"] for v in f1], "k--", lw=0.8)
        axis.plot(x, [v["diff"] for v in f1], "o-", label="treatment - control")
        axis.axhline(0, color="black", lw=0.8)
        axis.set_title(f"{s}: {looks[-1]['decision']}", fontsize=9)
        axis.set_ylabel("macro-F1")
        axis.set_xticks(list(x))
    axes[-1, 0].set_xlabel("look")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("Online experiments: treatment - control macro-F1 over the looks", fontsize=10)
    fig.tight_layout()
    (out / "plots").mkdir(exist_ok=True)
    fig.savefig(out / "plots" / "experiments.png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return ["plots/experiments.png"]


def _experiment_rows(summary: dict) -> list[str]:
    esc = html.escape
    css = {"invalid": "fail", "rollback": "fail", "promote": "pass", "ramp": "pass"}
    rows = [
        "<h2>Experiments (always-valid, since each start)</h2><table><tr><th>scenario</th><th>experiment</th>"
        "<th>since</th><th>labelled C / T</th><th>macro-F1 diff</th><th>always-valid interval</th>"
        "<th>accuracy interval</th><th>SRM</th><th>guardrails</th><th>decision</th></tr>"
    ]
    for s, st in summary.get("experiments", {}).items():
        iv = {m: f"[{st[m]['low']:+.4f}, {st[m]['high']:+.4f}]" if m in st else "-" for m in ("f1", "accuracy")}
        labelled = " / ".join(str(n) for n in st["labelled"].values())
        guards = ", ".join(f"{n}: {g['status']}" for n, g in st["guardrails"].items())
        rows.append(
            f"<tr class='{css.get(st['decision'], 'skipped')}'><td>{esc(s)}</td><td>{esc(st['experiment'])}</td>"
            f"<td>{esc(st['start'])}</td><td>{labelled}</td><td>{_fmt(st.get('f1', {}).get('diff'), '+.4f')}</td>"
            f"<td>{iv['f1']}</td><td>{iv['accuracy']}</td><td>{esc(st['srm']['status'])}</td><td>{esc(guards)}</td>"
            f"<td>{esc(st['decision'])}: {esc(st['reason'])}</td></tr>"
        )
    return rows + ["</table>"]


def _inline(out: Path, rel: str) -> str:
    import base64

    return "data:image/png;base64," + base64.b64encode((out / rel).read_bytes()).decode()


def write_index(summary: dict, out: Path, path: Path | None = None, inline_images: bool = False) -> Path:
    """The page (default ``out``/index.html), plots in ``out``/plots; ``inline_images`` embeds them
    (a single-file page, e.g. a KFP HTML artifact)."""
    esc = html.escape
    w = summary["window"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>CPFD monitoring</title><style>"
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px}"
        ".fail{background:#fdd}.pass{background:#dfd}.skipped{background:#eee}</style></head><body>",
        f"<h1>CPFD monitoring: <span class='{summary['status']}'>{summary['status'].upper()}</span></h1>",
        f"<p>window {esc(w['since'])} .. {esc(w['until'])}; log {esc(w['log'])}; reference {esc(w['reference'])}; "
        f"{summary['n_predictions']} predictions, {summary['n_labelled']} labelled.</p>",
    ]
    parts += [f"<p><b>{esc(m)}</b></p>" for m in summary["messages"]]
    if "workspace" in summary:
        ws = esc(summary["workspace"])
        parts.append(f"<p>Evidently workspace {ws}: <code>cpfd monitor-ui --workspace {ws}</code></p>")
    if summary["scenarios"]:
        parts.append(
            "<h2>Per scenario and arm</h2><table><tr><th>scenario</th><th>arm</th><th>n</th><th>label coverage</th>"
            "<th>confidence (ref)</th><th>KS D / p</th><th>PSI</th><th>class PSI</th><th>macro-F1 (ref)</th>"
            "<th>precision</th><th>recall</th><th>checks</th><th>report</th></tr>"
        )
        for s, r in summary["scenarios"].items():
            link = (
                f"<a href='{r['report_html']}'>html</a> <a href='{r['snapshot_json']}'>json</a>"
                if "report_html" in r
                else "-"
            )
            for a, sl in r["arms"].items():
                failed = [c for c, v in sl["checks"].items() if v == "fail"]
                status = "fail" if failed else "skipped" if not sl["n"] else "pass"
                parts.append(
                    f"<tr class='{status}'><td>{esc(s)}</td><td>{esc(a)}</td><td>{sl['n']}</td>"
                    f"<td>{_fmt(sl.get('label_coverage'), '.2f')}</td>"
                    f"<td>{_fmt(sl.get('confidence_mean'))} ({_fmt(sl.get('reference_confidence_mean'))})</td>"
                    f"<td>{_fmt(sl.get('ks_statistic'))} / {_fmt(sl.get('ks_pvalue'), '.2g')}</td>"
                    f"<td>{_fmt(sl.get('psi'))}</td>"
                    f"<td>{_fmt(sl.get('class_psi'))}</td>"
                    f"<td>{_fmt(sl.get('f1'))} ({_fmt(sl.get('reference_f1'))})</td>"
                    f"<td>{_fmt(sl.get('precision'))}</td><td>{_fmt(sl.get('recall'))}</td>"
                    f"<td>{esc(', '.join(failed) or '; '.join(sl['messages']) or 'all pass')}</td><td>{link}</td></tr>"
                )
        parts.append(
            "</table><h2>A/B verdicts (treatment - control macro-F1)</h2><table><tr><th>scenario</th>"
            "<th>diff</th><th>CI</th><th>verdict</th><th>status</th></tr>"
        )
        for s, r in summary["scenarios"].items():
            ab = r["ab"]
            ci = f"[{ab['ci_low']:+.4f}, {ab['ci_high']:+.4f}]" if "diff" in ab else "-"
            parts.append(
                f"<tr class='{ab['status']}'><td>{esc(s)}</td><td>{_fmt(ab.get('diff'), '+.4f')}</td><td>{ci}</td>"
                f"<td>{esc(ab.get('verdict') or ab['message'])}</td><td>{ab['status']}</td></tr>"
            )
        parts.append("</table>")
        plots = _plots(summary, out)
        if summary.get("experiments"):
            parts += _experiment_rows(summary)
            plots = _experiment_plot(summary, out) + plots
        parts += [f"<p><img src='{_inline(out, p) if inline_images else p}'></p>" for p in plots]
        notes = [(s, m) for s, r in summary["scenarios"].items() for m in r["messages"]]
        parts.append("<h2>Messages</h2><ul>" + "".join(f"<li>{esc(s)}: {esc(m)}</li>" for s, m in notes) + "</ul>")
    parts.append("<p><a href='summary.json'>summary.json</a></p></body></html>")
    path = path or out / "index.html"
    path.write_text("\n".join(parts))
    return path
