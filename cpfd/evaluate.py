"""Prediction and per-scenario metrics: macro-F1, precision, recall, confusion matrix, calibration, gap closed."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the metrics need numpy only; prediction imports torch and the models when called
    import torch

    from cpfd.data.loader import Split
    from cpfd.data.tensors import PreparedData, SplitTensors
    from cpfd.models import VideoClassifier


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(labels, dtype=np.int64), np.asarray(preds, dtype=np.int64)), 1)
    return cm


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE over equal-width bins of the top-class probability."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            ece += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return float(ece)


def per_class_prf(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall, F1 per class and which classes are present, for confusion matrices [..., K, K]
    (rows true, columns predicted)."""
    cm = np.asarray(cm, dtype=float)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    predicted, actual = cm.sum(-2), cm.sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(actual > 0, tp / actual, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return precision, recall, f1, (predicted + actual) > 0


def macro_prf(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Macro precision / recall / F1 of confusion matrices [..., K, K]; the one macro-F1 of the project.

    Classes absent from both labels and predictions are left out, as scikit-learn does.
    """
    precision, recall, f1, present = per_class_prf(cm)
    n_present = np.maximum(present.sum(-1), 1)
    return {
        name: (v * present).sum(-1) / n_present
        for name, v in (("precision", precision), ("recall", recall), ("f1", f1))
    }


def classification_metrics(probs: np.ndarray, labels: np.ndarray, label_names: list[str]) -> dict:
    """Macro-averaged F1 / precision / recall (classes absent from both labels and predictions excluded)."""
    k = len(label_names)
    preds = probs.argmax(axis=1)
    cm = confusion_matrix(labels, preds, k)
    f1 = per_class_prf(cm)[2]
    macro = macro_prf(cm)
    return {
        "n": int(len(labels)),
        "macro_f1": float(macro["f1"]),
        "precision": float(macro["precision"]),
        "recall": float(macro["recall"]),
        "accuracy": float(np.trace(cm) / max(len(labels), 1)),
        "ece": expected_calibration_error(probs, labels) if len(labels) else 0.0,
        "per_class_f1": {name: float(v) for name, v in zip(label_names, f1, strict=True)},
        "confusion_matrix": cm.tolist(),
        "label_names": list(label_names),
    }


def macro_f1_batch(labels: np.ndarray, preds: np.ndarray, k: int) -> np.ndarray:
    """Macro-F1 of every row of [B, n] label / prediction arrays (classes absent from both excluded)."""
    b = labels.shape[0]
    codes = (labels * k + preds) + (np.arange(b)[:, None] * k * k)
    return macro_prf(np.bincount(codes.ravel(), minlength=b * k * k).reshape(b, k, k))["f1"]


def gap_closed(f1_distilled: float, f1_student: float, f1_teacher: float) -> float | None:
    """(F1_distilled - F1_student) / (F1_teacher - F1_student); None when the teacher is not better."""
    gap = f1_teacher - f1_student
    if gap <= 1e-9:
        return None
    return (f1_distilled - f1_student) / gap


# Under one macro-F1 point between teacher and baseline, "gap closed" divides by noise (a 0.4-point gap turns a
# 0.5-point gain into 125 %): it is not shown.
MIN_TEACHER_GAP = 0.01


def paired_f1_intervals(
    labels: np.ndarray, preds: dict[str, np.ndarray], num_classes: int, reps: int = 1000, seed: int = 0
) -> dict:
    """95 % percentile intervals of each model's macro-F1 (``f1``: name -> [low, high]) and of teacher − baseline
    (``teacher_minus_baseline``: [low, high]; where ``preds`` has both), resampling the same examples for every model
    (a paired bootstrap of one split)."""
    labels = np.asarray(labels)
    idx = np.random.default_rng(seed).integers(0, len(labels), size=(reps, len(labels)))
    y = labels[idx]
    scores = {name: macro_f1_batch(y, np.asarray(p)[idx], num_classes) for name, p in preds.items()}
    out: dict = {"f1": {n: np.percentile(v, [2.5, 97.5]).tolist() for n, v in scores.items()}, "reps": reps}
    if "teacher" in scores and "baseline" in scores:
        out["teacher_minus_baseline"] = np.percentile(scores["teacher"] - scores["baseline"], [2.5, 97.5]).tolist()
    return out


def gap_closed_or_why(
    f1: dict[str, float],
    val_f1: dict[str, float] | None = None,
    min_gap: float = MIN_TEACHER_GAP,
    teacher_interval: list[float] | None = None,
) -> tuple[float | None, str]:
    """Gap closed on test (``f1``: baseline, teacher, distilled) where the teacher is clearly better than the baseline:
    by at least ``min_gap`` on validation (where ``val_f1`` is given: that is where the teacher was chosen) and on
    test, and, where ``teacher_interval`` (a 95 % paired interval of teacher − baseline on test) is given, with that
    interval above 0. Otherwise None and why, e.g. ``teacher not better on val``, ``teacher only +0.4 pts over X-VLM
    on test`` or ``teacher not significantly better on test: +1.1 [-1.9, +4.0]``."""
    if val_f1 is not None:
        val_gap = val_f1["teacher"] - val_f1["baseline"]
        if val_gap <= 0:
            return None, "teacher not better on val"
        if val_gap < min_gap:
            return None, f"teacher only {100 * val_gap:+.1f} pts over X-VLM on val"
    gap = f1["teacher"] - f1["baseline"]
    if gap <= 0:
        return None, "teacher not better on test"
    if gap < min_gap:
        return None, f"teacher only {100 * gap:+.1f} pts over X-VLM on test"
    if teacher_interval is not None and teacher_interval[0] <= 0:
        low, high = teacher_interval
        return None, f"teacher not significantly better on test: {100 * gap:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]"
    return gap_closed(f1["distilled"], f1["baseline"], f1["teacher"]), ""


def predict_logits(
    model: VideoClassifier,
    split: Split,
    batch_size: int = 256,
    device: torch.device | None = None,
    workers: int | None = None,
    fused: bool = False,
) -> torch.Tensor:
    """Logits of every row of ``split`` in order (a streamed split is read by ``workers`` loader processes); with
    ``fused`` the fused representation the head reads instead."""
    import torch

    from cpfd.data.loader import InOrder, batch_loader
    from cpfd.device import autocast
    from cpfd.models import forward_batch, fused_batch

    run = fused_batch if fused else forward_batch

    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    with torch.no_grad():
        for batch in batch_loader(split, InOrder(len(split), batch_size), workers, device):
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items() if k not in ("index", "loss_scale")}
            with autocast(device):
                out.append(run(model, batch).float().cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, model.fused_size if fused else model.spec.num_classes)


def model_macro_f1(model: VideoClassifier, split: Split, label_names: list[str], workers: int | None = None) -> float:
    probs = predict_logits(model, split, workers=workers).softmax(-1).numpy()
    return classification_metrics(probs, split.labels.numpy(), label_names)["macro_f1"]


def evaluate_model(model: VideoClassifier, data: PreparedData, split: str = "test") -> tuple[dict, np.ndarray]:
    """Metrics and class probabilities on a split."""
    probs = predict_logits(model, data.splits[split]).softmax(-1).numpy()
    return classification_metrics(probs, data.splits[split].labels.numpy(), data.label_names), probs


def evaluate_saved_model(
    model_dir: str | Path, dataset_dir: str | Path, split: str = "test"
) -> tuple[dict, np.ndarray, SplitTensors]:
    """Metrics, class probabilities and the split's tensors for a saved model on a built dataset."""
    from cpfd.data.tensors import PreparedData, read_manifest, read_split_table, to_tensors
    from cpfd.models import load_model
    from cpfd.preprocess import load_tokenizer

    model = load_model(model_dir)
    tokenizer = load_tokenizer(Path(model_dir) / "tokenizer")
    manifest = read_manifest(dataset_dir)
    tensors = to_tensors(
        read_split_table(dataset_dir, split),
        manifest["feature_names"],
        tokenizer,
        model.spec.max_title_tokens,
        None,
        f"{dataset_dir}/{split}.parquet",
    )
    data = PreparedData(manifest, tokenizer, {split: tensors}, model.spec.max_title_tokens)
    metrics, probs = evaluate_model(model, data, split)
    return metrics, probs, tensors
