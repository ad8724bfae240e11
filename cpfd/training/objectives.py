"""The loss of each training job, as a function of (models, batch, step)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cpfd.config import DistillConfig
from cpfd.distill import distillation_loss, example_weights
from cpfd.models import forward_batch
from cpfd.training.loop import LossFn


def ce_loss(key: str) -> LossFn:
    def loss(models, batch, step):
        return F.cross_entropy(forward_batch(models[key], batch).float(), batch["labels"])

    return loss


def cached_distill_loss(teacher_logits: torch.Tensor, weights: torch.Tensor, cfg: DistillConfig) -> LossFn:
    """Two-stage: teacher logits and weights were computed once over the training split."""

    def loss(models, batch, step):
        idx = batch["index"]
        device = batch["labels"].device
        return distillation_loss(
            forward_batch(models["student"], batch),
            batch["labels"],
            teacher_logits[idx].to(device),
            weights[idx].to(device),
            cfg.lam,
            cfg.temperature,
            cfg.loss,
        )

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
