"""The statistics, in numpy: PSI, KS, macro precision/recall/F1 from confusion counts, and a
bootstrap of the F1 difference between two arms (multinomial resampling of confusion cells)."""

from __future__ import annotations

import numpy as np

from cpfd.evaluate import macro_prf

EPS = 1e-4


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """Population stability index of ``current`` against quantile bins of ``reference``."""
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    ref = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=len(edges) + 1)
    cur = np.bincount(np.searchsorted(edges, current, side="right"), minlength=len(edges) + 1)
    return share_psi(ref / ref.sum(), cur / cur.sum())


def share_psi(ref_share: np.ndarray, cur_share: np.ndarray) -> float:
    r = np.clip(ref_share, EPS, None)
    c = np.clip(cur_share, EPS, None)
    return float(np.sum((c - r) * np.log(c / r)))


def class_shares(classes: np.ndarray, k: int) -> np.ndarray:
    counts = np.bincount(np.asarray(classes, dtype=np.int64), minlength=k).astype(float)
    return counts / max(counts.sum(), 1.0)


def ks(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic and p-value."""
    from scipy.stats import ks_2samp

    r = ks_2samp(reference, current)
    return float(r.statistic), float(r.pvalue)


def bootstrap_f1_diff(
    cm_treatment: np.ndarray, cm_control: np.ndarray, resamples: int, alpha: float, seed: int = 0
) -> dict:
    """Treatment minus control macro-F1 with a percentile bootstrap CI.

    Each arm is resampled independently: a resample of n predictions is a multinomial draw of n over
    the arm's confusion cells, so the cost is O(resamples * K^2), whatever the traffic.
    """
    rng = np.random.default_rng(seed)
    k = cm_treatment.shape[0]

    def draws(cm: np.ndarray) -> np.ndarray:
        n = int(cm.sum())
        return rng.multinomial(n, cm.ravel() / n, size=resamples).reshape(resamples, k, k)

    diff = macro_prf(draws(cm_treatment))["f1"] - macro_prf(draws(cm_control))["f1"]
    point = float(macro_prf(cm_treatment)["f1"] - macro_prf(cm_control)["f1"])
    low, high = np.quantile(diff, [alpha / 2, 1 - alpha / 2])
    return {"diff": point, "ci_low": float(low), "ci_high": float(high), "significant": bool(low > 0 or high < 0)}
