"""Comparing distillation variants: names, paired bootstrap intervals, gap closed, diagnostics, tables, plots.

Used by the quality benchmark (``benchmarks/quality.py``) and the pipeline's report (the F1 chart).

Variant names say everything they mean and never depend on a config's defaults::

    pfd[:targets=oof|insample][:folds=K][:cal=on|off]
    cpfd:<weighting>[:norm=none|mean|mean_clip][:loss=coupled|decoupled][:targets=...][:folds=K][:cal=...][:g=<gamma>]

Omitted parts take fixed values (targets=oof, folds=3, cal=on, norm=mean, loss=decoupled, g=1);
the canonical form (``canonical_variant``) spells every part out. Temperature and lambda come from
the config and are printed with the results.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cpfd.config import DistillConfig
from cpfd.evaluate import macro_prf
from cpfd.reports import grouped_bars

BASELINES = ("baseline", "teacher")
REFERENCES = ("bayes_content", "bayes_privileged")
NAMES = {
    "baseline": "X-VLM (baseline student)",
    "teacher": "DF-X-VLM (teacher)",
    "bayes_content": "Bayes, content only (student ceiling)",
    "bayes_privileged": "Bayes, content + engagement",
}
FIXED = {
    "teacher_outputs": "oof",
    "folds": 3,
    "calibrate": True,
    "normalize": "mean",
    "loss": "decoupled",
    "gamma": 1.0,
}
WEIGHTINGS = ("true_class", "max_prob", "entropy", "correct")
PFD_REFERENCE = "pfd:targets=oof:folds=3:cal=on"


def parse_variant(name: str, base: DistillConfig | None = None) -> DistillConfig:
    """A variant name -> its DistillConfig (temperature, lambda and mode from ``base``)."""
    parts = name.strip().split(":")
    method = parts[0]
    if method not in ("pfd", "cpfd"):
        raise ValueError(f"variant {name!r}: must start with 'pfd' or 'cpfd'")
    update: dict = {"method": method, **FIXED}
    rest = parts[1:]
    if method == "cpfd":
        if not rest or rest[0] not in WEIGHTINGS:
            raise ValueError(f"variant {name!r}: cpfd needs a weighting first, one of {', '.join(WEIGHTINGS)}")
        update["weighting"] = rest.pop(0)
    keys = {
        "targets": "teacher_outputs",
        "folds": "folds",
        "cal": "calibrate",
        "norm": "normalize",
        "loss": "loss",
        "g": "gamma",
    }
    for p in rest:
        key, sep, value = p.partition("=")
        if not sep or key not in keys or (method == "pfd" and key in ("norm", "loss", "g")):
            allowed = ", ".join(k for k in keys if method == "cpfd" or k not in ("norm", "loss", "g"))
            raise ValueError(f"variant {name!r}: unknown part {p!r}; {method} takes {allowed}")
        if key == "cal":
            if value not in ("on", "off"):
                raise ValueError(f"variant {name!r}: cal must be on or off")
            update["calibrate"] = value == "on"
        else:
            update[keys[key]] = value
    base_dump = (base or DistillConfig()).model_dump()
    try:
        return DistillConfig.model_validate({**base_dump, **update})
    except Exception as e:
        raise ValueError(f"variant {name!r}: {e}") from None


def variant_name(cfg: DistillConfig) -> str:
    targets = f"targets={cfg.teacher_outputs}" + (f":folds={cfg.folds}" if cfg.teacher_outputs == "oof" else "")
    cal = f"cal={'on' if cfg.calibrate else 'off'}"
    if cfg.method == "pfd":
        return f"pfd:{targets}:{cal}"
    g = f":g={cfg.gamma:g}" if cfg.gamma != 1.0 else ""
    return f"cpfd:{cfg.weighting}:norm={cfg.normalize}:loss={cfg.loss}:{targets}:{cal}{g}"


def canonical_variant(name: str) -> str:
    return variant_name(parse_variant(name))


# ---- statistics ------------------------------------------------------------------------------


def macro_f1_batch(labels: np.ndarray, preds: np.ndarray, k: int) -> np.ndarray:
    """Macro-F1 of every row of [B, n] label / prediction arrays (classes absent from both excluded)."""
    b = labels.shape[0]
    codes = (labels * k + preds) + (np.arange(b)[:, None] * k * k)
    return macro_prf(np.bincount(codes.ravel(), minlength=b * k * k).reshape(b, k, k))["f1"]


def _cells(runs: list[dict], scenario: str) -> list[dict]:
    return sorted((r for r in runs if r["scenario"] == scenario), key=lambda r: r["seed"])


def _f1(run: dict, method: str, target: str = "labels") -> float:
    y = np.asarray(run[target])[None]
    return float(macro_f1_batch(y, np.asarray(run["preds"][method])[None], len(run["label_names"]))[0])


def bootstrap_f1(
    runs: list[dict], scenarios: list[str], methods: list[str], reps: int = 1000, seed: int = 0, target: str = "labels"
) -> dict[str, np.ndarray]:
    """Replicates [reps, scenarios] of each method's seed-mean macro-F1, resampling seeds and test examples
    (the same draws for every method, so differences are paired)."""
    rng = np.random.default_rng(seed)
    out = {m: np.zeros((reps, len(scenarios))) for m in methods}
    for j, s in enumerate(scenarios):
        cells = _cells(runs, s)
        picks = rng.integers(0, len(cells), size=(reps, len(cells)))  # seeds with replacement
        for c, cell in enumerate(cells):
            n = len(cell[target])
            idx = rng.integers(0, n, size=(reps, n))
            y = np.asarray(cell[target])[idx]
            k = len(cell["label_names"])
            weight = (picks == c).sum(1) / len(cells)  # how often this seed was drawn in each replicate
            for m in methods:
                out[m][:, j] += weight * macro_f1_batch(y, np.asarray(cell["preds"][m])[idx], k)
    return out


def _interval(samples: np.ndarray, point: float) -> dict:
    lo, hi = np.percentile(samples, [2.5, 97.5])
    return {
        "mean": point,
        "lo": float(lo),
        "hi": float(hi),
        "se": float(samples.std(ddof=1)),
        "significant": bool(lo > 0 or hi < 0),
    }


def weight_shares(weights: np.ndarray, slices: np.ndarray) -> dict:
    """Per slice kind: its share of the examples and of the total distillation weight."""
    total = max(float(weights.sum()), 1e-12)
    return {
        str(s): {"examples": float((slices == s).mean()), "weight": float(weights[slices == s].sum() / total)}
        for s in sorted(set(slices.tolist()))
    }


def summarise(runs: list[dict], variants: list[str], reps: int = 1000) -> dict:
    """Per scenario and pooled: F1 (mean ± std over seeds), paired bootstrap intervals, gap closed, diagnostics."""
    scenarios = list(dict.fromkeys(r["scenario"] for r in runs))
    has_truth = all("true_label" in r for r in runs)
    if has_truth:
        for r in runs:
            for ref in REFERENCES:
                r["preds"][ref] = r[ref]
    methods = [*BASELINES, *(REFERENCES if has_truth else ()), *variants]
    pfd = PFD_REFERENCE if PFD_REFERENCE in variants else next((v for v in variants if v.startswith("pfd")), None)
    boot = bootstrap_f1(runs, scenarios, methods, reps)
    means = {m: np.array([np.mean([_f1(r, m) for r in _cells(runs, s)]) for s in scenarios]) for m in methods}
    truth_means = (
        {m: np.array([np.mean([_f1(r, m, "true_label") for r in _cells(runs, s)]) for s in scenarios]) for m in methods}
        if has_truth
        else {}
    )

    def diff(a: str, b: str) -> dict:
        per = {
            s: _interval(boot[a][:, j] - boot[b][:, j], float(means[a][j] - means[b][j]))
            for j, s in enumerate(scenarios)
        }
        pooled = _interval((boot[a] - boot[b]).mean(1), float((means[a] - means[b]).mean()))
        return {"per_scenario": per, "pooled": pooled}

    gap = diff("teacher", "baseline")
    result: dict = {
        "scenarios": scenarios,
        "methods": methods,
        "variants": variants,
        "pfd_reference": pfd,
        "has_truth": has_truth,
        "bootstrap_reps": reps,
        "runs_per_scenario": {s: len(_cells(runs, s)) for s in scenarios},
    }
    result["f1"] = {
        m: {
            s: {
                "mean": float(means[m][j]),
                "std": float(np.std([_f1(r, m) for r in _cells(runs, s)], ddof=1)) if len(_cells(runs, s)) > 1 else 0.0,
            }
            for j, s in enumerate(scenarios)
        }
        | {"pooled": {"mean": float(means[m].mean())}}
        for m in methods
    }
    if has_truth:
        result["f1_true_label"] = {
            m: {s: float(truth_means[m][j]) for j, s in enumerate(scenarios)} | {"pooled": float(truth_means[m].mean())}
            for m in methods
        }
    result["teacher_minus_baseline"] = gap
    result["gain_over_baseline"] = {v: diff(v, "baseline") for v in variants}
    result["gain_over_pfd"] = {v: diff(v, pfd) for v in variants if pfd and v != pfd and v.startswith("cpfd")}

    def closed(num: float, den: float) -> float | None:
        return None if den <= 1e-9 else num / den

    result["gap_closed"] = {}
    ceiling = means["bayes_content"] if has_truth else None
    for v in variants:
        row = {}
        for j, s in enumerate(scenarios):
            g = gap["per_scenario"][s]
            gain = float(means[v][j] - means["baseline"][j])
            row[s] = {
                "vs_teacher": closed(gain, g["mean"]),
                "gap_within_noise": bool(g["mean"] < 2 * g["se"]),
                "vs_ceiling": closed(gain, float(ceiling[j] - means["baseline"][j])) if ceiling is not None else None,
            }
        gain = float((means[v] - means["baseline"]).mean())
        row["pooled"] = {
            "vs_teacher": closed(gain, gap["pooled"]["mean"]),
            "gap_within_noise": bool(gap["pooled"]["mean"] < 2 * gap["pooled"]["se"]),
            "vs_ceiling": closed(gain, float((ceiling - means["baseline"]).mean())) if ceiling is not None else None,
        }
        result["gap_closed"][v] = row
    result["contrasts"] = {f"{a} − {b}": diff(a, b) for a, b in contrasts(variants)}
    result["epochs"] = {
        m: {s: np.mean([r["epochs"][m] for r in _cells(runs, s)], axis=0).tolist() for s in scenarios}
        for m in (*BASELINES, *variants)
    }
    result["diagnostics"] = _diagnostics(runs, scenarios, variants)
    ranked = sorted((v for v in variants if v.startswith("cpfd")), key=lambda v: -float(means[v].mean()))
    result["best_cpfd_variant"] = ranked[0] if ranked else None
    return result


AXES = {"targets": ("teacher_outputs",), "cal": ("calibrate",), "folds": ("folds",), "loss form": ("loss", "normalize")}
PREFERRED = {"teacher_outputs": "oof", "calibrate": True, "loss": "decoupled", "normalize": "mean"}


def contrasts(variants: list[str]) -> list[tuple[str, str]]:
    """Pairs of variants that differ along exactly one axis (teacher outputs, calibration, folds, loss form), the
    oof / calibrated / decoupled / more-folds side first."""
    cfgs = {v: parse_variant(v) for v in variants}
    pairs = []
    for i, a in enumerate(variants):
        for b in variants[i + 1 :]:
            ca, cb = cfgs[a], cfgs[b]
            if (ca.method, ca.weighting if ca.method == "cpfd" else None) != (
                cb.method,
                cb.weighting if cb.method == "cpfd" else None,
            ):
                continue
            if ca.gamma != cb.gamma:
                continue
            differing = [name for name, axis in AXES.items() if any(getattr(ca, f) != getattr(cb, f) for f in axis)]
            if ca.teacher_outputs == "insample" and cb.teacher_outputs == "insample" and differing == ["folds"]:
                continue
            if len(differing) != 1 or (
                differing == ["folds"] and "insample" in (ca.teacher_outputs, cb.teacher_outputs)
            ):
                continue
            axis = AXES[differing[0]]
            first_a = (
                (ca.folds > cb.folds) if axis == ("folds",) else any(getattr(ca, f) == PREFERRED.get(f) for f in axis)
            )
            pairs.append((a, b) if first_a else (b, a))
    return pairs


def _mean_dicts(items: list[dict]) -> dict:
    keys = {k for d in items for k, v in d.items() if isinstance(v, (int, float)) and v is not None}
    return {
        k: float(np.mean([d[k] for d in items if d.get(k) is not None]))
        for k in sorted(keys)
        if any(d.get(k) is not None for d in items)
    }


def _diagnostics(runs: list[dict], scenarios: list[str], variants: list[str]) -> dict:
    out: dict = {}
    for s in scenarios:
        ds = [r["diagnostics"] for r in _cells(runs, s)]
        row: dict = {
            "teacher_train_f1": _mean_dicts([d["teacher_train_f1"] for d in ds]),
            "split_f1": {k: _mean_dicts([d["split_f1"][k] for d in ds]) for k in ("train", "val")},
            "calibration": {src: _mean_dicts([d["calibration"][src] for d in ds]) for src in ds[0]["calibration"]},
            "confidence_hist": {
                src: np.sum([d["confidence_hist"][src] for d in ds], axis=0).tolist()
                for src in ds[0]["confidence_hist"]
            },
        }
        if all("learnability" in d for d in ds):
            row["learnability"] = _mean_dicts([d["learnability"] for d in ds])
        if all(d["weight_share"] for d in ds):
            row["weight_share"] = {
                v: {
                    sl: _mean_dicts([d["weight_share"][v][sl] for d in ds if sl in d["weight_share"][v]])
                    for sl in ds[0]["weight_share"][v]
                }
                for v in variants
                if v in ds[0]["weight_share"]
            }
        val = row["split_f1"]["val"]
        row["teacher_not_better_on_val"] = bool(val.get("teacher", 0) <= val.get("baseline", 0))
        out[s] = row
    return out


# ---- tables ------------------------------------------------------------------------------------


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
        "| ECE before → after scaling (oof) | temperature | learnable share of the teacher's edge "
        "| probe F1 hard → soft targets | teacher better on val? |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in sc:
        d = result["diagnostics"][s]
        tr = d["teacher_train_f1"]
        oof_key = next((k for k in d["calibration"] if k.startswith("oof")), None)
        cal = d["calibration"].get(oof_key) or next(iter(d["calibration"].values()))
        le = d.get("learnability", {})
        share = le.get("learnable_share")
        lines.append(
            f"| {s} | {tr.get('insample', float('nan')):.3f} / {d['split_f1']['val']['teacher']:.3f} | "
            f"{d['split_f1']['val']['baseline']:.3f} | "
            f"{tr.get(oof_key, float('nan')) if oof_key else float('nan'):.3f} | "
            f"{cal['ece_before']:.3f} → {cal['ece_after']:.3f} | {cal['temperature']:.2f} | "
            f"{'n/a' if share is None else f'{100 * share:.0f} %'} | "
            f"{le.get('probe_hard_f1', float('nan')):.3f} → {le.get('probe_soft_f1', float('nan')):.3f} | "
            f"{'NO: distilling it is not justified' if d['teacher_not_better_on_val'] else 'yes'} |"
        )
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


# ---- plots -------------------------------------------------------------------------------------


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


# ---- learnability ------------------------------------------------------------------------------


def student_input_features(split, vocab_size: int, buckets: int = 4096) -> np.ndarray:
    """Fixed features of what the student sees: title token counts and 4x4-pooled frame colours
    (mean, max over time); title counts only for a scenario without frames."""
    import torch

    ids, mask = split.input_ids, split.attention_mask
    width = min(vocab_size, buckets)
    bow = torch.zeros(len(ids), width)
    bow.scatter_add_(1, ids % width, mask.float())
    if split.frames.shape[1] == 0:
        return bow.numpy()
    f = split.frames.float() / 255.0  # [N, T, H, W, 3]
    n, t, h, w, c = f.shape
    pooled = torch.nn.functional.adaptive_avg_pool2d(f.permute(0, 1, 4, 2, 3).reshape(n * t, c, h, w), 4).reshape(
        n, t, -1
    )
    return torch.cat([bow, pooled.mean(1), pooled.amax(1)], dim=1).numpy()


def _fit_probe(x: np.ndarray, targets: np.ndarray, l2: float = 1e-3, steps: int = 100):
    import torch

    xt, yt = torch.from_numpy(x).float(), torch.from_numpy(targets).float()
    w = torch.zeros(x.shape[1], targets.shape[1], requires_grad=True)
    b = torch.zeros(targets.shape[1], requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = -(yt * (xt @ w + b).log_softmax(-1)).sum(-1).mean() + l2 * (w**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return lambda z: (torch.from_numpy(z).float() @ w + b).detach().log_softmax(-1).numpy()


def learnability_probe(data, oof) -> dict:
    """How much of the out-of-fold teacher's edge a model of the student's inputs alone can learn.

    Two linear probes on fixed features of the student's inputs are fitted on the training split,
    one to the hard labels and one to the calibrated out-of-fold teacher probabilities. On the
    validation split, ``learnable_share`` = (NLL_hard − NLL_soft) / (NLL_hard − NLL_teacher): the
    part of the teacher's advantage (in nats) that learning from its soft targets recovers.
    """
    from cpfd.evaluate import classification_metrics

    train, val = data.splits["train"], data.splits["val"]
    vocab = len(data.tokenizer)
    xtr, xva = student_input_features(train, vocab), student_input_features(val, vocab)
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    xtr, xva = (xtr - mu) / sd, (xva - mu) / sd
    k = len(data.label_names)
    y, yv = train.labels.numpy(), val.labels.numpy()
    hard = _fit_probe(xtr, np.eye(k)[y])
    soft = _fit_probe(xtr, oof.calibrated.softmax(-1).numpy())
    lp_hard, lp_soft = hard(xva), soft(xva)
    folds = len(oof.val_labels) // len(yv)
    p_teacher = (oof.val_logits / oof.temperature).softmax(-1).reshape(folds, len(yv), k).mean(0).numpy()

    def nll(logp):
        return float(-logp[np.arange(len(yv)), yv].mean())

    nll_t = float(-np.log(np.clip(p_teacher[np.arange(len(yv)), yv], 1e-12, None)).mean())
    edge = nll(lp_hard) - nll_t
    f1 = {
        name: classification_metrics(np.exp(lp), yv, data.label_names)["macro_f1"]
        for name, lp in (("hard", lp_hard), ("soft", lp_soft))
    }
    return {
        "probe_hard_f1": f1["hard"],
        "probe_soft_f1": f1["soft"],
        "probe_hard_nll": nll(lp_hard),
        "probe_soft_nll": nll(lp_soft),
        "teacher_val_nll": nll_t,
        "teacher_val_f1": classification_metrics(p_teacher, yv, data.label_names)["macro_f1"],
        "learnable_share": (nll(lp_hard) - nll(lp_soft)) / edge if edge > 0.01 else None,
    }
