"""The quality benchmark's tables (Markdown) and figure (quality.png)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cpfd.benchmarks.variants import BASELINES, NAMES
from cpfd.components.reports import grouped_bars


def _pts(d: dict) -> str:
    star = " *" if d["significant"] else ""
    return f"{100 * d['mean']:+.1f} [{100 * d['lo']:+.1f}, {100 * d['hi']:+.1f}]{star}"


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.0f}"


def _header(sc: list[str]) -> list[str]:
    cols = [*sc, "pooled"]
    return ["| method | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]


def _interval_row(name: str, d: dict, sc: list[str]) -> str:
    return f"| {name} | " + " | ".join(_pts(d["per_scenario"][s]) for s in sc) + f" | {_pts(d['pooled'])} |"


def _f1_table(result: dict, sc: list[str]) -> list[str]:
    base = result.get("distill_base", {})
    lines = [
        f"Macro-F1 on the test split (observed labels), mean ± std over seeds {result['seeds']}"
        f"{' (' + result['data'] + ')' if result.get('data') else ''}; all variants: temperature "
        f"{base.get('temperature', '?')}, lambda {base.get('lam', '?')} (`tuned`: searched per scenario and seed); "
        f"torch threads {result.get('threads', '?')}; {result.get('seconds', 0) / 60:.0f} min.",
        "",
        *_header(sc),
    ]
    for m in result["methods"]:
        f = result["f1"][m]
        lines.append(
            f"| {NAMES.get(m, m)} | "
            + " | ".join(f"{f[s]['mean']:.3f} ± {f[s]['std']:.3f}" for s in sc)
            + f" | {f['pooled']['mean']:.3f} |"
        )
    return lines


def _interval_tables(result: dict, sc: list[str]) -> list[str]:
    lines = [
        "",
        "Distilled − X-VLM, F1 points, paired bootstrap 95 % interval over seeds and test examples "
        "(* : the interval excludes 0):",
        "",
        *_header(sc),
        _interval_row("*teacher − X-VLM*", result["teacher_minus_baseline"], sc),
    ]
    lines += [_interval_row(v, d, sc) for v, d in result["gain_over_baseline"].items()]
    if result["gain_over_pfd"]:
        lines += ["", f"CPFD − PFD (`{result['pfd_reference']}`), F1 points, paired bootstrap 95 % interval:", ""]
        lines += [*_header(sc), *(_interval_row(v, d, sc) for v, d in result["gain_over_pfd"].items())]
    if result.get("contrasts"):
        lines += [
            "",
            "One setting at a time (variants that differ in exactly one of teacher outputs, calibration, folds, "
            "loss form, hint, or only in tuned lambda / T), F1 points, paired bootstrap 95 % interval:",
            "",
            *_header(sc),
            *(_interval_row(name, d, sc) for name, d in result["contrasts"].items()),
        ]
    return lines


def _gap_and_truth_tables(result: dict, sc: list[str]) -> list[str]:
    lines = [
        "",
        "Gap closed, % (against the teacher"
        + (" / against the student ceiling, Bayes content only" if result.get("has_truth") else "")
        + "; † : the teacher − X-VLM gap is within 2 standard errors, so the ratio against the teacher is noise):",
        "",
        *_header(sc),
    ]
    for v, row in result["gap_closed"].items():
        cells = []
        for s in [*sc, "pooled"]:
            c = row[s]
            learn = f" / {_pct(c['vs_ceiling'])}" if result["has_truth"] else ""
            cells.append(f"{_pct(c['vs_teacher'])}{learn}{' †' if c['gap_within_noise'] else ''}")
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    if result.get("has_truth"):
        lines += ["", "Macro-F1 against the true label (the generator keeps it):", "", *_header(sc)]
        for m in result["methods"]:
            f = result["f1_true_label"][m]
            lines.append(f"| {NAMES.get(m, m)} | " + " | ".join(f"{f[s]:.3f}" for s in sc) + f" | {f['pooled']:.3f} |")
    return lines


def _diagnostics_table(result: dict, sc: list[str]) -> list[str]:
    lines = [
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
    return lines


def _weight_table(result: dict, sc: list[str]) -> list[str]:
    shares = [result["diagnostics"][s].get("weight_share") for s in sc]
    if not all(shares):
        return []
    kinds = sorted({k for sh in shares for v in sh.values() for k in v})
    lines = [
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
    return lines


def _epochs_line(result: dict, sc: list[str]) -> list[str]:
    lines = [
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
    return lines


def headline_table(result: dict) -> str:
    """The README's one results table: pooled macro-F1 of X-VLM, the teacher and every variant, with each variant's
    gain over X-VLM and its 95 % paired interval (tests/unit/test_readme.py keeps the README equal to it)."""
    pooled = result["f1"]
    teacher = result["teacher_minus_baseline"]["pooled"]
    lines = [
        "| model | macro-F1, pooled | over X-VLM, F1 points [95 %] |",
        "|---|---|---|",
        f"| X-VLM (baseline student) | {pooled['baseline']['pooled']['mean']:.3f} | |",
        f"| DF-X-VLM (teacher) | {pooled['teacher']['pooled']['mean']:.3f} | {_points(teacher)} |",
    ]
    for v, gain in result["gain_over_baseline"].items():
        lines.append(f"| `{v}` | {pooled[v]['pooled']['mean']:.3f} | {_points(gain['pooled'])} |")
    return "\n".join(lines) + "\n"


def _points(d: dict) -> str:
    star = " \\*" if d["significant"] else ""
    return f"{100 * d['mean']:+.1f} [{100 * d['lo']:+.1f}, {100 * d['hi']:+.1f}]{star}"


def to_markdown(result: dict) -> str:
    """Every table of a quality result, in the order the README shows them."""
    sc = result["scenarios"]
    lines = _f1_table(result, sc) + _interval_tables(result, sc) + _gap_and_truth_tables(result, sc)
    lines += _diagnostics_table(result, sc) + estimate_table(result) + tuned_table(result, sc)
    lines += _weight_table(result, sc) + _epochs_line(result, sc)
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
        ax.stairs(h / max(h.sum(), 1), edges, label=f"{source_name(src)}, calibrated")
    ax.set_xlabel("teacher's top-class probability on the training split")
    ax.set_ylabel("share of examples")
    ax.legend(fontsize=8)
    ax.set_title(confidence_title(list(next(iter(result["diagnostics"].values()))["confidence_hist"])))

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
        ax.set_ylim(0.0, max(1.2, ax.get_ylim()[1]))
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=1, fontsize=7, frameon=False)
        ax.set_title("Where the distillation weight goes (1 = as many as examples)")
    else:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(Path(out_dir) / "quality.png", dpi=100, bbox_inches="tight")  # the legends under the axes included
    plt.close(fig)


SOURCE_NAMES = {"insample": "in-sample", "oof": "out-of-fold"}


def source_name(src: str) -> str:
    """A teacher-outputs source as a reader names it: ``oof3`` -> ``out-of-fold (3 folds)``."""
    base = src.rstrip("0123456789")
    folds = src[len(base) :]
    return SOURCE_NAMES.get(base, base) + (f" ({folds} folds)" if folds else "")


def confidence_title(sources: list[str]) -> str:
    """The confidence panel's title, naming the teacher outputs the result holds histograms of (``oof3``,
    ``insample``): a run that stored one source says so instead of promising a comparison."""
    names = [source_name(s) for s in sources]
    if len(names) == 1:
        return f"Teacher confidence: {names[0]} outputs only (the run stored no other source)"
    return "Teacher confidence: " + " vs ".join(names)


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


def tuned_table(result: dict, sc: list[str]) -> list[str]:
    """The lambda and T the search chose, per tuned variant and scenario (means over seeds)."""
    tuned = {s: result["diagnostics"][s].get("tuned") or {} for s in sc}
    variants = sorted({v for t in tuned.values() for v in t})
    if not variants:
        return []
    lines = ["", "Tuned settings (Optuna on the validation split; mean over seeds, min–max):", ""]
    lines += ["| variant | scenario | lambda | T | best validation F1 |", "|---|---|---|---|---|"]
    for v in variants:
        for s in sc:
            t = tuned[s].get(v)
            if t:
                lines.append(
                    f"| {v} | {s} | {t['lam']:.2f} ({t['lam_min']:.2f}–{t['lam_max']:.2f}) | "
                    f"{t['temperature']:.2f} ({t['temperature_min']:.2f}–{t['temperature_max']:.2f}) | "
                    f"{t['val_macro_f1']:.3f} |"
                )
    return lines
