"""The offline reference: the evaluation's predictions on the test split, kept with the model.

Format: a Parquet file with one row per test example and the columns
``scenario`` (str), ``arm`` (str; "" = the reference of every arm of that scenario),
``video_id`` (int64), ``label`` (int64, the true class), ``predicted`` (int64, argmax),
``confidence`` (float64, the top-class probability) and ``probabilities`` (list of float).
``cpfd monitor --reference`` takes one such file or a folder of them (searched recursively).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cpfd.errors import DataContractError

REFERENCE_FILE = "reference.parquet"
REFERENCE_COLUMNS = ("scenario", "arm", "video_id", "label", "predicted", "confidence", "probabilities")


def write_reference(
    out_path: str | Path, scenario: str, probs: np.ndarray, labels: np.ndarray, video_ids: np.ndarray, arm: str = ""
) -> Path:
    """Write the reference of one scenario (and optionally one arm) from evaluation probabilities."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    video_ids = np.asarray(video_ids, dtype=np.int64)
    if probs.ndim != 2 or not (len(probs) == len(labels) == len(video_ids)):
        raise DataContractError(
            f"reference for {scenario}: probs must be [N, K] with N = len(labels) = len(video_ids); "
            f"got {probs.shape}, {labels.shape}, {video_ids.shape}"
        )
    df = pd.DataFrame(
        {
            "scenario": scenario,
            "arm": arm,
            "video_id": video_ids,
            "label": labels,
            "predicted": probs.argmax(axis=1).astype(np.int64),
            "confidence": probs.max(axis=1),
            "probabilities": list(probs),
        }
    )
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(out, index=False)
    return out


def reference_from_model(
    model_dir: str | Path,
    dataset_dir: str | Path,
    out_path: str | Path | None = None,
    arm: str = "",
    split: str = "test",
) -> Path:
    """Evaluate a saved model on a built dataset's split and write its reference (default: in the model folder)."""
    from cpfd.data.tensors import read_manifest
    from cpfd.evaluate import evaluate_saved_model

    _, probs, t = evaluate_saved_model(model_dir, dataset_dir, split)
    out = Path(out_path) if out_path else Path(model_dir) / REFERENCE_FILE
    return write_reference(
        out, read_manifest(dataset_dir)["scenario"], probs, t.labels.numpy(), t.video_ids.numpy(), arm
    )


def read_reference(path: str | Path) -> pd.DataFrame:
    """One reference file, or every ``*.parquet`` under a folder, checked and concatenated."""
    p = Path(path)
    if not p.exists():
        raise DataContractError(f"reference {p} does not exist")
    files = sorted(p.rglob("*.parquet")) if p.is_dir() else [p]
    if not files:
        raise DataContractError(f"reference folder {p} holds no .parquet file")
    frames = []
    for f in files:
        df = pd.read_parquet(f, columns=None)
        missing = [c for c in REFERENCE_COLUMNS if c not in df.columns and c != "probabilities"]
        if missing:
            raise DataContractError(f"reference {f}: missing column(s) {missing}; expected {list(REFERENCE_COLUMNS)}")
        if df["confidence"].isna().any() or not df["confidence"].between(0, 1).all():
            raise DataContractError(f"reference {f}: column 'confidence' must be in [0, 1] with no nulls")
        frames.append(df[[c for c in REFERENCE_COLUMNS if c != "probabilities"]])
    out = pd.concat(frames, ignore_index=True)
    out["arm"] = out["arm"].fillna("").astype(str)
    return out
