"""The loss of each training job, as a function of (models, batch, step)."""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F

from cpfd.config import DistillConfig
from cpfd.distill import distillation_loss, example_weights, hint_loss
from cpfd.models import VideoClassifier, forward_batch, fused_batch
from cpfd.training.loop import LossFn

HINT_KEY = "hint"  # the trained projection of the student's fused representation (dropped at export)


def ce_loss(key: str) -> LossFn:
    def loss(models, batch, step):
        return F.cross_entropy(forward_batch(models[key], batch).float(), batch["labels"])

    return loss


def cached_distill_loss(
    teacher_logits: torch.Tensor,
    weights: torch.Tensor,
    cfg: DistillConfig,
    hints: torch.Tensor | None = None,
    labelled_rows: int | None = None,
) -> LossFn:
    """Two-stage: teacher logits and weights were computed once over the training split (and the unlabelled pool
    after its ``labelled_rows`` rows); with ``hints`` (the teacher's standardised fused representation of every
    labelled row) the weighted hint term through ``models["hint"]`` too, over the labelled rows alone."""
    hint_weights = weights.clone()
    if labelled_rows is not None:
        hint_weights[labelled_rows:] = 0

    def loss(models, batch, step):
        idx = batch["index"]
        device = batch["labels"].device
        student = cast(VideoClassifier, models["student"])
        if hints is None:
            logits, hint = forward_batch(student, batch), None
        else:
            h = fused_batch(student, batch)
            logits = student.head(h)
            hint = hint_loss(models[HINT_KEY](h), hints[idx].to(device), hint_weights[idx].to(device))
        kd = distillation_loss(
            logits,
            batch["labels"],
            teacher_logits[idx].to(device),
            weights[idx].to(device),
            cfg.lam,
            cfg.temperature,
            cfg.loss,
        )
        return kd if hint is None else kd + cfg.hint_weight * hint

    return loss


def joint_loss(cfg: DistillConfig) -> LossFn:
    """Synchronous PFD: the teacher learns from CE only; its logits reach the student detached. The CPFD weights are
    normalised over the batch (under torchrun: over each rank's share of it)."""

    def loss(models, batch, step):
        t_logits = forward_batch(models["teacher"], batch).float()
        s_logits = forward_batch(models["student"], batch)
        teacher_ce = F.cross_entropy(t_logits, batch["labels"])
        lam = 0.0 if step < cfg.warmup_steps else cfg.lam
        w = example_weights(t_logits.detach(), batch["labels"], cfg).to(t_logits.device)
        return teacher_ce + distillation_loss(
            s_logits, batch["labels"], t_logits.detach(), w, lam, cfg.temperature, cfg.loss
        )

    return loss
