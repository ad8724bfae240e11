"""Turn raw titles and frames into model inputs: the one code path for training and serving."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from cpfd.data.frames import sample_frames

if TYPE_CHECKING:  # transformers is imported where a tokenizer is made
    from transformers import PreTrainedTokenizerBase

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def build_word_tokenizer(titles: list[str], min_count: int = 1, max_vocab: int = 20000) -> PreTrainedTokenizerBase:
    """A BERT tokenizer whose vocabulary is the training titles' words (for randomly initialised text towers).

    Words are cut exactly as the tokenizer will cut them when encoding (BERT's normaliser: lower case,
    accents stripped; its pre-tokeniser: whitespace and punctuation), so "days," and "won't" in a
    training title put "days", ",", "won", "'", "t" in the vocabulary instead of turning into [UNK].
    """
    from transformers import BertTokenizer

    backend = BertTokenizer(vocab={t: i for i, t in enumerate(SPECIAL_TOKENS)}).backend_tokenizer

    def split(title: str) -> list[str]:
        return [w for w, _ in backend.pre_tokenizer.pre_tokenize_str(backend.normalizer.normalize_str(title))]

    counts = Counter(w for t in titles for w in split(t))
    words = [w for w, c in counts.most_common(max_vocab) if c >= min_count and w not in SPECIAL_TOKENS]
    vocab = {w: i for i, w in enumerate(SPECIAL_TOKENS + sorted(words))}
    return BertTokenizer(vocab=vocab)


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


def tokenize(
    tokenizer: PreTrainedTokenizerBase, titles: list[str], max_tokens: int
) -> tuple[torch.Tensor, torch.Tensor]:
    enc = tokenizer(list(titles), padding="max_length", truncation=True, max_length=max_tokens, return_tensors="pt")
    return enc["input_ids"].long(), enc["attention_mask"].long()


def prepare_frames(frames: np.ndarray, num_frames: int, image_size: int) -> torch.Tensor:
    """uint8 [T, H, W, 3] of any T, H, W -> uint8 tensor [num_frames, image_size, image_size, 3]."""
    frames = sample_frames(frames, num_frames)
    x = torch.from_numpy(np.ascontiguousarray(frames))
    if x.shape[1] != image_size or x.shape[2] != image_size:
        x = torch.nn.functional.interpolate(
            x.permute(0, 3, 1, 2).float(),
            size=(image_size, image_size),
            mode="bilinear",
            align_corners=False,
            antialias=True,
        )
        x = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
    return x
