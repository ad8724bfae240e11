"""Losses: cross-entropy, PFD and CPFD (confidence-weighted privileged feature distillation).

    L = mean_i[(1 - lam*w_i) * CE(y_i, s_i) + lam * w_i * T^2 * KL(softmax(t_i/T) || softmax(s_i/T))]

PFD: w_i = 1. CPFD: w_i = c_i**gamma, with c_i the teacher's confidence (detached, in [0, 1]),
optionally divided by the scenario's mean confidence (then clipped to 1).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from cpfd.config import DistillConfig


def teacher_confidence(teacher_logits: torch.Tensor, labels: torch.Tensor, kind: str) -> torch.Tensor:
    """The teacher's confidence per example, in [0, 1], from its probabilities at T = 1."""
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
    raise ValueError(f"unknown confidence kind {kind!r}")


def example_weights(teacher_logits: torch.Tensor, labels: torch.Tensor, cfg: DistillConfig) -> torch.Tensor:
    """w_i for every example: 1 for PFD, confidence**gamma (optionally normalised) for CPFD, 0 without distillation."""
    n = labels.shape[0]
    if cfg.method == "none":
        return torch.zeros(n)
    if cfg.method == "pfd":
        return torch.ones(n)
    w = teacher_confidence(teacher_logits, labels, cfg.confidence) ** cfg.gamma
    if cfg.normalize_per_scenario:
        w = (w / w.mean().clamp_min(1e-6)).clamp(max=1.0)
    return w


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
) -> torch.Tensor:
    ce = F.cross_entropy(student_logits.float(), labels, reduction="none")
    if teacher_logits is None or weights is None or lam == 0:
        return ce.mean()
    w = lam * weights.detach().to(ce.dtype)
    return ((1 - w) * ce + w * kl_to_teacher(student_logits, teacher_logits, temperature)).mean()
