"""Always-valid (anytime-valid) inference for online experiments, in numpy: confidence sequences that may be
looked at after every window without inflating the error rate.

The boundary is the two-sided normal mixture of Howard, Ramdas, McAuliffe and Sekhon (2021), "Time-uniform,
nonparametric, nonasymptotic confidence sequences", Ann. Statist. 49(2), section 3.2 / eq. (14): for a sum
``S_t`` of mean-zero increments with variance process ``V_t``, the mixture martingale
``M_t = sqrt(eta / (V_t + eta)) * exp(S_t**2 / (2 (V_t + eta)))`` and Ville's inequality give

    P(exists t: |S_t| >= sqrt((V_t + eta) * log((V_t + eta) / (eta * alpha**2)))) <= alpha.

With ``V_t = t * sigma_hat_t**2`` (the variance estimated from the data) the sequence is asymptotically valid
(Waudby-Smith, Arbour, Sinha, Kennedy and Ramdas, "Time-uniform central limit theory and asymptotic confidence
sequences", Ann. Statist. 2024, Theorem 2.2), and the same holds for any asymptotically linear estimator through
its influence function (their section 3). Macro-F1 is a smooth function of the confusion-cell proportions, so
its plug-in estimate is asymptotically linear with the delta-method influence function of ``macro_f1_influence``.
The derivation, with every assumption, is in docs/experiments.md.
"""

from __future__ import annotations

import math

import numpy as np

from cpfd.evaluate import macro_prf

# c minimising (1 + c) log((1 + c) / (c alpha^2)): eta = c * V_design gives the narrowest radius at V_design
_C_GRID = np.exp(np.linspace(np.log(1e-4), np.log(10.0), 4000))


def design_eta(v_design: float, alpha: float) -> float:
    """The mixture parameter that makes the sequence narrowest at intrinsic time ``v_design`` (fixed at the
    experiment's start: choosing it from the data seen breaks the guarantee)."""
    width = (1 + _C_GRID) * np.log((1 + _C_GRID) / (_C_GRID * alpha**2))
    return float(_C_GRID[int(np.argmin(width))] * max(v_design, 1e-12))


def radius(v: float | np.ndarray, eta: float, alpha: float) -> float | np.ndarray:
    """Two-sided normal-mixture boundary on the sum ``S_t`` at intrinsic time ``v = V_t``."""
    v = np.asarray(v, dtype=float)
    out = np.sqrt((v + eta) * np.log((v + eta) / (eta * alpha**2)))
    return float(out) if out.ndim == 0 else out


def _radius(v: float, eta: float, alpha: float) -> float:
    return float(radius(v, eta, alpha))


def macro_f1_influence(cm: np.ndarray) -> tuple[float, float]:
    """Macro-F1 of a confusion matrix (rows: true class, columns: predicted) and the variance of one
    observation's influence on it: ``sigma**2 = sum_ij p_ij g_ij**2`` with ``g = dF/dp`` (the delta method over
    the multinomial cell proportions; F is scale-free in p, so sum_ij p_ij g_ij = 0 and g is already centred).

    Per present class k (absent from both labels and predictions: left out, as ``cpfd.evaluate.macro_prf``
    does), ``F1_k = 2 p_kk / s_k`` with ``s_k = r_k + c_k`` (row plus column mass), so
    ``dF1_k/dp_ij = 2 [i=j=k] / s_k - 2 p_kk ([i=k] + [j=k]) / s_k**2``, averaged over the present classes."""
    cm = np.asarray(cm, dtype=float)
    n = cm.sum()
    if n <= 0:
        return 0.0, 0.0
    p = cm / n
    r, c, d = p.sum(1), p.sum(0), np.diag(p)
    s = r + c
    present = s > 0
    m = max(int(present.sum()), 1)
    g = np.zeros_like(p)
    for k in np.flatnonzero(present):
        g[k, k] += 2.0 / s[k]
        g[k, :] -= 2.0 * d[k] / s[k] ** 2
        g[:, k] -= 2.0 * d[k] / s[k] ** 2
    g /= m
    return float(macro_prf(cm)["f1"]), float((p * g**2).sum())


def accuracy_influence(cm: np.ndarray) -> tuple[float, float]:
    """Per-example accuracy and its per-observation variance (a Bernoulli mean: exact, no delta method)."""
    cm = np.asarray(cm, dtype=float)
    n = cm.sum()
    acc = float(np.trace(cm) / n) if n else 0.0
    return acc, acc * (1 - acc)


