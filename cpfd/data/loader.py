"""Which rows go into which batch, and the ``DataLoader`` that fetches them, for in-memory and streamed splits alike.

Every epoch has one global order of the training rows, drawn from ``(seed, epoch)`` alone: a full permutation when
the split has at most ``window`` rows, otherwise a shuffle of blocks of ``block_rows`` consecutive rows (the
stream's shards) followed by a permutation inside each window of ``window // block_rows`` blocks, so a reader only
touches a window's shards at a time. Global batch ``b`` is rows ``b * batch_size ...`` of that order whatever the
number of processes; under torchrun each rank fetches only its contiguous share (``local_rows``).
A sampler that starts at batch ``b`` replays the same epoch from there (resume after a kill).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class Split(Protocol):
    """What the loop and the evaluation need of a split (``SplitTensors`` in memory, ``StreamedSplit`` streamed)."""

    labels: torch.Tensor
    video_ids: torch.Tensor

    def __len__(self) -> int: ...

    @property
    def streamed(self) -> bool: ...

    @property
    def block_rows(self) -> int: ...

    @property
    def frame_shape(self) -> tuple[int, int]: ...

    def dense_matrix(self) -> torch.Tensor: ...

    def subset(self, idx: torch.Tensor) -> Split: ...

    def batch(self, idx: torch.Tensor, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]: ...


def epoch_order(n: int, seed: int, epoch: int, window: int, block_rows: int) -> torch.Tensor:
    """The epoch's order of rows 0..n-1 (module docstring)."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    if n <= window:
        return torch.randperm(n, generator=g)
    blocks = math.ceil(n / block_rows)
    order = torch.randperm(blocks, generator=g)
    per_window = max(1, window // block_rows)
    pieces = []
    for start in range(0, blocks, per_window):
        rows = torch.cat(
            [torch.arange(b * block_rows, min((b + 1) * block_rows, n)) for b in order[start : start + per_window]]
        )
        pieces.append(rows[torch.randperm(len(rows), generator=g)])
    return torch.cat(pieces)


class PooledSplit:
    """The labelled training split followed by the unlabelled pool, for distillation: rows ``0..n-1`` are the labelled
    rows, ``n..`` the pool's (label -1). An epoch holds every labelled row and ``pool_per_epoch`` pool rows, the next
    slice of one fixed, block-shuffled order of the pool (so the draw cycles through the whole pool and a streamed
    reader touches a window of its shards at a time), riffled into the labelled order at random positions so every
    batch carries about the epoch's share of pool rows."""

    def __init__(self, train: Split, pool: Split, pool_per_epoch: int):
        self.train, self.pool = train, pool
        self.pool_per_epoch = min(len(pool), pool_per_epoch)
        self.labels = torch.cat([train.labels, torch.full((len(pool),), -1, dtype=torch.int64)])
        self.video_ids = torch.cat([train.video_ids, pool.video_ids])

    def __len__(self) -> int:
        return len(self.train) + len(self.pool)

    @property
    def epoch_rows(self) -> int:
        return len(self.train) + self.pool_per_epoch

    @property
    def streamed(self) -> bool:
        return self.train.streamed or self.pool.streamed

    @property
    def block_rows(self) -> int:
        return self.train.block_rows

    @property
    def frame_shape(self) -> tuple[int, int]:
        return self.train.frame_shape

    def dense_matrix(self) -> torch.Tensor:
        return torch.cat([self.train.dense_matrix(), self.pool.dense_matrix()])

    def subset(self, idx: torch.Tensor) -> Split:
        raise NotImplementedError("a pooled split is only read batch by batch")

    def epoch_order(self, seed: int, epoch: int, window: int) -> torch.Tensor:
        n, m = len(self.train), self.pool_per_epoch
        labelled = epoch_order(n, seed, epoch, window, self.train.block_rows)
        if m == 0:
            return labelled
        fixed = epoch_order(len(self.pool), seed + 7919, 0, window, self.pool.block_rows)
        start = (epoch * m) % len(self.pool)
        drawn = torch.cat([fixed, fixed])[start : start + m] + n
        g = torch.Generator().manual_seed(seed * 100_003 + epoch + 1)
        is_pool = torch.zeros(n + m, dtype=torch.bool)
        is_pool[torch.randperm(n + m, generator=g)[:m]] = True
        order = torch.empty(n + m, dtype=torch.int64)
        order[is_pool], order[~is_pool] = drawn, labelled
        return order

    def batch(self, idx: torch.Tensor, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        """The batch's labelled rows, then its pool rows; ``index`` says which row each is."""
        n = len(self.train)
        labelled, pooled = idx[idx < n], idx[idx >= n]
        parts = [(s, rows) for s, rows in ((self.train, labelled), (self.pool, pooled - n)) if len(rows)]
        got = [s.batch(rows, device) for s, rows in parts]
        out = {k: torch.cat([b[k] for b in got]) for k in got[0] if k not in ("index", "labels")}
        out["index"] = torch.cat([labelled, pooled])
        out["labels"] = self.labels[out["index"]].to(device)
        return out


def training_order(split: Split, seed: int, epoch: int, window: int) -> torch.Tensor:
    """The epoch's order of ``split``'s rows (a pooled split draws its pool share, ``PooledSplit``)."""
    if isinstance(split, PooledSplit):
        return split.epoch_order(seed, epoch, window)
    return epoch_order(len(split), seed, epoch, window, split.block_rows)


def epoch_rows(split: Split) -> int:
    """How many rows an epoch of ``split`` holds."""
    return split.epoch_rows if isinstance(split, PooledSplit) else len(split)


@dataclass(frozen=True)
class BatchRequest:
    """This process's rows of one batch (positions in the split) and the factor on its mean loss."""

    rows: torch.Tensor
    loss_scale: float = 1.0


class TrainBatches(Sampler[BatchRequest]):
    """The batches of one training epoch from batch ``start`` on; under torchrun, this rank's share of each."""

    def __init__(self, order: torch.Tensor, batch_size: int, start: int = 0, rank: int = 0, world_size: int = 1):
        self.order, self.batch_size, self.start = order, batch_size, start
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return max(0, math.ceil(len(self.order) / self.batch_size) - self.start)

    def __iter__(self) -> Iterator[BatchRequest]:
        for b in range(self.start, self.start + len(self)):
            idx = self.order[b * self.batch_size : (b + 1) * self.batch_size]
            yield local_rows(idx, self.rank, self.world_size)


def local_rows(idx: torch.Tensor, rank: int, world_size: int) -> BatchRequest:
    """Rank ``rank``'s rows of the global batch ``idx`` and the factor on its mean loss.

    DDP averages gradients over ranks, so a rank's mean loss times ``world_size * len(rows) / len(idx)`` makes the
    average the mean over the whole global batch, also when the last batch does not split evenly. A rank left
    without rows computes one placeholder row with factor 0 (every rank must take part in the gradient all-reduce).
    """
    if world_size == 1:
        return BatchRequest(idx)
    rows = idx.tensor_split(world_size)[rank]
    if len(rows) == 0:
        return BatchRequest(idx[:1], 0.0)
    return BatchRequest(rows, world_size * len(rows) / len(idx))


class InOrder(Sampler[BatchRequest]):
    """Consecutive batches of every row, for prediction."""

    def __init__(self, n: int, batch_size: int):
        self.n, self.batch_size = n, batch_size

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def __iter__(self) -> Iterator[BatchRequest]:
        for start in range(0, self.n, self.batch_size):
            yield BatchRequest(torch.arange(start, min(start + self.batch_size, self.n)))


class _Batches(Dataset):
    def __init__(self, split: Split):
        self.split = split

    def __getitem__(self, request: BatchRequest) -> dict:
        return {**self.split.batch(request.rows), "loss_scale": request.loss_scale}


def default_workers(device: torch.device) -> int:
    """Loader worker processes when ``train.loader_workers`` is unset: none when training on the CPU (its threads
    already use every core, and a worker beside them slowed a step: ``cpfd bench scale``), half the CPUs this
    process may use (1–8) when a GPU trains and the CPUs would otherwise wait."""
    return max(1, min(8, len(os.sched_getaffinity(0)) // 2)) if device.type == "cuda" else 0


def batch_loader(split: Split, sampler: Sampler[BatchRequest], workers: int | None, device: torch.device) -> DataLoader:
    """Batches of ``split`` in ``sampler``'s order. An in-memory split is indexed in this process; a streamed one is
    read by ``workers`` processes (each at most two batches ahead) into pinned memory when training on CUDA."""
    n_workers = (default_workers(device) if workers is None else workers) if split.streamed else 0
    return DataLoader(
        _Batches(split),
        sampler=sampler,
        batch_size=None,
        num_workers=n_workers,
        prefetch_factor=2 if n_workers else None,
        pin_memory=device.type == "cuda",
        generator=torch.Generator(),  # the loader's seed draw must not consume the global RNG (dropout)
    )
