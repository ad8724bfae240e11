"""Data-parallel training under ``torchrun``: the process group from its environment, each rank's share of a
global batch, validation and RNG state across ranks, rank-0 writes.

Without torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) nothing here changes a run.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from cpfd.data.loader import Split
from cpfd.evaluate import confusion_matrix, macro_prf, predict_logits
from cpfd.models import VideoClassifier

TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class World:
    """This process's place in the process group and the device its collectives use."""

    rank: int
    size: int
    device: torch.device


def is_main() -> bool:
    """True on the process that writes files and prints: rank 0 (also before the process group exists), or the only
    process."""
    return (dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", "0"))) == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def world_from_torchrun(device: torch.device, backend: str) -> World | None:
    """The process group from torchrun's environment (initialised once per process), or None without it.

    ``backend`` ``auto`` is nccl on CUDA and gloo on CPU; on CUDA each process takes GPU ``LOCAL_RANK``.
    """
    if not all(k in os.environ for k in TORCHRUN_ENV):
        return None
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend if backend != "auto" else "nccl" if device.type == "cuda" else "gloo")
        atexit.register(dist.destroy_process_group)
    return World(dist.get_rank(), dist.get_world_size(), device)


def mean_over_ranks(value: float, world: World) -> float:
    t = torch.tensor([value], dtype=torch.float64, device=world.device)
    dist.all_reduce(t)
    return float(t.item()) / world.size


def val_macro_f1(
    model: VideoClassifier, split: Split, label_names: list[str], world: World, workers: int | None = None
) -> float:
    """Macro-F1 on ``split``, each rank predicting a contiguous share; the summed confusion matrix gives every rank
    the same value (so the same early-stopping decision)."""
    part = split.subset(torch.arange(len(split)).tensor_split(world.size)[world.rank])
    preds = predict_logits(model, part, workers=workers).argmax(-1).numpy()
    cm = torch.from_numpy(confusion_matrix(part.labels.numpy(), preds, len(label_names))).to(world.device)
    dist.all_reduce(cm)
    return float(macro_prf(cm.cpu().numpy())["f1"])


def gather_rng(world: World) -> dict[str, torch.Tensor]:
    """Every rank's RNG state (dropout differs per rank) for rank 0's checkpoint: ``rng.torch`` is rank 0's,
    ``rng.torch.<r>`` rank r's (the same for ``rng.cuda``). A collective: every rank calls it."""
    mine = {"rng.torch": torch.get_rng_state()}
    if world.device.type == "cuda":
        mine["rng.cuda"] = torch.cuda.get_rng_state(world.device)
    out = {}
    for key, state in mine.items():
        parts = [torch.empty_like(state, device=world.device) for _ in range(world.size)]
        dist.all_gather(parts, state.to(world.device))
        for r, part in enumerate(parts):
            out[key if r == 0 else f"{key}.{r}"] = part.cpu()
    return out
