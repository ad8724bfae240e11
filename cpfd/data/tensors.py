"""A built dataset split as in-memory tensors, ready for the training loop."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from cpfd.config import ModelConfig
from cpfd.data.frames import load_frames
from cpfd.errors import DataContractError
from cpfd.preprocess import build_word_tokenizer, load_tokenizer, tokenize

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@dataclass
class SplitTensors:
    frames: torch.Tensor  # uint8 [N, T, H, W, 3]
    input_ids: torch.Tensor  # int64 [N, L]
    attention_mask: torch.Tensor  # int64 [N, L]
    dense: torch.Tensor  # float32 [N, F], NaN where missing
    labels: torch.Tensor  # int64 [N]
    video_ids: torch.Tensor  # int64 [N]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, idx: torch.Tensor) -> SplitTensors:
        return SplitTensors(
            self.frames[idx],
            self.input_ids[idx],
            self.attention_mask[idx],
            self.dense[idx],
            self.labels[idx],
            self.video_ids[idx],
        )

    def batch(self, idx: torch.Tensor, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        return {
            "frames": self.frames[idx].to(device, non_blocking=True),
            "input_ids": self.input_ids[idx].to(device),
            "attention_mask": self.attention_mask[idx].to(device),
            "dense": self.dense[idx].to(device),
            "labels": self.labels[idx].to(device),
            "index": idx,
        }


def read_manifest(dataset_dir: str | Path) -> dict:
    path = Path(dataset_dir) / "manifest.json"
    if not path.exists():
        raise DataContractError(
            f"{dataset_dir}: not a built dataset (no manifest.json); run `cpfd dataset build` first"
        )
    return json.loads(path.read_text())


def read_split_table(dataset_dir: str | Path, split: str) -> pd.DataFrame:
    path = Path(dataset_dir) / f"{split}.parquet"
    if not path.exists():
        raise DataContractError(f"{dataset_dir}: split file {path.name} is missing")
    return pd.read_parquet(path)


def to_tensors(
    df: pd.DataFrame,
    feature_names: list[str],
    tokenizer: PreTrainedTokenizerBase,
    max_tokens: int,
    num_frames: int | None,
    source: str,
) -> SplitTensors:
    frames = load_frames(df["frames"].tolist(), ".", num_frames=num_frames, source=source)
    ids, mask = tokenize(tokenizer, df["title"].tolist(), max_tokens)
    dense = df[feature_names].to_numpy(dtype=np.float32) if feature_names else np.zeros((len(df), 0), np.float32)
    return SplitTensors(
        frames=torch.from_numpy(frames),
        input_ids=ids,
        attention_mask=mask,
        dense=torch.from_numpy(dense),
        labels=torch.from_numpy(df["label"].to_numpy(dtype=np.int64)),
        video_ids=torch.from_numpy(df["video_id"].to_numpy(dtype=np.int64)),
    )


@dataclass
class PreparedData:
    """A built dataset loaded once: tokenizer and tensors of every split."""

    manifest: dict
    tokenizer: PreTrainedTokenizerBase
    splits: dict[str, SplitTensors]
    max_tokens: int

    @property
    def label_names(self) -> list[str]:
        return self.manifest["label_names"]

    @property
    def feature_names(self) -> list[str]:
        return self.manifest["feature_names"]

    def with_train(self, idx: torch.Tensor) -> PreparedData:
        """The same data with only rows ``idx`` of the training split (a fold teacher's view)."""
        return PreparedData(
            self.manifest, self.tokenizer, {**self.splits, "train": self.splits["train"].subset(idx)}, self.max_tokens
        )

    @property
    def frame_shape(self) -> tuple[int, int]:
        f = self.splits["train"].frames
        return int(f.shape[1]), int(f.shape[2])


def prepare_data(dataset_dir: str | Path, model_cfg: ModelConfig) -> PreparedData:
    manifest = read_manifest(dataset_dir)
    tables = {s: read_split_table(dataset_dir, s) for s in ("train", "val", "test")}
    if model_cfg.text_pretrained:
        tokenizer = load_tokenizer(model_cfg.text_pretrained)
    else:
        tokenizer = build_word_tokenizer(tables["train"]["title"].tolist())
    splits = {
        s: to_tensors(
            df, manifest["feature_names"], tokenizer, model_cfg.max_title_tokens, None, f"{dataset_dir}/{s}.parquet"
        )
        for s, df in tables.items()
    }
    shapes = {tuple(t.frames.shape[1:]) for t in splits.values()}
    if len(shapes) > 1:
        raise DataContractError(f"{dataset_dir}: splits have different frame shapes {sorted(shapes)}")
    return PreparedData(manifest, tokenizer, splits, model_cfg.max_title_tokens)