def two_arm_cs(
    est_t: float, var_t: float, n_t: int, est_c: float, var_c: float, n_c: int, eta: float, alpha: float
) -> dict:
    """A confidence sequence for treatment minus control.

    Every labelled unit is one observation of the inverse-propensity pseudo-outcome
    ``phi = A psi_T / pi - (1 - A) psi_C / (1 - pi)`` (A: the unit went to the treatment, pi its share), whose
    mean over t units is the estimator's linear part; its variance is ``var_t / pi + var_c / (1 - pi)``. With the
    realised share ``pi = n_t / t``, ``V_t / t**2 = var_t / n_t + var_c / n_c``, the usual standard error."""
    t = n_t + n_c
    if n_t <= 0 or n_c <= 0:
        return {"diff": float("nan"), "low": -math.inf, "high": math.inf, "v": 0.0, "se": math.inf}
    pi = n_t / t
    v = t * (var_t / pi + var_c / (1 - pi))
    r = _radius(v, eta, alpha) / t
    diff = est_t - est_c
    return {"diff": diff, "low": diff - r, "high": diff + r, "v": v, "se": math.sqrt(v) / t}


def quantile_bounds(values: np.ndarray, q: float, eta: float, alpha: float) -> tuple[float, float]:
    """A time-uniform two-sided confidence interval for the ``q``-quantile: the indicators 1{X_i <= x_q} are
    Bernoulli(q), so the normal-mixture sequence on their sum brackets the rank of x_q (Howard and Ramdas,
    "Sequential estimation of quantiles with applications to A/B-testing and best-arm identification",
    Bernoulli 2022, section 2). ``-inf`` / ``inf`` where the rank falls outside the sample."""
    x = np.sort(np.asarray(values, dtype=float))
    t = len(x)
    if not t:
        return -math.inf, math.inf
    b = _radius(t * q * (1 - q), eta, alpha)
    lo_rank, hi_rank = math.floor(t * q - b), math.ceil(t * q + b)
    low = float(x[lo_rank - 1]) if lo_rank >= 1 else -math.inf
    high = float(x[hi_rank - 1]) if hi_rank <= t else math.inf
    return low, high


def srm_test(observed: dict[str, int], shares: dict[str, float]) -> dict:
    """Pearson's chi-square test of the observed units per arm against the configured shares. An arm with a
    zero share that received units is a mismatch outright (p = 0)."""
    from scipy.stats import chi2

    arms = list(shares)
    obs = np.array([observed.get(a, 0) for a in arms], dtype=float)
    extra = {a: n for a, n in observed.items() if a not in shares and n}
    total = obs.sum() + sum(extra.values())
    exp = np.array([shares[a] for a in arms], dtype=float) * total
    if extra or np.any((exp == 0) & (obs > 0)):
        return {
            "statistic": math.inf,
            "pvalue": 0.0,
            "observed": {**dict(zip(arms, obs.astype(int).tolist(), strict=True)), **extra},
        }
    keep = exp > 0
    stat = float(((obs[keep] - exp[keep]) ** 2 / exp[keep]).sum()) if total else 0.0
    dof = max(int(keep.sum()) - 1, 1)
    return {
        "statistic": stat,
        "pvalue": float(chi2.sf(stat, dof)) if total else 1.0,
        "observed": dict(zip(arms, obs.astype(int).tolist(), strict=True)),
        "expected": dict(zip(arms, exp.round(1).tolist(), strict=True)),
    }


def plan_sample_size(
    var_t: float, var_c: float, min_effect: float, alpha: float, power: float = 0.8, share_t: float = 0.5
) -> dict:
    """Labelled units (both arms together) at which a true difference ``min_effect`` is called with probability
    about ``power`` by the confidence sequence designed for that size: the smallest t with
    ``min_effect - z_power * se(t) >= radius(t) / t`` (the final look alone; earlier looks only add power).
    ``inflation`` is the radius over the fixed-horizon half-width z_{1-alpha/2} * se at that size."""
    from scipy.stats import norm

    if min_effect <= 0:
        raise ValueError("min_effect must be positive")
    unit_var = var_t / share_t + var_c / (1 - share_t)
    z_power = float(norm.ppf(power))

    def margin(t: float) -> float:
        v = t * unit_var
        return min_effect - z_power * math.sqrt(unit_var / t) - _radius(v, design_eta(v, alpha), alpha) / t

    lo, hi = 2.0, 2.0
    while margin(hi) < 0:
        hi *= 2
        if hi > 1e12:
            raise ValueError("no sample size reaches that power")
    while hi - lo > 1:
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if margin(mid) >= 0 else (mid, hi)
    t = math.ceil(hi)
    v = t * unit_var
    se = math.sqrt(unit_var / t)
    fixed = float(norm.ppf(1 - alpha / 2)) * se
    return {
        "total": t,
        "treatment": math.ceil(t * share_t),
        "control": math.ceil(t * (1 - share_t)),
        "unit_variance": unit_var,
        "radius": _radius(v, design_eta(v, alpha), alpha) / t,
        "fixed_horizon_half_width": fixed,
        "inflation": _radius(v, design_eta(v, alpha), alpha) / t / fixed,
    }
