"""The packaging gate: which distilled students may go online, and why (or why not)."""

from __future__ import annotations

from cpfd.config import GateConfig


def gate_decision(f1: dict[str, float], gate: GateConfig, val_f1: dict[str, float] | None = None) -> tuple[bool, str]:
    """Package the distilled student only if the teacher is worth distilling, the student beats the baseline by the
    margin and stays near the teacher.

    ``f1`` (test split) has ``student`` (baseline X-VLM), ``teacher`` (DF-X-VLM) and ``distilled``; ``val_f1``
    (validation split) has ``student`` and ``teacher``. A teacher that is not better than the baseline on
    validation is always called out in the reason; with ``gate.require_teacher_better`` it is also refused
    whatever the test numbers say (validation is where that choice is made).
    """
    gain = f1["distilled"] - f1["baseline"]
    gap = f1["teacher"] - f1["distilled"]
    reasons = []
    flag = ""
    if val_f1 is not None and not val_f1["teacher"] > val_f1["baseline"]:
        note = (
            f"the teacher is not better than the baseline student on validation (macro-F1 {val_f1['teacher']:.4f} "
            f"vs {val_f1['baseline']:.4f})"
        )
        if gate.require_teacher_better:
            reasons.append(f"{note}, so distilling it is not justified")
        else:
            flag = f"; flagged: {note}, the gain comes from its out-of-fold soft targets, not from a better teacher"
    if gain <= gate.min_gain_over_baseline:
        reasons.append(
            f"F1 gain over the baseline student {gain:+.4f} is not above the margin {gate.min_gain_over_baseline:+.4f}"
        )
    if gap > gate.max_gap_to_teacher:
        reasons.append(f"F1 gap to the teacher {gap:.4f} exceeds {gate.max_gap_to_teacher:.4f}")
    if f1["distilled"] < gate.min_f1:
        reasons.append(f"F1 {f1['distilled']:.4f} is below the minimum {gate.min_f1:.4f}")
    if reasons:
        return False, "not packaged: " + "; ".join(reasons)
    better = (
        f", teacher better than the baseline on validation ({val_f1['teacher']:.4f} vs {val_f1['baseline']:.4f})"
        if val_f1 and not flag
        else ""
    )
    return True, (
        f"packaged: F1 {f1['distilled']:.4f}, "
        f"{gain:+.4f} over the baseline (margin {gate.min_gain_over_baseline:+.4f}), "
        f"{gap:.4f} from the teacher (limit {gate.max_gap_to_teacher:.4f}){better}{flag}"
    )


def teacher_not_better(summary: dict) -> bool:
    """A scenario summary whose teacher did not beat the baseline on validation."""
    val = summary.get("val_f1")
    if not val:
        return False
    return not val["teacher"] > val["baseline"]
