"""The gain estimate: the distilled student's test macro-F1 gain over X-VLM, predicted with an interval before any
fold teacher is trained (design and its limits: docs/decision.md).

The swap-split probe trains two students of the scenario's own architecture on the validation split, where the full
teacher's soft targets are honest: one on the labels, one with the scenario's distillation loss. Both stop early on
a quarter of the training split and are scored on the other three quarters; the gain is rescaled from the probe's
data size to the run's (n^-1/2) and widened by the test split's own sampling noise.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from cpfd.config import DistillConfig, ProjectConfig, TrainConfig
from cpfd.data.tensors import PreparedData
from cpfd.evaluate import macro_f1_batch, predict_logits
from cpfd.models import VideoClassifier
from cpfd.teacher_outputs import TeacherOutputs, fold_assignment

Z95 = 1.96
ESTIMATE_FILE = "gain_estimate.json"


@dataclass
class GainEstimate:
    """One scenario's predicted gain (F1 points as fractions: 0.012 = +1.2 points) and how it was reached."""

    predicted: float
    low: float
    high: float
    probe_gain: float  # macro-F1 of the distilled probe minus the hard-label probe, on the evaluation rows
    probe_se: float  # its paired bootstrap standard error
    scale: float  # sqrt(n_probe / n_train)
    f1_hard: float
    f1_distilled: float
    n_probe: int
    n_eval: int
    n_train: int
    n_test: int
    seconds: float
    epochs: dict[str, list[int]]

    @property
    def verdict(self) -> str:
        return verdict(self.low, self.high)

    @property
    def variance(self) -> float:
        """Of one run's realised gain around the prediction: the probe's and the test split's sampling noise."""
        return (self.scale * self.probe_se) ** 2 + self.probe_se**2 * self.n_eval / max(self.n_test, 1)

    def to_dict(self) -> dict:
        return {**asdict(self), "verdict": self.verdict}

    def summary(self) -> str:
        return (
            f"predicted gain over X-VLM {100 * self.predicted:+.1f} F1 points "
            f"[{100 * self.low:+.1f}, {100 * self.high:+.1f}]: {self.verdict}"
        )


def verdict(low: float, high: float) -> str:
    """``gain`` when the interval is above 0, ``no gain`` when it is at or below 0, else ``uncertain``."""
    if low > 0:
        return "gain"
    return "no gain" if high <= 0 else "uncertain"


def paired_bootstrap_se(labels: np.ndarray, a: np.ndarray, b: np.ndarray, k: int, reps: int = 1000) -> float:
    """Standard error of macro-F1(a) - macro-F1(b) over rows resampled together."""
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(labels), size=(reps, len(labels)))
    y = labels[idx]
    diff = macro_f1_batch(y, a[idx], k) - macro_f1_batch(y, b[idx], k)
    return float(diff.std(ddof=1))


def probe_standard_error(labels: np.ndarray, a: np.ndarray, b: np.ndarray, k: int) -> float:
    """The paired bootstrap standard error; when the two probes agree on every row (two students that learnt the
    same thing, e.g. the majority class of a rare-positive scenario) it is 0, which says nothing about how a full-size
    run will differ: one binomial-scale error, 1 / sqrt(n), stands in, so the verdict is not a zero-width "no gain"."""
    se = paired_bootstrap_se(labels, a, b, k)
    return se if se > 0 else 1.0 / math.sqrt(max(len(labels), 1))


def probe_data(data: PreparedData, seed: int) -> PreparedData:
    """Training rows: the validation split; early stopping: a label-stratified quarter of the training split;
    evaluation (``test``): the other three quarters."""
    train = data.splits["train"]
    quarter = fold_assignment(train.labels.numpy(), 4, seed + 17)
    stop = torch.from_numpy(np.flatnonzero(quarter == 0))
    score = torch.from_numpy(np.flatnonzero(quarter != 0))
    splits = {"train": data.splits["val"], "val": train.subset(stop), "test": train.subset(score)}
    return PreparedData(data.manifest, data.tokenizer, splits, data.max_tokens, data.title_stats)


def validation_outputs(teacher: VideoClassifier, data: PreparedData, dcfg: DistillConfig) -> TeacherOutputs:
    """The full teacher's outputs on the validation split (honest soft targets), scaled as the run scales them."""
    from dataclasses import replace

    val = data.splits["val"]
    logits = predict_logits(teacher, val)
    out = TeacherOutputs(
        logits, val.video_ids.clone(), torch.full((len(val),), -1), "validation", logits, val.labels.clone()
    ).recalibrated(dcfg.calibrate)
    if dcfg.hint != "none":
        out = replace(out, hints=predict_logits(teacher, val, fused=True))
    return out


def estimate_gain(
    data: PreparedData,
    teacher: VideoClassifier,
    project: ProjectConfig,
    work_dir: str | Path,
    distill_cfg: DistillConfig | None = None,
    train_cfg: TrainConfig | None = None,
    progress: bool = False,
    resume: bool = True,
) -> GainEstimate:
    """Train the two probe students in ``work_dir`` and return the estimate (docs/decision.md)."""
    from cpfd.training.recipes import distill_student, train_classifier

    t0 = time.perf_counter()
    scenario = data.manifest["scenario"]
    cfg = train_cfg or project.train_for(scenario)
    dcfg = (distill_cfg or project.distill_for(scenario)).model_copy(update={"teacher_outputs": "insample"})
    probe = probe_data(data, cfg.seed)
    work = Path(work_dir)
    hard = train_classifier(probe, "student", project, work / "hard", progress, resume, train_cfg=cfg)
    soft = distill_student(
        probe, validation_outputs(teacher, data, dcfg), project, work / "distilled", dcfg, progress, resume, cfg
    )
    from cpfd.models import load_model

    k = len(data.label_names)
    y = probe.splits["test"].labels.numpy()
    preds = {
        name: predict_logits(load_model(work / name), probe.splits["test"]).argmax(-1).numpy()
        for name in ("hard", "distilled")
    }
    f1 = {name: float(macro_f1_batch(y[None], p[None], k)[0]) for name, p in preds.items()}
    gain = f1["distilled"] - f1["hard"]
    se = probe_standard_error(y, preds["distilled"], preds["hard"], k)
    n_probe, n_train = len(probe.splits["train"]), len(data.splits["train"])
    scale = math.sqrt(n_probe / max(n_train, 1))
    est = GainEstimate(
        predicted=scale * gain,
        low=0.0,
        high=0.0,
        probe_gain=gain,
        probe_se=se,
        scale=scale,
        f1_hard=f1["hard"],
        f1_distilled=f1["distilled"],
        n_probe=n_probe,
        n_eval=len(y),
        n_train=n_train,
        n_test=len(data.splits["test"]),
        seconds=time.perf_counter() - t0,
        epochs={n: [i["best_epoch"], i["epochs_run"]] for n, i in (("hard", hard), ("distilled", soft))},
    )
    half = Z95 * math.sqrt(est.variance)
    est.low, est.high = est.predicted - half, est.predicted + half
    return est


def pooled(estimates: list[GainEstimate]) -> dict:
    """Over S runs (seeds) of one scenario: the interval for the mean of their realised gains."""
    centres = np.array([e.predicted for e in estimates])
    s = len(estimates)
    spread = float(centres.var(ddof=1)) if s > 1 else 0.0
    half = Z95 * math.sqrt((np.mean([e.variance for e in estimates]) + spread) / s)
    centre = float(centres.mean())
    return {
        "predicted": centre,
        "low": centre - half,
        "high": centre + half,
        "verdict": verdict(centre - half, centre + half),
    }
