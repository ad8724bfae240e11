"""Checkpoints: tensors (models, optimizer state, RNG) in safetensors, the rest in JSON; written atomically."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TypedDict

import torch
from torch import nn


class TrainState(TypedDict):
    """The training loop's progress, saved as JSON beside the tensors after every epoch."""

    epoch: int
    global_step: int
    best_val_f1: float
    best_epoch: int
    bad_epochs: int
    done: bool
    history: list[dict[str, float]]
    train_seconds: float
    batch: int  # batches of the current epoch already trained (a checkpoint inside an epoch)
    running: float  # their summed loss


def atomic_save_tensors(tensors: Mapping[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    tmp = path.with_suffix(".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp)
    os.replace(tmp, path)


def models_state(models: Mapping[str, nn.Module]) -> dict[str, torch.Tensor]:
    return {f"model.{name}.{k}": v for name, m in models.items() for k, v in m.state_dict().items()}


def load_models_state(models: Mapping[str, nn.Module], tensors: Mapping[str, torch.Tensor]) -> None:
    for name, m in models.items():
        prefix = f"model.{name}."
        m.load_state_dict({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)})


def rng_state() -> dict[str, torch.Tensor]:
    """This process's RNG state, as a checkpoint stores it."""
    out = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        out["rng.cuda"] = torch.cuda.get_rng_state()
    return out


def save_checkpoint(
    ckpt_dir: Path,
    models: Mapping[str, nn.Module],
    optimizer: torch.optim.Optimizer,
    state: TrainState,
    rng: Mapping[str, torch.Tensor],
) -> None:
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    opt = optimizer.state_dict()
    tensors = models_state(models)
    scalars: dict[str, dict] = {}
    for pid, pstate in opt["state"].items():
        for key, value in pstate.items():
            if torch.is_tensor(value):
                tensors[f"optim.{pid}.{key}"] = value
            else:
                scalars.setdefault(str(pid), {})[key] = value
    tensors.update(rng)
    atomic_save_tensors(tensors, ckpt_dir / "state.safetensors")
    meta = {**state, "optimizer_param_groups": opt["param_groups"], "optimizer_scalars": scalars}
    tmp = ckpt_dir / "state.json.tmp"
    tmp.write_text(json.dumps(meta))
    os.replace(tmp, ckpt_dir / "state.json")


def load_checkpoint(
    ckpt_dir: Path, models: Mapping[str, nn.Module], optimizer: torch.optim.Optimizer, rank: int = 0
) -> TrainState:
    """Restore models, optimizer and the RNG state of process ``rank`` (rank 0's when the checkpoint has none for it,
    e.g. one written by a single process)."""
    from safetensors.torch import load_file

    meta = json.loads((ckpt_dir / "state.json").read_text())
    tensors = load_file(ckpt_dir / "state.safetensors")
    load_models_state(models, tensors)
    opt_state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, pid, key = k.split(".", 2)
            opt_state.setdefault(int(pid), {})[key] = v
    for pid, extra in meta.pop("optimizer_scalars").items():
        opt_state.setdefault(int(pid), {}).update(extra)
    optimizer.load_state_dict({"state": opt_state, "param_groups": meta.pop("optimizer_param_groups")})
    suffix = f".{rank}" if f"rng.torch.{rank}" in tensors else ""
    torch.set_rng_state(tensors["rng.torch" + suffix])
    if "rng.cuda" + suffix in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda" + suffix])
    meta.setdefault("batch", 0)  # a checkpoint written before checkpoints inside an epoch
    meta.setdefault("running", 0.0)
    return meta
