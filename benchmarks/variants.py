"""Distillation variants of the quality benchmark: their names, parsed into configs, and which pairs differ in one
setting.

Variant names say everything they mean and never depend on a config's defaults::

    pfd[:targets=oof|insample][:folds=K][:cal=on|off][:hint=none|fused][:tuned]
    cpfd:<weighting>[:norm=none|mean|mean_clip][:loss=coupled|decoupled][:targets=...][:folds=K][:cal=...][:g=<gamma>]
        [:hint=...][:tuned]

Omitted parts take fixed values (targets=oof, folds=3, cal=on, norm=mean, loss=decoupled, g=1, hint=none);
the canonical form (``canonical_variant``) spells every part out (``hint`` only when fused). Temperature and
lambda come from the config and are printed with the results; ``tuned`` searches them per scenario and seed on
the validation split (Optuna, ``benchmarks/tuning.py``).
"""

from __future__ import annotations

from cpfd.config import DistillConfig

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
    "hint": "none",
}
TUNED = "tuned"
WEIGHTINGS = ("true_class", "max_prob", "entropy", "correct")
PFD_REFERENCE = "pfd:targets=oof:folds=3:cal=on"


def parse_variant(name: str, base: DistillConfig | None = None) -> DistillConfig:
    """A variant name -> its DistillConfig (temperature, lambda and mode from ``base``)."""
    parts = [p for p in name.strip().split(":") if p != TUNED]
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
        "hint": "hint",
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
    hint = f":hint={cfg.hint}" if cfg.hint != "none" else ""
    if cfg.method == "pfd":
        return f"pfd:{targets}:{cal}{hint}"
    g = f":g={cfg.gamma:g}" if cfg.gamma != 1.0 else ""
    return f"cpfd:{cfg.weighting}:norm={cfg.normalize}:loss={cfg.loss}:{targets}:{cal}{g}{hint}"


def is_tuned(name: str) -> bool:
    return TUNED in name.strip().split(":")


def canonical_variant(name: str) -> str:
    return variant_name(parse_variant(name)) + (f":{TUNED}" if is_tuned(name) else "")


AXES = {
    "targets": ("teacher_outputs",),
    "cal": ("calibrate",),
    "folds": ("folds",),
    "loss form": ("loss", "normalize"),
    "hint": ("hint",),
}
PREFERRED = {"teacher_outputs": "oof", "calibrate": True, "loss": "decoupled", "normalize": "mean", "hint": "fused"}


def _one_axis(a: str, b: str, ca: DistillConfig, cb: DistillConfig) -> tuple[str, str] | None:
    """(first, second) when the two differ in exactly one axis or only in ``tuned``, else None."""
    same_kind = (ca.method, ca.weighting if ca.method == "cpfd" else None, ca.gamma) == (
        cb.method,
        cb.weighting if cb.method == "cpfd" else None,
        cb.gamma,
    )
    if not same_kind:
        return None
    differing = [name for name, axis in AXES.items() if any(getattr(ca, f) != getattr(cb, f) for f in axis)]
    if is_tuned(a) != is_tuned(b):
        return None if differing else ((a, b) if is_tuned(a) else (b, a))
    if len(differing) != 1 or (differing == ["folds"] and "insample" in (ca.teacher_outputs, cb.teacher_outputs)):
        return None
    axis = AXES[differing[0]]
    first_a = (ca.folds > cb.folds) if axis == ("folds",) else any(getattr(ca, f) == PREFERRED.get(f) for f in axis)
    return (a, b) if first_a else (b, a)


def contrasts(variants: list[str]) -> list[tuple[str, str]]:
    """Pairs of variants that differ along exactly one axis (teacher outputs, calibration, folds, loss form, hint) or
    only in ``tuned``: the oof / calibrated / decoupled / more-folds / fused-hint / tuned side first."""
    cfgs = {v: parse_variant(v) for v in variants}
    pairs = []
    for i, a in enumerate(variants):
        for b in variants[i + 1 :]:
            pair = _one_axis(a, b, cfgs[a], cfgs[b])
            if pair is not None:
                pairs.append(pair)
    return pairs
