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
from cpfd.data.loader import TrainBatches, batch_loader, epoch_rows, training_order
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


@dataclass
class _Run:
    """One call of ``fit``: what every phase of the loop shares."""

    models: Mapping[str, torch.nn.Module]
    eval_key: str
    data: PreparedData
    cfg: TrainConfig
    ckpt_dir: Path
    desc: str
    progress: bool
    device: torch.device
    world: distributed.World | None
    optimizer: torch.optim.Optimizer
    params: list[torch.nn.Parameter]
    state: TrainState
    step_fn: torch.nn.Module | None = None

    @property
    def main(self) -> bool:
        return self.world is None or self.world.rank == 0

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(epoch_rows(self.data.splits["train"]) / self.cfg.batch_size)

    def checkpoint(self) -> None:
        rng = rng_state() if self.world is None else distributed.gather_rng(self.world)
        if self.main:
            save_checkpoint(self.ckpt_dir, self.models, self.optimizer, self.state, rng)
        distributed.barrier()

    def train_epoch(self, on_step_end: Callable[[int], None] | None) -> float:
        """One epoch's batches from the sampler's position; returns the summed batch losses."""
        from tqdm.auto import tqdm

        cfg, state, train = self.cfg, self.state, self.data.splits["train"]
        epoch, start = state["epoch"], state["batch"]
        rank, size = (self.world.rank, self.world.size) if self.world is not None else (0, 1)
        order = training_order(train, cfg.seed, epoch, cfg.shuffle_window)
        loader = batch_loader(
            train, TrainBatches(order, cfg.batch_size, start, rank, size), cfg.loader_workers, self.device
        )
        total = cfg.epochs * self.steps_per_epoch
        running, t0 = state["running"], time.perf_counter()
        bar = tqdm(
            loader,
            desc=f"{self.desc} epoch {epoch + 1}/{cfg.epochs}",
            initial=start,
            total=self.steps_per_epoch,
            leave=False,
            disable=not (self.progress and self.main),
        )
        assert self.step_fn is not None
        for b, batch in enumerate(bar, start=start):
            scale = batch.pop("loss_scale")
            batch = {k: v if k == "index" else v.to(self.device, non_blocking=True) for k, v in batch.items()}
            for g in self.optimizer.param_groups:
                g["lr"] = _lr_at(state["global_step"], total, cfg.lr)
            with autocast(self.device):
                loss = self.step_fn(batch, state["global_step"]) * scale
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.params, 1.0)
            self.optimizer.step()
            state["global_step"] += 1
            running += loss.item()
            bar.set_postfix(loss=f"{running / (b + 1):.4f}")
            every = cfg.checkpoint_every_steps
            if every and state["global_step"] % every == 0 and b + 1 < self.steps_per_epoch:
                state["batch"], state["running"] = b + 1, running
                state["train_seconds"] += time.perf_counter() - t0
                t0 = time.perf_counter()
                self.checkpoint()
                if on_step_end is not None:
                    on_step_end(state["global_step"])
        state["batch"], state["running"] = 0, 0.0
        state["train_seconds"] += time.perf_counter() - t0
        return running

    def end_epoch(self, running: float) -> None:
        """Validation macro-F1, early stopping, the best weights and the epoch's checkpoint."""
        state, cfg, val = self.state, self.cfg, self.data.splits["val"]
        evaluated = cast(VideoClassifier, self.models[self.eval_key])
        if self.world is None:
            val_f1 = model_macro_f1(evaluated, val, self.data.label_names, cfg.loader_workers)
        else:
            running = distributed.mean_over_ranks(running, self.world)
            val_f1 = distributed.val_macro_f1(evaluated, val, self.data.label_names, self.world, cfg.loader_workers)
        epoch = state["epoch"]
        loss = running / self.steps_per_epoch
        state["history"].append({"epoch": epoch + 1, "train_loss": loss, "val_macro_f1": val_f1})
        better = val_f1 > state["best_val_f1"]
        if better:
            state["best_val_f1"], state["best_epoch"], state["bad_epochs"] = val_f1, epoch + 1, 0
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch + 1
        state["done"] = state["bad_epochs"] >= cfg.patience
        if self.main and better:
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
            atomic_save_tensors(models_state(self.models), self.ckpt_dir / "best.safetensors")
        self.checkpoint()
        if self.progress and self.main:
            log.info("%s epoch %d: loss %.4f, val macro-F1 %.4f", self.desc, epoch + 1, loss, val_f1)


def _new_state() -> TrainState:
    return {
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


def _start(
    models: Mapping[str, torch.nn.Module], eval_key: str, data: PreparedData, cfg: TrainConfig, out_dir, desc, progress
) -> _Run:
    """Device, process group, optimizer and a fresh state (the caller may resume it)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    world = distributed.world_from_torchrun(device, cfg.dist_backend)
    if world is not None:
        device = world.device
    for m in models.values():
        m.to(device).train()
    params = [p for m in models.values() for p in m.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    ckpt_dir = Path(out_dir) / "checkpoint"
    return _Run(models, eval_key, data, cfg, ckpt_dir, desc, progress, device, world, optimizer, params, _new_state())


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
    run = _start(models, eval_key, data, cfg, out_dir, desc, progress)
    rank = run.world.rank if run.world else 0
    if resume and (run.ckpt_dir / "state.json").exists():
        run.state = load_checkpoint(run.ckpt_dir, models, run.optimizer, rank)
        if run.main:
            log.info("%s: resumed after epoch %d", desc, run.state["epoch"])
    else:
        torch.manual_seed(cfg.seed + rank)  # dropout differs per rank
    run.step_fn = _Objective(models, loss_fn)
    if run.world is not None:
        run.step_fn = torch.nn.parallel.DistributedDataParallel(run.step_fn, forward_sync_buffers=False)
    state = run.state
    while not state["done"] and state["epoch"] < cfg.epochs:
        run.end_epoch(run.train_epoch(on_step_end))
        if on_epoch_end is not None:
            on_epoch_end(state["epoch"])

    from safetensors.torch import load_file

    load_models_state(models, load_file(run.ckpt_dir / "best.safetensors"))
    for m in models.values():
        m.eval()
    seen = state["global_step"] * cfg.batch_size
    n = epoch_rows(data.splits["train"])
    return FitResult(
        best_epoch=state["best_epoch"],
        best_val_f1=state["best_val_f1"],
        epochs_run=state["epoch"],
        stopped_early=state["done"] and state["epoch"] < cfg.epochs,
        train_examples_per_s=min(seen, state["epoch"] * n) / max(state["train_seconds"], 1e-9),
        history=state["history"],
    )
