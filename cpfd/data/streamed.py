"""A dataset split read from its shards a batch at a time: the same interface as the in-memory ``SplitTensors``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from cpfd.data.shards import ShardReader
from cpfd.preprocess import tokenize

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


class StreamedSplit:
    """Rows ``rows`` of a streamed split. Only ``labels`` and ``video_ids`` (16 bytes a row) live in memory; a batch's
    frames, titles and dense features are read, decoded and tokenized when asked for (in the loader's workers)."""

    def __init__(
        self,
        reader: ShardReader,
        tokenizer: PreTrainedTokenizerBase,
        max_tokens: int,
        rows: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        video_ids: torch.Tensor | None = None,
    ):
        self.reader, self.tokenizer, self.max_tokens = reader, tokenizer, max_tokens
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
        return StreamedSplit(
            self.reader, self.tokenizer, self.max_tokens, self.rows[idx], self.labels[idx], self.video_ids[idx]
        )

    def dense_matrix(self) -> torch.Tensor:
        """The dense features of every row (float32 [N, F]), for the teacher's standardisation fit."""
        names = self.reader.index["feature_names"]
        full = np.stack([self.reader.column(n) for n in names], 1) if names else np.zeros((len(self.reader), 0))
        return torch.from_numpy(full.astype(np.float32))[self.rows]

    def titles(self) -> list[str]:
        return [str(t) for t in self.reader.column("title")[self.rows.numpy()]]

    def batch(self, idx: torch.Tensor, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        frames, titles, dense = self.reader.read(self.rows[idx].numpy(), frames=self.reader.frame_shape is not None)
        ids, mask = tokenize(self.tokenizer, list(titles), self.max_tokens)
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
