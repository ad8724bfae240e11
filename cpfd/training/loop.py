"""The training loop shared by every model: seeded, AdamW with warm-up and cosine decay, CUDA + bf16
autocast when there is a GPU, a checkpoint after every epoch and resume from it, early stopping on
validation macro-F1; DistributedDataParallel when launched by torchrun (``cpfd/training/distributed.py``)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import torch

from cpfd.config import TrainConfig
from cpfd.data.loader import TrainBatches, batch_loader, epoch_order
from cpfd.data.tensors import PreparedData
from cpfd.device import autocast, resolve_device
from cpfd.evaluate import model_macro_f1
from cpfd.models import VideoClassifier
from cpfd.training import distributed
from cpfd.training.checkpoint import (
    TrainState,
    atomic_save_tensors,
    load_checkpoint,
    load_models_state,
    models_state,
    rng_state,
    save_checkpoint,
)

log = logging.getLogger("cpfd.training")


# (models, batch, step) -> the mean over the batch's examples of their losses (the distributed loop rescales it)
LossFn = Callable[[Mapping[str, torch.nn.Module], dict[str, torch.Tensor], int], torch.Tensor]


@dataclass
class FitResult:
    best_epoch: int
    best_val_f1: float
    epochs_run: int
    stopped_early: bool
    train_examples_per_s: float
    history: list[dict[str, float]] = field(default_factory=list)


class _Objective(torch.nn.Module):
    """The trained models and their loss as one module: one DDP wrapper synchronises every model's gradients."""

    def __init__(self, models: Mapping[str, torch.nn.Module], loss_fn: LossFn):
        super().__init__()
        self.trained = torch.nn.ModuleDict(dict(models))
        self.models, self.loss_fn = dict(models), loss_fn

    def forward(self, batch: dict[str, torch.Tensor], step: int) -> torch.Tensor:
        return self.loss_fn(self.models, batch, step)


