"""The quality benchmark's tables (Markdown) and figure (quality.png)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.variants import BASELINES, NAMES
from cpfd.reports import grouped_bars


def _pts(d: dict) -> str:
    star = " *" if d["significant"] else ""
    return f"{100 * d['mean']:+.1f} [{100 * d['lo']:+.1f}, {100 * d['hi']:+.1f}]{star}"


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.0f}"


def to_markdown(result: dict) -> str:
    sc = result["scenarios"]
    cols = [*sc, "pooled"]
    head = "| method | " + " | ".join(cols) + " |"
    rule = "|---|" + "---|" * len(cols)
    base = result.get("distill_base", {})
    lines = [
        f"Macro-F1 on the test split (observed labels), mean ± std over seeds {result['seeds']}"
        f"{' (' + result['data'] + ')' if result.get('data') else ''}; all variants: temperature "
        f"{base.get('temperature', '?')}, lambda {base.get('lam', '?')}; torch threads {result.get('threads', '?')}; "
        f"{result.get('seconds', 0) / 60:.0f} min.",
        "",
        head,
        rule,
    ]
    for m in result["methods"]:
        f = result["f1"][m]
        lines.append(
            f"| {NAMES.get(m, m)} | "
            + " | ".join(f"{f[s]['mean']:.3f} ± {f[s]['std']:.3f}" for s in sc)
            + f" | {f['pooled']['mean']:.3f} |"
        )
    lines += [
        "",
        "Distilled − X-VLM, F1 points, paired bootstrap 95 % interval over seeds and test examples "
        "(* : the interval excludes 0):",
        "",
        head,
        rule,
    ]
    t = result["teacher_minus_baseline"]
    lines.append(
        "| *teacher − X-VLM* | " + " | ".join(_pts(t["per_scenario"][s]) for s in sc) + f" | {_pts(t['pooled'])} |"
    )
    for v, d in result["gain_over_baseline"].items():
        lines.append(f"| {v} | " + " | ".join(_pts(d["per_scenario"][s]) for s in sc) + f" | {_pts(d['pooled'])} |")
    if result["gain_over_pfd"]:
        lines += [
            "",
            f"CPFD − PFD (`{result['pfd_reference']}`), F1 points, paired bootstrap 95 % interval:",
            "",
            head,
            rule,
        ]
        for v, d in result["gain_over_pfd"].items():
            lines.append(f"| {v} | " + " | ".join(_pts(d["per_scenario"][s]) for s in sc) + f" | {_pts(d['pooled'])} |")
    if result.get("contrasts"):
        lines += [
            "",
            "One setting at a time (variants that differ in exactly one of teacher outputs, calibration, folds, "
            "loss form), F1 points, paired bootstrap 95 % interval:",
            "",
            head,
            rule,
        ]
        for name, d in result["contrasts"].items():
            lines.append(
                f"| {name} | " + " | ".join(_pts(d["per_scenario"][s]) for s in sc) + f" | {_pts(d['pooled'])} |"
            )
    lines += [
        "",
        "Gap closed, % (against the teacher"
        + (" / against the student ceiling, Bayes content only" if result.get("has_truth") else "")
        + "; † : the teacher − X-VLM gap is within 2 standard errors, so the ratio against the teacher is noise):",
        "",
        head,
        rule,
    ]
    for v, row in result["gap_closed"].items():
        cells = []
        for s in cols:
            c = row[s]
            learn = f" / {_pct(c['vs_ceiling'])}" if result["has_truth"] else ""
            cells.append(f"{_pct(c['vs_teacher'])}{learn}{' †' if c['gap_within_noise'] else ''}")
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    if result.get("has_truth"):
        lines += ["", "Macro-F1 against the true label (generator v2 keeps it):", "", head, rule]
        for m in result["methods"]:
            f = result["f1_true_label"][m]
            lines.append(f"| {NAMES.get(m, m)} | " + " | ".join(f"{f[s]:.3f}" for s in sc) + f" | {f['pooled']:.3f} |")
    lines += [
        "",
        "Diagnostics (means over seeds):",
        "",
        "| scenario | teacher F1 train (in-sample) / val | X-VLM F1 val | out-of-fold teacher F1 on train "
        "| ECE before → after scaling (oof) | temperature | teacher better on val? |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in sc:
        d = result["diagnostics"][s]
        tr = d["teacher_train_f1"]
        oof_key = next((k for k in d["calibration"] if k.startswith("oof")), None)
        cal = d["calibration"].get(oof_key) or next(iter(d["calibration"].values()))
        lines.append(
            f"| {s} | {d['split_f1']['train']['teacher']:.3f} / {d['split_f1']['val']['teacher']:.3f} | "
            f"{d['split_f1']['val']['baseline']:.3f} | "
            f"{tr.get(oof_key, float('nan')) if oof_key else float('nan'):.3f} | "
            f"{cal['ece_before']:.3f} → {cal['ece_after']:.3f} | {cal['temperature']:.2f} | "
            f"{'NO: distilling it is not justified' if d['teacher_not_better_on_val'] else 'yes'} |"
        )
    lines += estimate_table(result)
    shares = [result["diagnostics"][s].get("weight_share") for s in sc]
    if all(shares):
        kinds = sorted({k for sh in shares for v in sh.values() for k in v})
        lines += [
            "",
            "Share of the distillation weight on each slice kind (pooled over scenarios; share of examples first):",
            "",
            "| variant | " + " | ".join(kinds) + " |",
            "|---|" + "---|" * len(kinds),
        ]
        ex = {k: np.mean([sh[next(iter(sh))].get(k, {}).get("examples", 0.0) for sh in shares]) for k in kinds}
        lines.append("| *examples* | " + " | ".join(f"{100 * ex[k]:.1f} %" for k in kinds) + " |")
        for v in result["variants"]:
            if all(v in sh for sh in shares):
                w = {k: np.mean([sh[v].get(k, {}).get("weight", 0.0) for sh in shares]) for k in kinds}
                lines.append(f"| {v} | " + " | ".join(f"{100 * w[k]:.1f} %" for k in kinds) + " |")
    lines += [
        "",
        "Epochs (best / run, mean over seeds and scenarios): "
        + ", ".join(
            f"{NAMES.get(m, m).split(' (')[0] if m in NAMES else m} "
            f"{np.mean([result['epochs'][m][s][0] for s in sc]):.1f}/"
            f"{np.mean([result['epochs'][m][s][1] for s in sc]):.1f}"
            for m in result["epochs"]
        )
        + ".",
    ]
    if result.get("best_cpfd_variant"):
        lines += ["", f"Best CPFD variant by pooled F1: `{result['best_cpfd_variant']}`."]
    return "\n".join(lines) + "\n"


def plot_quality(result: dict, out_dir: Path) -> None:
    """quality.png: F1 per scenario, intervals of distilled − X-VLM and CPFD − PFD, confidence histograms,
    distillation weight per slice."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sc = result["scenarios"]
    fig, axes = plt.subplots(2, 2, figsize=(16, 13))
    shown = [*BASELINES, *result["variants"]]
    grouped_bars(
        axes[0, 0],
        {m: {s: result["f1"][m][s]["mean"] for s in sc} for m in shown},
        {m: {s: result["f1"][m][s]["std"] for s in sc} for m in shown},
    )
    axes[0, 0].set_title("Macro-F1 per scenario (mean ± std over seeds)")

    ax = axes[0, 1]
    rows = [(f"{v} − X-VLM", d["pooled"]) for v, d in result["gain_over_baseline"].items()]
    rows += [(f"{v} − PFD", d["pooled"]) for v, d in result["gain_over_pfd"].items()]
    for i, (_label, d) in enumerate(rows):
        ax.errorbar(
            100 * d["mean"],
            i,
            xerr=[[100 * (d["mean"] - d["lo"])], [100 * (d["hi"] - d["mean"])]],
            fmt="o",
            color="C3" if d["significant"] else "C0",
            capsize=3,
        )
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows], fontsize=6)
    ax.set_xlabel("F1 points, pooled over scenarios (95 % paired bootstrap; red: excludes 0)")
    ax.set_title("Gains with intervals")

    ax = axes[1, 0]
    edges = np.linspace(0, 1, 21)
    for src in next(iter(result["diagnostics"].values()))["confidence_hist"]:
        h = np.sum([result["diagnostics"][s]["confidence_hist"][src] for s in sc], axis=0)
        ax.stairs(h / max(h.sum(), 1), edges, label=f"{src} (calibrated)")
    ax.set_xlabel("teacher's top-class probability on the training split")
    ax.set_ylabel("share of examples")
    ax.legend(fontsize=8)
    ax.set_title("Teacher confidence: in-sample vs out-of-fold")

    ax = axes[1, 1]
    shares = [result["diagnostics"][s].get("weight_share") for s in sc]
    if all(shares):
        variants = [v for v in result["variants"] if all(v in sh for sh in shares)]
        kinds = sorted({k for sh in shares for v in sh.values() for k in v})
        for i, v in enumerate(variants):
            w = [
                np.mean([sh[v][k]["weight"] / max(sh[v][k]["examples"], 1e-9) for sh in shares if k in sh[v]])
                for k in kinds
            ]
            ax.bar(
                np.arange(len(kinds)) + i * 0.8 / len(variants),
                w,
                0.8 / len(variants),
                label=v,
                color=matplotlib.colormaps["tab20"]((i + 2) % 20),
            )
        ax.axhline(1, color="k", lw=0.8)
        ax.set_xticks(np.arange(len(kinds)) + 0.4, kinds)
        ax.set_ylabel("weight share / example share")
        ax.set_ylim(0.6, 1.2)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2, fontsize=6, frameon=False)
        ax.set_title("Where the distillation weight goes (1 = as many as examples)")
    else:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(Path(out_dir) / "quality.png", dpi=100)
    plt.close(fig)


def estimate_table(result: dict) -> list[str]:
    """The gain estimate per scenario against the realised gain (empty without one)."""
    est = result.get("estimate")
    if not est:
        return []
    lines = [
        "",
        f"Gain estimate (docs/decision.md) vs realised gain of `{est['rows'][0]['variant']}` over X-VLM, F1 points; "
        f"realised inside the predicted interval in {est['covered']} of {est['scenarios']} scenarios:",
        "",
        "| scenario | predicted [95 % interval] | verdict | realised [95 % interval] | inside? | probe s |",
        "|---|---|---|---|---|---|",
    ]
    for r in est["rows"]:
        lines.append(
            f"| {r['scenario']} | {100 * r['predicted']:+.1f} [{100 * r['predicted_low']:+.1f}, "
            f"{100 * r['predicted_high']:+.1f}] | {r['verdict']} | {100 * r['realised']:+.1f} "
            f"[{100 * r['realised_low']:+.1f}, {100 * r['realised_high']:+.1f}] | {'yes' if r['covered'] else 'NO'} | "
            f"{r['probe_seconds']:.0f} |"
        )
    return lines
