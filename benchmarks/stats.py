"""The quality benchmark's statistics: paired bootstrap intervals over seeds and test examples, gap closed,
diagnostics per scenario."""

from __future__ import annotations

import numpy as np

from cpfd.benchmarks.variants import BASELINES, PFD_REFERENCE, REFERENCES, contrasts
from cpfd.evaluate import macro_f1_batch


def _cells(runs: list[dict], scenario: str) -> list[dict]:
    return sorted((r for r in runs if r["scenario"] == scenario), key=lambda r: r["seed"])


def run_f1(run: dict, method: str, target: str = "labels") -> float:
    """One run's macro-F1 of ``method``'s test predictions against ``target`` (``labels`` or ``true_label``)."""
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


def percentile_interval(samples: np.ndarray, point: float) -> dict:
    """The 95 % percentile interval of bootstrap ``samples`` around ``point``; significant when it excludes 0."""
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
    means = {m: np.array([np.mean([run_f1(r, m) for r in _cells(runs, s)]) for s in scenarios]) for m in methods}
    truth_means = (
        {
            m: np.array([np.mean([run_f1(r, m, "true_label") for r in _cells(runs, s)]) for s in scenarios])
            for m in methods
        }
        if has_truth
        else {}
    )

    def diff(a: str, b: str) -> dict:
        per = {
            s: percentile_interval(boot[a][:, j] - boot[b][:, j], float(means[a][j] - means[b][j]))
            for j, s in enumerate(scenarios)
        }
        pooled = percentile_interval((boot[a] - boot[b]).mean(1), float((means[a] - means[b]).mean()))
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
                "std": float(np.std([run_f1(r, m) for r in _cells(runs, s)], ddof=1))
                if len(_cells(runs, s)) > 1
                else 0.0,
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

    ceiling = means["bayes_content"] if has_truth else None
    result["gap_closed"] = {v: _gap_closed(means[v], means["baseline"], gap, scenarios, ceiling) for v in variants}
    result["contrasts"] = {f"{a} − {b}": diff(a, b) for a, b in contrasts(variants)}
    result["epochs"] = {
        m: {s: np.mean([r["epochs"][m] for r in _cells(runs, s)], axis=0).tolist() for s in scenarios}
        for m in (*BASELINES, *variants)
    }
    result["diagnostics"] = _diagnostics(runs, scenarios, variants)
    ranked = sorted((v for v in variants if v.startswith("cpfd")), key=lambda v: -float(means[v].mean()))
    result["best_cpfd_variant"] = ranked[0] if ranked else None
    if all("estimate" in r for r in runs):
        result["estimate"] = estimate_rows(runs, scenarios, result["gain_over_baseline"])
    return result


def estimate_rows(runs: list[dict], scenarios: list[str], gains: dict) -> dict:
    """The gain estimate against the realised gain of the variant it was made for, per scenario (docs/decision.md):
    rows of {scenario, predicted_low, predicted_high, predicted, realised, realised_low, realised_high, verdict,
    covered} and the coverage."""
    from cpfd.training.estimate import GainEstimate, pooled

    rows = []
    for s in scenarios:
        cells = _cells(runs, s)
        variant = cells[0]["estimate"]["variant"]
        est = pooled([GainEstimate(**cell["estimate"]["probe"]) for cell in cells])
        real = gains[variant]["per_scenario"][s]
        rows.append(
            {
                "scenario": s,
                "variant": variant,
                "predicted_low": est["low"],
                "predicted_high": est["high"],
                "predicted": est["predicted"],
                "verdict": est["verdict"],
                "realised": real["mean"],
                "realised_low": real["lo"],
                "realised_high": real["hi"],
                "covered": bool(est["low"] <= real["mean"] <= est["high"]),
                "seeds": len(cells),
                "probe_seconds": float(np.mean([c["estimate"]["probe"]["seconds"] for c in cells])),
            }
        )
    return {"rows": rows, "covered": sum(r["covered"] for r in rows), "scenarios": len(rows)}


def _mean_dicts(items: list[dict]) -> dict:
    keys = {k for d in items for k, v in d.items() if isinstance(v, (int, float)) and v is not None}
    return {
        k: float(np.mean([d[k] for d in items if d.get(k) is not None]))
        for k in sorted(keys)
        if any(d.get(k) is not None for d in items)
    }


def _closed(num: float, den: float) -> float | None:
    return None if den <= 1e-9 else num / den


def _gap_closed(variant: np.ndarray, baseline: np.ndarray, gap: dict, scenarios: list[str], ceiling) -> dict:
    """Gain over X-VLM as a share of the teacher's gap and (with a ground truth) of the student ceiling's."""
    row = {}
    for j, s in enumerate(scenarios):
        g = gap["per_scenario"][s]
        gain = float(variant[j] - baseline[j])
        row[s] = {
            "vs_teacher": _closed(gain, g["mean"]),
            "gap_within_noise": bool(g["mean"] < 2 * g["se"]),
            "vs_ceiling": _closed(gain, float(ceiling[j] - baseline[j])) if ceiling is not None else None,
        }
    gain = float((variant - baseline).mean())
    row["pooled"] = {
        "vs_teacher": _closed(gain, gap["pooled"]["mean"]),
        "gap_within_noise": bool(gap["pooled"]["mean"] < 2 * gap["pooled"]["se"]),
        "vs_ceiling": _closed(gain, float((ceiling - baseline).mean())) if ceiling is not None else None,
    }
    return row


def _tuned_summary(best: list[dict]) -> dict:
    """The searched settings over seeds: mean, min and max of each, the mean best validation F1."""
    out: dict = {"val_macro_f1": float(np.mean([b["val_macro_f1"] for b in best])), "trials": best[0]["trials"]}
    for key in ("lam", "temperature"):
        values = [b[key] for b in best]
        out |= {key: float(np.mean(values)), f"{key}_min": float(min(values)), f"{key}_max": float(max(values))}
    return out


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
        if all(d["weight_share"] for d in ds):
            row["weight_share"] = {
                v: {
                    sl: _mean_dicts([d["weight_share"][v][sl] for d in ds if sl in d["weight_share"][v]])
                    for sl in ds[0]["weight_share"][v]
                }
                for v in variants
                if v in ds[0]["weight_share"]
            }
        tuned = [d.get("tuned") or {} for d in ds]
        if any(tuned):
            row["tuned"] = {v: _tuned_summary([t[v] for t in tuned if v in t]) for v in tuned[0]}
        val = row["split_f1"]["val"]
        row["teacher_not_better_on_val"] = bool(val.get("teacher", 0) <= val.get("baseline", 0))
        out[s] = row
    return out
