"""A built dataset split as in-memory tensors, ready for the training loop."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from cpfd.config import ALL_MODALITIES, ModelConfig
from cpfd.data.frames import load_frames
from cpfd.errors import DataContractError
from cpfd.models import text_position_limit, text_pretrained_path
from cpfd.preprocess import auto_title_tokens, load_tokenizer, title_stats, tokenize, train_title_tokenizer

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


def split_titles(df: pd.DataFrame) -> list[str]:
    """A split's titles; empty ones for a scenario without titles."""
    return df["title"].tolist() if "title" in df else [""] * len(df)


def to_tensors(
    df: pd.DataFrame,
    feature_names: list[str],
    tokenizer: PreTrainedTokenizerBase,
    max_tokens: int,
    num_frames: int | None,
    source: str,
) -> SplitTensors:
    """A split's tensors; a scenario without frames (or titles) gets an empty frame tensor (or empty titles)."""
    if "frames" in df:
        frames = load_frames(df["frames"].tolist(), ".", num_frames=num_frames, source=source)
    else:
        frames = np.zeros((len(df), 0, 0, 0, 3), np.uint8)
    ids, mask = tokenize(tokenizer, split_titles(df), max_tokens)
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
    """A built dataset loaded once: tokenizer, title length, tensors of every split and, per split, how its titles
    fare with that tokenizer and length (``cpfd.preprocess.title_stats``)."""

    manifest: dict
    tokenizer: PreTrainedTokenizerBase
    splits: dict[str, SplitTensors]
    max_tokens: int
    title_stats: dict[str, dict] = field(default_factory=dict)

    @property
    def label_names(self) -> list[str]:
        return self.manifest["label_names"]

    @property
    def feature_names(self) -> list[str]:
        return self.manifest["feature_names"]

    def with_train(self, idx: torch.Tensor) -> PreparedData:
        """The same data with only rows ``idx`` of the training split (a fold teacher's view)."""
        train = self.splits["train"].subset(idx)
        return PreparedData(
            self.manifest, self.tokenizer, {**self.splits, "train": train}, self.max_tokens, self.title_stats
        )

    @property
    def modalities(self) -> list[str]:
        return self.manifest.get("modalities", list(ALL_MODALITIES))

    @property
    def frame_shape(self) -> tuple[int, int]:
        f = self.splits["train"].frames
        return int(f.shape[1]), int(f.shape[2])


def prepare_data(dataset_dir: str | Path, model_cfg: ModelConfig) -> PreparedData:
    manifest = read_manifest(dataset_dir)
    """The splits as tensors. Titles: a pretrained tower's own tokenizer, else WordPiece trained on the training
    titles; cut at ``model.max_title_tokens``, or when unset at the length ``auto_title_tokens`` finds in them."""
    tables = {s: read_split_table(dataset_dir, s) for s in ("train", "val", "test")}
    titles = {s: split_titles(df) for s, df in tables.items()}
    if model_cfg.text_pretrained:
        tokenizer = load_tokenizer(text_pretrained_path(model_cfg.text_pretrained))
    else:
        tokenizer = train_title_tokenizer(titles["train"])
    max_tokens = model_cfg.max_title_tokens or auto_title_tokens(
        tokenizer, titles["train"], text_position_limit(model_cfg)
    )
    splits = {
        s: to_tensors(df, manifest["feature_names"], tokenizer, max_tokens, None, f"{dataset_dir}/{s}.parquet")
        for s, df in tables.items()
    }
    shapes = {tuple(t.frames.shape[1:]) for t in splits.values()}
    if len(shapes) > 1:
        raise DataContractError(f"{dataset_dir}: splits have different frame shapes {sorted(shapes)}")
    stats = {s: title_stats(tokenizer, t, max_tokens) for s, t in titles.items()}
    return PreparedData(manifest, tokenizer, splits, max_tokens, stats)
