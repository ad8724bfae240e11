"""Peeking at an A/B experiment every day: the false-positive rate of the fixed-horizon bootstrap verdict the
monitoring job used to give, against the always-valid confidence sequence (monitoring/sequential.py), and the
sequence's power at the planned sample size. ``cpfd bench experiments`` prints both; the README quotes it.

Each simulated experiment: two arms, 3 balanced classes, errors spread evenly over the other classes;
``per_day`` labelled predictions per arm per day, one look a day on the cumulative counts.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from cpfd.monitoring import sequential as seq
from cpfd.monitoring.stats import bootstrap_f1_diff


def confusion_probs(accuracy: float, k: int = 3) -> np.ndarray:
    """Cell probabilities of balanced classes with accuracy ``accuracy`` and errors spread evenly."""
    p = np.full((k, k), (1 - accuracy) / (k - 1) / k)
    np.fill_diagonal(p, accuracy / k)
    return p


def design_variance(acc_c: float, acc_t: float, k: int = 3) -> tuple[float, float]:
    """Per-observation macro-F1 variance of each arm, as a plan computes it from the offline reference."""
    return (
        seq.macro_f1_influence(confusion_probs(acc_t, k) * 1e6)[1],
        seq.macro_f1_influence(confusion_probs(acc_c, k) * 1e6)[1],
    )


def simulate(
    experiments: int,
    days: int = 14,
    per_day: int = 100,
    acc_control: float = 0.75,
    acc_treatment: float = 0.75,
    alpha: float = 0.05,
    seed: int = 0,
    bootstrap: bool = True,
    resamples: int = 1000,
    design_total: int | None = None,
) -> dict:
    """Share of experiments declared significant at some daily look (and at the last look alone) by the
    fixed-horizon bootstrap and by the confidence sequence (designed, before any data, for ``design_total``
    labelled units, default the final look's)."""
    rng = np.random.default_rng(seed)
    k = 3
    pc, pt = confusion_probs(acc_control, k).ravel(), confusion_probs(acc_treatment, k).ravel()
    var_t, var_c = design_variance(acc_control, acc_treatment, k)
    total = design_total or 2 * days * per_day
    eta = seq.design_eta(total * (var_t / 0.5 + var_c / 0.5), alpha)
    any_cs = last_cs = any_boot = last_boot = 0
    first_look: list[int] = []
    for _ in range(experiments):
        cm_c = np.cumsum(rng.multinomial(per_day, pc, size=days), axis=0).reshape(days, k, k)
        cm_t = np.cumsum(rng.multinomial(per_day, pt, size=days), axis=0).reshape(days, k, k)
        low, high, hit, hit_boot = -math.inf, math.inf, None, False
        for d in range(days):
            f_t, v_t = seq.macro_f1_influence(cm_t[d])
            f_c, v_c = seq.macro_f1_influence(cm_c[d])
            n = per_day * (d + 1)
            cs = seq.two_arm_cs(f_t, v_t, n, f_c, v_c, n, eta, alpha)
            low, high = max(low, cs["low"]), min(high, cs["high"])  # the running intersection is a CS too
            if hit is None and (low > 0 or high < 0):
                hit = d + 1
            if bootstrap:
                b = bootstrap_f1_diff(cm_t[d], cm_c[d], resamples, alpha, seed=int(rng.integers(2**31)))
                hit_boot |= b["significant"]
                last_boot += d == days - 1 and b["significant"]
        any_cs += hit is not None
        last_cs += low > 0 or high < 0
        any_boot += hit_boot
        if hit is not None:
            first_look.append(hit)
    out: dict[str, Any] = {
        "experiments": experiments,
        "days": days,
        "per_day_per_arm": per_day,
        "accuracy": {"control": acc_control, "treatment": acc_treatment},
        "alpha": alpha,
        "design_total": total,
        "sequential": {"any_look": any_cs / experiments, "monte_carlo_se": _se(any_cs, experiments)},
        "sequential_first_look_median_day": float(np.median(first_look)) if first_look else None,
    }
    out["sequential"]["called_by_last_look"] = last_cs / experiments
    if bootstrap:
        out["bootstrap"] = {
            "any_look": any_boot / experiments,
            "last_look": last_boot / experiments,
            "monte_carlo_se": _se(any_boot, experiments),
        }
    return out


def _se(hits: int, n: int) -> float:
    p = hits / n
    return math.sqrt(max(p * (1 - p), 1e-12) / n)


def run(experiments: int = 1000, seed: int = 0, out: Path | None = None, log=print) -> dict:
    """A/A under daily looks (bootstrap and sequential, same data), then the plan for a 0.05 macro-F1 effect and
    the sequence's power at the planned size, looked at daily."""
    t0 = time.perf_counter()
    aa = simulate(experiments, seed=seed)
    log(
        f"A/A, {aa['days']} daily looks, {aa['per_day_per_arm']} labelled/arm/day, alpha {aa['alpha']}, "
        f"{experiments} experiments:"
    )
    b, s = aa["bootstrap"], aa["sequential"]
    log(
        f"  fixed-horizon bootstrap: significant at some look {100 * b['any_look']:.1f} % "
        f"(+-{100 * b['monte_carlo_se']:.1f}), at the last look alone {100 * b['last_look']:.1f} %"
    )
    log(
        f"  confidence sequence:     significant at some look {100 * s['any_look']:.1f} % "
        f"(+-{100 * s['monte_carlo_se']:.1f})"
    )
    acc_c, acc_t = 0.75, 0.80
    var_t, var_c = design_variance(acc_c, acc_t)
    f1_gap = (
        seq.macro_f1_influence(confusion_probs(acc_t) * 1e6)[0]
        - seq.macro_f1_influence(confusion_probs(acc_c) * 1e6)[0]
    )
    plan = seq.plan_sample_size(var_t, var_c, f1_gap, 0.05, power=0.8)
    per_day = 100
    days = math.ceil(plan["control"] / per_day)
    power = simulate(
        experiments,
        days=days,
        per_day=per_day,
        acc_control=acc_c,
        acc_treatment=acc_t,
        seed=seed + 1,
        bootstrap=False,
        design_total=plan["total"],
    )
    log(
        f"A/B, accuracy {acc_c} -> {acc_t} (macro-F1 +{f1_gap:.4f}): plan {plan['control']} labelled per arm "
        f"(inflation {plan['inflation']:.2f}x the fixed-horizon half-width), {days} daily looks of {per_day}/arm: "
        f"power {100 * power['sequential']['any_look']:.1f} % (+-{100 * power['sequential']['monte_carlo_se']:.1f}), "
        f"median day of the call {power['sequential_first_look_median_day']}"
    )
    result = {"aa": aa, "plan": {**plan, "min_effect": f1_gap}, "power": power, "seconds": time.perf_counter() - t0}
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    run()
