"""The numbers of one monitoring run as named values: what the Evidently reports show and test, what the Evidently
dashboard plots over windows (cpfd.monitoring.evidently_ui) and what the KFP step logs as its Metrics artifact
(components/monitor.py). Computed once, by the job (cpfd.monitoring.analysis, cpfd.monitoring.stats)."""

from __future__ import annotations

import math

ARM_VALUES = (
    "n",
    "labelled",
    "label_coverage",
    "confidence_mean",
    "reference_confidence_mean",
    "ks_statistic",
    "ks_pvalue",
    "psi",
    "class_psi",
    "f1",
    "reference_f1",
    "precision",
    "recall",
)
AB_VALUES = {"diff": "ab_diff", "ci_low": "ab_ci_low", "ci_high": "ab_ci_high"}
CHECK_PREFIX = "check_"  # check_<name>: 1 the check failed, 0 it passed (a skipped check has no value)
VERDICT_CODES = {"treatment better": 1.0, "no significant difference": 0.0, "treatment worse": -1.0}
EXPERIMENT_VALUES = {"diff": "exp_f1_diff", "low": "exp_f1_low", "high": "exp_f1_high"}
DECISION_CODES = {"promote": 2.0, "ramp": 1.0, "hold": 0.0, "concluded": 0.0, "rollback": -1.0, "invalid": -2.0}


def scenario_values(result: dict) -> list[tuple[str, str | None, float]]:
    """(quantity, arm, value) of one scenario's result: the slice values of every arm and the outcome of its checks
    (``check_<name>``: 1 failed, 0 passed), then (arm None) the A/B difference, its CI, its check and verdict code
    (+1 treatment better, 0 no significant difference, -1 worse) and the number of failed checks. Missing, skipped
    and non-finite values are left out."""
    out = [(q, arm, float(sl[q])) for arm, sl in result["arms"].items() for q in ARM_VALUES if q in sl]
    out += [
        (CHECK_PREFIX + c, arm, float(v == "fail"))
        for arm, sl in result["arms"].items()
        for c, v in sl["checks"].items()
        if v in ("pass", "fail")
    ]
    ab = result["ab"]
    out += [(name, None, float(ab[k])) for k, name in AB_VALUES.items() if k in ab]
    if ab["status"] in ("pass", "fail"):
        out.append((CHECK_PREFIX + "ab", None, float(ab["status"] == "fail")))
    if "verdict" in ab:
        out.append(("ab_verdict", None, VERDICT_CODES[ab["verdict"]]))
    exp = result.get("experiment")
    if exp:  # the always-valid experiment look (cpfd.monitoring.experiments)
        out += [(name, None, float(exp[k])) for k, name in EXPERIMENT_VALUES.items() if k in exp]
        out.append(("exp_decision", None, DECISION_CODES[exp["decision"]]))
        if exp["srm"] in ("pass", "fail"):
            out.append((CHECK_PREFIX + "exp_srm", None, float(exp["srm"] == "fail")))
    out.append(("failed_checks", None, float(len(result["failed_checks"]))))
    return [v for v in out if math.isfinite(v[2])]


def flat_values(summary: dict) -> dict[str, float]:
    """The run's totals and every scenario value as ``<scenario>.<arm>.<quantity>`` or ``<scenario>.<quantity>``."""
    out = {
        "predictions": float(summary["n_predictions"]),
        "labelled": float(summary["n_labelled"]),
        "failed_checks": float(len(summary["failed_checks"])),
    }
    for s, res in summary["scenarios"].items():
        for q, arm, v in scenario_values(res):
            out[f"{s}.{q}" if arm is None else f"{s}.{arm}.{q}"] = v
    return out
