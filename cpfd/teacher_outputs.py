"""The teacher's outputs on the training split, the soft targets and confidences of two-stage distillation.

``oof`` (default): the training split is cut into K label-stratified folds; the teacher of fold k
is trained on the other folds (validation split for early stopping, as always) and scores only
fold k, so no example's soft target comes from a model that saw its label. ``insample``: the
full teacher scores the examples it was trained on (near-copies of the labels, confidence near
1). Either way one temperature per scenario is fitted on the validation split (NLL), and the
distillation uses the logits divided by it. The unlabelled pool, which no teacher was trained on, is scored by the
full teacher and divided by the same temperature; its logits are stored in the same file. The teacher that is
evaluated and gated is always the one trained on the whole training split.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cpfd.errors import DataContractError
from cpfd.evaluate import expected_calibration_error

log = logging.getLogger("cpfd.teacher_outputs")
FOLD_OUTPUTS_FILE = "fold_outputs.safetensors"


@dataclass
class TeacherOutputs:
    """Raw teacher logits over the training split, with where each came from and the fitted temperature."""

    logits: torch.Tensor  # float32 [N, K], raw
    video_ids: torch.Tensor  # int64 [N]
    folds: torch.Tensor  # int64 [N]: the fold whose teacher scored the row (-1: the full teacher, in-sample)
    source: str  # "oof" | "insample"
    val_logits: torch.Tensor  # float32 [M, K]: the same teacher(s) on the validation split (fold teachers stacked)
    val_labels: torch.Tensor  # int64 [M]
    temperature: float = 1.0  # calibration temperature fitted on the validation split
    calibration: dict = field(default_factory=dict)  # validation NLL and ECE before / after
    hints: torch.Tensor | None = None  # float32 [N, D]: the full teacher's fused representation (distill.hint)
    pool_logits: torch.Tensor | None = None  # float32 [P, K], raw: the full teacher on the unlabelled pool
    pool_video_ids: torch.Tensor | None = None  # int64 [P]

    @property
    def calibrated(self) -> torch.Tensor:
        return self.logits / self.temperature

    @property
    def calibrated_pool(self) -> torch.Tensor | None:
        """The pool's logits divided by the same temperature as the training split's."""
        return None if self.pool_logits is None else self.pool_logits / self.temperature

    def recalibrated(self, enabled: bool) -> TeacherOutputs:
        """A copy with the temperature fitted on the validation logits (or 1 when not ``enabled``)."""
        t = fit_temperature(self.val_logits, self.val_labels) if enabled else 1.0
        return replace(self, temperature=t, calibration=calibration_report(self.val_logits, self.val_labels, t))

    def save(self, path: str | Path) -> None:
        from safetensors.torch import save_file

        path = Path(path)
        meta = {
            "source": self.source,
            "temperature": repr(self.temperature),
            "calibration": json.dumps(self.calibration),
        }
        tmp = path.with_suffix(".tmp")
        tensors = {
            "logits": self.logits.contiguous(),
            "video_id": self.video_ids.contiguous(),
            "fold": self.folds.contiguous(),
            "val_logits": self.val_logits.contiguous(),
            "val_labels": self.val_labels.contiguous(),
        }
        if self.hints is not None:
            tensors["hints"] = self.hints.contiguous()
        if self.pool_logits is not None and self.pool_video_ids is not None:
            tensors["pool_logits"] = self.pool_logits.contiguous()
            tensors["pool_video_id"] = self.pool_video_ids.contiguous()
        save_file(tensors, tmp, metadata=meta)
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path, train_video_ids: torch.Tensor | None = None) -> TeacherOutputs:
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                t = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
        except FileNotFoundError:
            raise DataContractError(f"{path}: teacher outputs not found") from None
        except Exception as e:  # a truncated or foreign file
            raise DataContractError(f"{path}: not a teacher-outputs file ({type(e).__name__}: {e})") from None
        missing = {"logits", "video_id", "fold", "val_logits", "val_labels"} - set(t)
        if missing or "source" not in meta:
            raise DataContractError(f"{path}: not a teacher-outputs file (missing {sorted(missing) or ['metadata']})")
        if train_video_ids is not None and not torch.equal(t["video_id"], train_video_ids):
            raise DataContractError(
                f"{path}: teacher outputs were computed on another training split (video_ids differ)"
            )
        return cls(
            t["logits"],
            t["video_id"],
            t["fold"],
            meta["source"],
            t["val_logits"],
            t["val_labels"],
            float(meta["temperature"]),
            json.loads(meta.get("calibration", "{}")),
            t.get("hints"),
            t.get("pool_logits"),
            t.get("pool_video_id"),
        )


def fold_assignment(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Label-stratified fold id in 0..k-1 for every example, deterministic in ``seed``."""
    labels = np.asarray(labels)
    if len(labels) < k:
        raise DataContractError(f"training split has {len(labels)} example(s), fewer than distill.folds = {k}")
    rng = np.random.default_rng(seed)
    folds = np.empty(len(labels), dtype=np.int64)
    offset = 0
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        folds[idx] = (np.arange(len(idx)) + offset) % k
        offset += len(idx)
    return folds


def nll(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> float:
    return float(F.cross_entropy(logits.float() / temperature, labels))


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature in [0.05, 20] minimising validation NLL (grid on log T, then golden-section)."""
    logits, labels = logits.float(), labels.long()
    if len(labels) == 0:
        return 1.0
    grid = np.exp(np.linspace(math.log(0.05), math.log(20.0), 61))
    losses = [nll(logits, labels, t) for t in grid]
    i = int(np.argmin(losses))
    lo, hi = math.log(grid[max(i - 1, 0)]), math.log(grid[min(i + 1, len(grid) - 1)])
    g = (math.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    for _ in range(40):
        if nll(logits, labels, math.exp(a)) < nll(logits, labels, math.exp(b)):
            hi = b
        else:
            lo = a
        a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    return float(math.exp((lo + hi) / 2))


def calibration_report(logits: torch.Tensor, labels: torch.Tensor, temperature: float) -> dict:
    """Validation NLL and ECE before and after temperature scaling."""
    y = labels.numpy()

    def ece(t: float) -> float:
        return expected_calibration_error((logits.float() / t).softmax(-1).numpy(), y)

    return {
        "temperature": temperature,
        "nll_before": nll(logits, labels),
        "nll_after": nll(logits, labels, temperature),
        "ece_before": ece(1.0),
        "ece_after": ece(temperature),
        "n": int(len(y)),
    }
