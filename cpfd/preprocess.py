"""Turn raw titles and frames into model inputs: the one code path for training and serving."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from cpfd.data.frames import sample_frames

if TYPE_CHECKING:  # transformers is imported where a tokenizer is made
    from transformers import PreTrainedTokenizerBase

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_title_tokenizer(
    titles: Sequence[str], vocab_size: int = 8000, min_frequency: int = 2
) -> PreTrainedTokenizerBase:
    """A WordPiece tokenizer trained on the training titles (for randomly initialised text towers).

    BERT's normaliser (lower case, accents stripped) and pre-tokeniser (whitespace, punctuation) cut the words;
    rare and unseen words are spelled with subword pieces, so only a word holding a character never seen in
    training becomes [UNK]. The same titles give the same vocabulary in every process (a resumed or a later
    step rebuilds it). ``save_pretrained`` writes it whole (tokenizer.json): ``load_tokenizer`` gives the same ids.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    def new(model) -> Tokenizer:
        tok = Tokenizer(model)
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        return tok

    tok = new(models.WordPiece(unk_token="[UNK]"))
    # The trainer numbers the "##c" pieces in hash-map order and breaks ties between merges by those numbers, so
    # its vocabulary changes from process to process (huggingface/tokenizers#1794): number them first, sorted.
    chars = sorted({c for t in titles for c in tok.normalizer.normalize_str(t) if not c.isspace()})
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIAL_TOKENS + [f"##{c}" for c in chars],
        show_progress=False,
    )
    tok.train_from_iterator(titles, trainer)
    tok = new(models.WordPiece(tok.get_vocab(with_added_tokens=False), unk_token="[UNK]"))  # "##c": plain pieces
    tok.add_special_tokens(SPECIAL_TOKENS)
    cls, sep = (tok.token_to_id(t) for t in ("[CLS]", "[SEP]"))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def _token_counts(tokenizer: PreTrainedTokenizerBase, titles: Sequence[str]) -> tuple[np.ndarray, int, int]:
    """Per title its length with the special tokens; the number of [UNK] and of all non-special tokens (tokenized
    4,096 titles at a time: memory stays flat for a split of millions)."""
    unk, lengths, n_unk, n_tokens = tokenizer.unk_token_id, [], 0, 0
    for start in range(0, len(titles), 4096):
        ids = tokenizer(list(titles[start : start + 4096]), add_special_tokens=False)["input_ids"]
        lengths.append(np.array([len(row) for row in ids], dtype=np.int64))
        n_unk += sum(i == unk for row in ids for i in row)
        n_tokens += sum(len(row) for row in ids)
    all_lengths = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
    return all_lengths + tokenizer.num_special_tokens_to_add(), n_unk, n_tokens


def auto_title_tokens(tokenizer: PreTrainedTokenizerBase, titles: Sequence[str], limit: int) -> int:
    """The title length the model uses: the 98th percentile of the training ``titles``' token lengths ([CLS]/[SEP]
    included) rounded up to a multiple of 8, at least 8, at most ``limit`` (the text tower's positions).

    Not the 95th: unseen titles run longer than the training titles under a tokenizer trained on the latter (their
    rare words split into more pieces), and at the 95th percentile about 6 % of held-out real titles were cut."""
    lengths, _, _ = _token_counts(tokenizer, titles)
    p98 = float(np.percentile(lengths, 98)) if len(lengths) else 0.0
    return min(limit, max(8, 8 * math.ceil(p98 / 8)))


def title_stats(tokenizer: PreTrainedTokenizerBase, titles: Sequence[str], max_tokens: int) -> dict:
    """How the titles fare with ``tokenizer`` cut at ``max_tokens``: ``unk_rate`` (share of non-special tokens that
    are [UNK]), ``truncated_rate`` (share of titles longer than ``max_tokens``), ``p95_tokens``, ``max_tokens``."""
    lengths, unk, total = _token_counts(tokenizer, titles)
    return {
        "titles": len(lengths),
        "unk_rate": unk / max(total, 1),
        "truncated_rate": float((lengths > max_tokens).mean()) if len(lengths) else 0.0,
        "p95_tokens": round(float(np.percentile(lengths, 95)), 1) if len(lengths) else 0.0,
        "max_tokens": max_tokens,
    }


def title_word_stats(titles: Sequence[str]) -> dict:
    """Word counts of raw titles (split on whitespace), for a dataset manifest: ``titles``, ``empty`` (share),
    ``mean_words``, ``p50_words``, ``p95_words``, ``max_words``."""
    words = np.array([len(str(t).split()) for t in titles], dtype=np.int64)
    if not len(words):
        return {"titles": 0, "empty": 0.0, "mean_words": 0.0, "p50_words": 0.0, "p95_words": 0.0, "max_words": 0}
    return {
        "titles": len(words),
        "empty": float((words == 0).mean()),
        "mean_words": float(words.mean()),
        "p50_words": float(np.percentile(words, 50)),
        "p95_words": float(np.percentile(words, 95)),
        "max_words": int(words.max()),
    }


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