def _lr_at(step: int, total: int, base: float) -> float:
    warmup = max(1, int(0.05 * total))
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def fit(
    models: Mapping[str, torch.nn.Module],
    eval_key: str,
    loss_fn: LossFn,
    data: PreparedData,
    cfg: TrainConfig,
    out_dir: str | Path,
    desc: str,
    progress: bool = True,
    resume: bool = True,
    on_epoch_end: Callable[[int], None] | None = None,
    on_step_end: Callable[[int], None] | None = None,
) -> FitResult:
    """Train ``models`` jointly with ``loss_fn``; select by validation macro-F1 of ``models[eval_key]``.

    Batches come from ``cpfd.data.loader`` (in-memory or streamed splits alike): under torchrun every rank draws
    the same global batch of ``cfg.batch_size`` rows and reads only its share of them; rank 0 writes the checkpoints
    (after every epoch, and every ``cfg.checkpoint_every_steps`` steps with the sampler's position), and every rank
    ends with the same weights. ``on_epoch_end`` / ``on_step_end`` run after each checkpoint."""
    from tqdm.auto import tqdm

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    world = distributed.world_from_torchrun(device, cfg.dist_backend)
    if world is not None:
        device = world.device
    main = world is None or world.rank == 0
    for m in models.values():
        m.to(device).train()
    params = [p for m in models.values() for p in m.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    train = data.splits["train"]
    n = len(train)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    ckpt_dir = Path(out_dir) / "checkpoint"
    state: TrainState = {
        "epoch": 0,
        "global_step": 0,
        "best_val_f1": -1.0,
        "best_epoch": -1,
        "bad_epochs": 0,
        "done": False,
        "history": [],
        "train_seconds": 0.0,
        "batch": 0,
        "running": 0.0,
    }
    if resume and (ckpt_dir / "state.json").exists():
        state = load_checkpoint(ckpt_dir, models, optimizer, world.rank if world else 0)
        if main:
            log.info("%s: resumed after epoch %d", desc, state["epoch"])
    else:
        torch.manual_seed(cfg.seed + (world.rank if world else 0))  # dropout differs per rank
    step_fn: torch.nn.Module = _Objective(models, loss_fn)
    if world is not None:
        step_fn = torch.nn.parallel.DistributedDataParallel(step_fn, forward_sync_buffers=False)

    rank, size = (world.rank, world.size) if world is not None else (0, 1)
    while not state["done"] and state["epoch"] < cfg.epochs:
        epoch, start = state["epoch"], state["batch"]
        order = epoch_order(n, cfg.seed, epoch, cfg.shuffle_window, train.block_rows)
        loader = batch_loader(train, TrainBatches(order, cfg.batch_size, start, rank, size), cfg.loader_workers, device)
        running, t0 = state["running"], time.perf_counter()
        bar = tqdm(
            loader,
            desc=f"{desc} epoch {epoch + 1}/{cfg.epochs}",
            initial=start,
            total=steps_per_epoch,
            leave=False,
            disable=not (progress and main),
        )
        for b, batch in enumerate(bar, start=start):
            scale = batch.pop("loss_scale")
            batch = {k: v if k == "index" else v.to(device, non_blocking=True) for k, v in batch.items()}
            for g in optimizer.param_groups:
                g["lr"] = _lr_at(state["global_step"], total, cfg.lr)
            with autocast(device):
                loss = step_fn(batch, state["global_step"]) * scale
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            state["global_step"] += 1
            running += loss.item()
            bar.set_postfix(loss=f"{running / (b + 1):.4f}")
            every = cfg.checkpoint_every_steps
            if every and state["global_step"] % every == 0 and b + 1 < steps_per_epoch:
                state["batch"], state["running"] = b + 1, running
                state["train_seconds"] += time.perf_counter() - t0
                t0 = time.perf_counter()
                rng = rng_state() if world is None else distributed.gather_rng(world)
                if main:
                    save_checkpoint(ckpt_dir, models, optimizer, state, rng)
                distributed.barrier()
                if on_step_end is not None:
                    on_step_end(state["global_step"])
        state["batch"], state["running"] = 0, 0.0
        state["train_seconds"] += time.perf_counter() - t0
        evaluated = cast(VideoClassifier, models[eval_key])
        if world is None:
            val_f1 = model_macro_f1(evaluated, data.splits["val"], data.label_names, cfg.loader_workers)
        else:
            running = distributed.mean_over_ranks(running, world)
            val = data.splits["val"]
            val_f1 = distributed.val_macro_f1(evaluated, val, data.label_names, world, cfg.loader_workers)
        state["history"].append({"epoch": epoch + 1, "train_loss": running / steps_per_epoch, "val_macro_f1": val_f1})
        better = val_f1 > state["best_val_f1"]
        if better:
            state["best_val_f1"], state["best_epoch"], state["bad_epochs"] = val_f1, epoch + 1, 0
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch + 1
        state["done"] = state["bad_epochs"] >= cfg.patience
        rng = rng_state() if world is None else distributed.gather_rng(world)
        if main:
            if better:
                ckpt_dir.mkdir(parents=True, exist_ok=True)
                atomic_save_tensors(models_state(models), ckpt_dir / "best.safetensors")
            save_checkpoint(ckpt_dir, models, optimizer, state, rng)
        distributed.barrier()
        if progress and main:
            log.info("%s epoch %d: loss %.4f, val macro-F1 %.4f", desc, epoch + 1, running / steps_per_epoch, val_f1)
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1)

    from safetensors.torch import load_file

    load_models_state(models, load_file(ckpt_dir / "best.safetensors"))
    for m in models.values():
        m.eval()
    seen = state["global_step"] * cfg.batch_size
    return FitResult(
        best_epoch=state["best_epoch"],
        best_val_f1=state["best_val_f1"],
        epochs_run=state["epoch"],
        stopped_early=state["done"] and state["epoch"] < cfg.epochs,
        train_examples_per_s=min(seen, state["epoch"] * n) / max(state["train_seconds"], 1e-9),
        history=state["history"],
    )
