"""Losses and example weights: cross-entropy, PFD and CPFD (confidence-weighted distillation).

With student logits s, teacher logits t (temperature-scaled on validation when
``calibrate``), label y, distillation temperature T and KD(s, t) = T^2 KL(softmax(t/T) || softmax(s/T)):

    coupled:    L = mean_i[ (1 - lam*w_i) * CE(y_i, s_i) + lam * w_i * KD(s_i, t_i) ]
    decoupled:  L = mean_i[ (1 - lam)     * CE(y_i, s_i) + lam * w_i * KD(s_i, t_i) ]

(in the coupled form lam*w_i is capped at 1 so that no CE weight turns negative).

PFD: w_i = 1, where both forms agree. CPFD: w_i = c_i**gamma with c_i from the weighting
(``distill.weighting``), in [0, 1], detached: ``true_class`` p_T(y_i), ``max_prob`` max_k p_T(k), ``entropy``
1 - H(p_T)/log K, ``correct`` 1[argmax p_T = y_i]. Normalisation over the scenario's training
split: ``mean`` w / mean(w) (CPFD distils as much in total as PFD, only elsewhere),
``mean_clip`` min(1, w / mean(w)), ``none``.

Unlabelled pool videos (label -1, ``distill.pool_weight`` > 0) have no CE term: their loss is lam * w_i * KD(s_i, t_i),
in both forms, with t_i the full teacher's calibrated logits and w_i from ``pool_weights`` (the weighting with the
teacher's own argmax as the label, normalised over the pool, times ``pool_weight``).

Hint (``distill.hint: fused``, FitNets): beta * mean_i[ w_i * mean_j (P h_s,i - z_t,i)_j^2 ] is added, with h_s the
student's fused representation, P a linear map trained with it, z_t the teacher's fused representation standardised
per dimension over the training split, and the same w_i as the KD term (docs/decision.md).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from cpfd.config import DistillConfig


def raw_weights(teacher_logits: torch.Tensor, labels: torch.Tensor, kind: str) -> torch.Tensor:
    """c_i of the weighting ``kind`` per example, in [0, 1], from the teacher's probabilities at T = 1."""
    p = teacher_logits.detach().float().softmax(dim=-1)
    if kind == "true_class":
        return p.gather(1, labels.view(-1, 1)).squeeze(1)
    if kind == "max_prob":
        return p.max(dim=-1).values
    if kind == "entropy":
        k = p.shape[-1]
        h = -(p * p.clamp_min(1e-12).log()).sum(-1)
        return (1.0 - h / math.log(k)).clamp(0.0, 1.0)
    if kind == "correct":
        return (p.argmax(dim=-1) == labels).float()
    raise ValueError(f"unknown weighting {kind!r}")


def normalize_weights(w: torch.Tensor, how: str) -> torch.Tensor:
    if how == "none":
        return w
    w = w / w.mean().clamp_min(1e-6)
    return w.clamp(max=1.0) if how == "mean_clip" else w


def example_weights(teacher_logits: torch.Tensor, labels: torch.Tensor, cfg: DistillConfig) -> torch.Tensor:
    """w_i for every example: 1 for PFD, normalised confidence**gamma for CPFD, 0 without distillation."""
    n = labels.shape[0]
    if cfg.method == "none":
        return torch.zeros(n)
    if cfg.method == "pfd":
        return torch.ones(n)
    w = raw_weights(teacher_logits, labels, cfg.weighting) ** cfg.gamma
    return normalize_weights(w, cfg.normalize)


def pool_weights(pool_logits: torch.Tensor, cfg: DistillConfig) -> torch.Tensor:
    """w_i of the unlabelled pool videos: ``pool_weight`` for PFD; for CPFD ``pool_weight`` times the normalised
    confidence**gamma, with the teacher's own argmax as the label where the weighting reads one (``true_class``
    becomes ``max_prob``, ``correct`` is 1), normalised over the pool alone."""
    n = pool_logits.shape[0]
    if cfg.method == "pfd":
        return torch.full((n,), cfg.pool_weight)
    own = pool_logits.detach().float().argmax(dim=-1)
    w = raw_weights(pool_logits, own, cfg.weighting) ** cfg.gamma
    return cfg.pool_weight * normalize_weights(w, cfg.normalize)


def kl_to_teacher(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(softmax(t/T) || softmax(s/T)) per example; no gradient reaches the teacher."""
    t = teacher_logits.detach().float() / temperature
    log_p_t = t.log_softmax(dim=-1)
    log_p_s = (student_logits.float() / temperature).log_softmax(dim=-1)
    return (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1) * temperature**2


def distillation_loss(
    student_logits: torch.Tensor,
    labels: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    weights: torch.Tensor | None,
    lam: float,
    temperature: float,
    form: str = "coupled",
) -> torch.Tensor:
    labelled = labels >= 0  # an unlabelled pool video (label -1) has no CE term, only its distillation term
    ce = F.cross_entropy(student_logits.float(), labels.clamp_min(0), reduction="none") * labelled
    if teacher_logits is None or weights is None or lam == 0:
        return ce.mean()
    kd = kl_to_teacher(student_logits, teacher_logits, temperature)
    w = weights.detach().to(ce.dtype)
    if form == "decoupled":
        return ((1 - lam) * ce + lam * w * kd).mean()
    if form != "coupled":
        raise ValueError(f"unknown loss form {form!r}")
    lw = torch.where(labelled, (lam * w).clamp(max=1.0), lam * w)
    return ((1 - lw) * ce + lw * kd).mean()


def standardize(h: torch.Tensor) -> torch.Tensor:
    """Per-dimension z-scores over the rows (a constant dimension stays 0)."""
    h = h.float()
    return (h - h.mean(0)) / h.std(0).clamp_min(1e-6)


def hint_loss(projected: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """mean_i[ w_i * mean_j (projected - target)_ij^2 ]: the weighted FitNets hint; no gradient reaches the target."""
    per_example = (projected.float() - target.detach().float()).pow(2).mean(-1)
    return (weights.detach().to(per_example.dtype) * per_example).mean()
