"""A dataset split read from its shards a batch at a time: the same interface as the in-memory ``SplitTensors``."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from cpfd.data.shards import ShardReader
from cpfd.preprocess import tokenize

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


class TokenFile:
    """A split's titles tokenized once (per row: int32 ids, then the uint8 attention mask, ``5 * max_tokens`` bytes)
    in a local file that lives as long as the process; rows are read back with ``pread``."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, titles: Sequence[str], max_tokens: int):
        folder = Path(tempfile.mkdtemp(prefix="cpfd-tokens-"))
        atexit.register(shutil.rmtree, folder, True)
        self.path, self.max_tokens, self.row_bytes = folder / "tokens.bin", max_tokens, 5 * max_tokens
        with open(self.path, "wb") as f:
            for start in range(0, len(titles), 4096):
                ids, mask = tokenize(tokenizer, list(titles[start : start + 4096]), max_tokens)
                rows = np.concatenate([ids.numpy().astype("<i4").view(np.uint8), mask.numpy().astype(np.uint8)], 1)
                f.write(rows.tobytes())
        self._fd, self._pid = -1, -1

    def read(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        if self._pid != os.getpid():  # opened once per process (the loader's workers are forked)
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        data = np.frombuffer(
            b"".join(os.pread(self._fd, self.row_bytes, int(r) * self.row_bytes) for r in rows), np.uint8
        ).reshape(len(rows), self.row_bytes)
        cut = 4 * self.max_tokens
        ids = np.ascontiguousarray(data[:, :cut]).view("<i4").astype(np.int64)
        return torch.from_numpy(ids), torch.from_numpy(data[:, cut:].astype(np.int64))


class StreamedSplit:
    """Rows ``rows`` of a streamed split. Only ``labels`` and ``video_ids`` (16 bytes a row) live in memory; a batch's
    frames and dense features are read and decoded when asked for (in the loader's workers), its token ids read from
    ``tokens``."""

    def __init__(
        self,
        reader: ShardReader,
        tokens: TokenFile,
        rows: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        video_ids: torch.Tensor | None = None,
    ):
        self.reader, self.tokens = reader, tokens
        if rows is None:
            meta = reader.meta()
            rows = torch.arange(len(meta))
            labels = torch.from_numpy(meta["label"].to_numpy(np.int64))
            video_ids = torch.from_numpy(meta["video_id"].to_numpy(np.int64))
        assert labels is not None and video_ids is not None
        self.rows, self.labels, self.video_ids = rows, labels, video_ids

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def streamed(self) -> bool:
        return True

    @property
    def frame_shape(self) -> tuple[int, int]:
        shape = self.reader.frame_shape
        return (int(shape[0]), int(shape[1])) if shape else (0, 0)

    @property
    def block_rows(self) -> int:
        return self.reader.shard_rows

    def subset(self, idx: torch.Tensor) -> StreamedSplit:
        return StreamedSplit(self.reader, self.tokens, self.rows[idx], self.labels[idx], self.video_ids[idx])

    def dense_matrix(self) -> torch.Tensor:
        """The dense features of every row (float32 [N, F]), for the teacher's standardisation fit."""
        names = self.reader.index["feature_names"]
        full = self.reader.columns(names).to_numpy(np.float32) if names else np.zeros((len(self.reader), 0), np.float32)
        return torch.from_numpy(full)[self.rows]

    def batch(self, idx: torch.Tensor, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        rows = self.rows[idx].numpy()
        frames, _, dense = self.reader.read(rows, frames=self.reader.frame_shape is not None)
        ids, mask = self.tokens.read(rows)
        if frames is None:
            frames = np.zeros((len(idx), 0, 0, 0, 3), np.uint8)
        return {
            "frames": torch.from_numpy(frames).to(device, non_blocking=True),
            "input_ids": ids.to(device),
            "attention_mask": mask.to(device),
            "dense": torch.from_numpy(dense).to(device),
            "labels": self.labels[idx].to(device),
            "index": idx,
        }
