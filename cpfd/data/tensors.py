"""A built dataset loaded for training: its tokenizer, title length and splits, in memory or streamed from shards."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from cpfd.config import ALL_MODALITIES, ModelConfig, TrainConfig
from cpfd.data.frames import load_frames
from cpfd.data.loader import Split
from cpfd.data.shards import DEFAULT_SHARD_ROWS, is_url
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
    block_rows: int = DEFAULT_SHARD_ROWS  # the sampler's shuffle block (the stream's shard size when there is one)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def streamed(self) -> bool:
        return False

    @property
    def frame_shape(self) -> tuple[int, int]:
        return int(self.frames.shape[1]), int(self.frames.shape[2])

    def dense_matrix(self) -> torch.Tensor:
        return self.dense

    def subset(self, idx: torch.Tensor) -> SplitTensors:
        return SplitTensors(
            self.frames[idx],
            self.input_ids[idx],
            self.attention_mask[idx],
            self.dense[idx],
            self.labels[idx],
            self.video_ids[idx],
            self.block_rows,
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
    splits: dict[str, Split]
    max_tokens: int
    title_stats: dict[str, dict] = field(default_factory=dict)
    dataset_dir: Path | None = None  # where it was built (its unlabelled pool is read from there when asked for)

    @cached_property
    def pool(self) -> Split | None:
        """The unlabelled videos (``pool`` split), streamed from their shards with this tokenizer; None without any.

        Only labels (-1) and video ids of the pool stay in memory, so training RAM stays flat in the pool's size."""
        if not (self.manifest.get("pool") or {}).get("rows") or self.dataset_dir is None:
            return None
        from cpfd.data.shards import ShardReader
        from cpfd.data.streamed import StreamedSplit, TokenFile

        root = stream_root(self.dataset_dir, self.manifest, "pool")
        assert root is not None
        reader = ShardReader(root)
        titles = [str(t) for t in reader.columns(["title"])["title"]] if "title" in self.modalities else []
        return StreamedSplit(reader, TokenFile(self.tokenizer, titles or [""] * len(reader), self.max_tokens))

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
            self.manifest,
            self.tokenizer,
            {**self.splits, "train": train},
            self.max_tokens,
            self.title_stats,
            self.dataset_dir,
        )

    @property
    def modalities(self) -> list[str]:
        return self.manifest.get("modalities", list(ALL_MODALITIES))

    @property
    def frame_shape(self) -> tuple[int, int]:
        return self.splits["train"].frame_shape


def stream_root(dataset_dir: str | Path, manifest: dict, split: str) -> str | None:
    """Where a split's shards are (a folder or URL), or None for a dataset built without them."""
    stream = manifest.get("stream")
    if not stream:
        return None
    root = str(stream["root"])
    if not is_url(root) and not Path(root).is_absolute():
        root = str(Path(dataset_dir) / root)
    return f"{root.rstrip('/')}/{split}"


def use_stream(manifest: dict, loading: TrainConfig) -> bool:
    """``train.data``: ``stream`` or ``memory`` as asked; ``auto`` streams when the frames of the splits would take
    more than ``train.memory_limit_mb`` in memory."""
    if loading.data == "memory" or not manifest.get("stream"):
        if loading.data == "stream":
            raise DataContractError(
                "train.data is 'stream' but the dataset has no shards; rebuild it with "
                "`cpfd dataset build` (this version writes them)"
            )
        return False
    if loading.data == "stream":
        return True
    shape = manifest["stream"].get("frame_shape") or [0]
    # a row in memory: its frames, token ids and mask (int64, ~64 tokens), dense features (float32)
    row_bytes = int(np.prod(shape)) + 2 * 8 * 64 + 4 * len(manifest["feature_names"])
    return row_bytes * sum(manifest["rows"].values()) > loading.memory_limit_mb * 2**20


def prepare_data(dataset_dir: str | Path, model_cfg: ModelConfig, loading: TrainConfig | None = None) -> PreparedData:
    """The splits in memory or streamed (``use_stream``). Titles: a pretrained tower's own tokenizer, else WordPiece
    trained on the training titles; cut at ``model.max_title_tokens``, or when unset at the length
    ``auto_title_tokens`` finds in them."""
    manifest = read_manifest(dataset_dir)
    if use_stream(manifest, loading or TrainConfig()):
        return _prepare_streamed(dataset_dir, manifest, model_cfg)
    tables = {s: read_split_table(dataset_dir, s) for s in ("train", "val", "test")}
    titles = {s: split_titles(df) for s, df in tables.items()}
    tokenizer, max_tokens = _tokenizer_and_length(model_cfg, titles["train"])
    block = int((manifest.get("stream") or {}).get("shard_rows", DEFAULT_SHARD_ROWS))
    tensors = {}
    for s, df in tables.items():
        tensors[s] = to_tensors(
            df, manifest["feature_names"], tokenizer, max_tokens, None, f"{dataset_dir}/{s}.parquet"
        )
        tensors[s].block_rows = block
    shapes = {tuple(t.frames.shape[1:]) for t in tensors.values()}
    if len(shapes) > 1:
        raise DataContractError(f"{dataset_dir}: splits have different frame shapes {sorted(shapes)}")
    splits: dict[str, Split] = dict(tensors)
    stats = {s: title_stats(tokenizer, t, max_tokens) for s, t in titles.items()}
    return PreparedData(manifest, tokenizer, splits, max_tokens, stats, Path(dataset_dir))


def _tokenizer_and_length(model_cfg: ModelConfig, train_titles: list[str]) -> tuple[PreTrainedTokenizerBase, int]:
    if model_cfg.text_pretrained:
        tokenizer = load_tokenizer(text_pretrained_path(model_cfg.text_pretrained))
    else:
        tokenizer = train_title_tokenizer(train_titles)
    max_tokens = model_cfg.max_title_tokens or auto_title_tokens(
        tokenizer, train_titles, text_position_limit(model_cfg)
    )
    return tokenizer, max_tokens


def _prepare_streamed(dataset_dir: str | Path, manifest: dict, model_cfg: ModelConfig) -> PreparedData:
    """Splits read from their shards: the titles are read once for the tokenizer, their statistics and a local file
    of their token ids; then only labels and video ids stay in memory."""
    from cpfd.data.shards import ShardReader
    from cpfd.data.streamed import StreamedSplit, TokenFile

    readers = {}
    for s in ("train", "val", "test"):
        root = stream_root(dataset_dir, manifest, s)
        assert root is not None
        readers[s] = ShardReader(root)
    has_title = "title" in manifest.get("modalities", ALL_MODALITIES)
    titles = {
        s: [str(t) for t in r.columns(["title"])["title"]] if has_title else [""] * len(r) for s, r in readers.items()
    }
    tokenizer, max_tokens = _tokenizer_and_length(model_cfg, titles["train"])
    stats = {s: title_stats(tokenizer, t, max_tokens) for s, t in titles.items()}
    tokens = {s: TokenFile(tokenizer, t, max_tokens) for s, t in titles.items()}
    del titles
    splits: dict[str, Split] = {s: StreamedSplit(r, tokens[s]) for s, r in readers.items()}
    return PreparedData(manifest, tokenizer, splits, max_tokens, stats, Path(dataset_dir))
