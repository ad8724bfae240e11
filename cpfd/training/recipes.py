"""Training jobs: the teacher (DF-X-VLM), the baseline student (X-VLM), the fold teachers of out-of-fold
teacher outputs, two-stage PFD / CPFD and joint distillation."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from cpfd.config import DistillConfig, ModelConfig, ProjectConfig, TrainConfig
from cpfd.data.loader import epoch_rows
from cpfd.data.tensors import PreparedData
from cpfd.distill import example_weights, pool_weights, standardize
from cpfd.errors import DataContractError
from cpfd.evaluate import predict_logits
from cpfd.models import VideoClassifier, build_model, make_spec, save_model
from cpfd.teacher_outputs import FOLD_OUTPUTS_FILE, TeacherOutputs, fold_assignment
from cpfd.training.checkpoint import atomic_save_tensors
from cpfd.training.distributed import barrier, is_main
from cpfd.training.loop import FitResult, fit
from cpfd.training.objectives import HINT_KEY, cached_distill_loss, ce_loss, joint_loss

log = logging.getLogger("cpfd.training")


def new_model(data: PreparedData, model_cfg: ModelConfig, role: str, seed: int) -> VideoClassifier:
    torch.manual_seed(seed)
    num_frames, image_size = data.frame_shape
    spec = make_spec(
        model_cfg,
        role,
        data.label_names,
        image_size,
        num_frames,
        len(data.tokenizer),
        data.feature_names if role == "teacher" else None,
        data.modalities,
        max_title_tokens=data.max_tokens,
    )
    model = build_model(spec, model_cfg.text_pretrained, model_cfg.vision_pretrained)
    if model_cfg.text_frozen and model.backbone.text is not None:
        model.backbone.text.requires_grad_(False)
    if model.dense is not None:
        model.dense.fit(data.splits["train"].dense_matrix())
    return model


def _finish(model: VideoClassifier, data: PreparedData, out_dir: Path, result: FitResult, extra: dict) -> dict:
    info = {
        **extra,
        "scenario": data.manifest["scenario"],
        "best_epoch": result.best_epoch,
        "best_val_macro_f1": result.best_val_f1,
        "epochs_run": result.epochs_run,
        "stopped_early": result.stopped_early,
        "train_examples_per_s": result.train_examples_per_s,
        "title_stats": data.title_stats,
        "history": result.history,
    }
    if is_main():  # under torchrun every rank holds the same weights; rank 0 writes them
        save_model(model, out_dir, data.tokenizer, info)
    barrier()
    return info


def train_classifier(
    data: PreparedData,
    role: str,
    project: ProjectConfig,
    out_dir: str | Path,
    progress: bool = True,
    resume: bool = True,
    on_epoch_end=None,
    train_cfg: TrainConfig | None = None,
    on_step_end=None,
) -> dict:
    """Cross-entropy training of the teacher (with dense features) or the baseline student."""
    scenario = data.manifest["scenario"]
    cfg = train_cfg or project.train_for(scenario)
    model = new_model(data, project.model, role, cfg.seed)
    desc = f"{role}[{scenario}]"
    result = fit(
        {role: model}, role, ce_loss(role), data, cfg, out_dir, desc, progress, resume, on_epoch_end, on_step_end
    )
    return _finish(model, data, Path(out_dir), result, {"role": role, "method": "ce", "train": cfg.model_dump()})


def with_hints(outputs: TeacherOutputs, teacher: VideoClassifier, data: PreparedData) -> TeacherOutputs:
    """``outputs`` with the full teacher's fused representation of every training row (distill.hint: fused)."""
    from dataclasses import replace

    return replace(outputs, hints=predict_logits(teacher, data.splits["train"], fused=True))


def insample_teacher_outputs(teacher: VideoClassifier, data: PreparedData, calibrated: bool = True) -> TeacherOutputs:
    """The full teacher's logits on the very examples it was trained on (temperature from its validation logits)."""
    train = data.splits["train"]
    out = TeacherOutputs(
        predict_logits(teacher, train),
        train.video_ids.clone(),
        torch.full((len(train),), -1, dtype=torch.int64),
        "insample",
        predict_logits(teacher, data.splits["val"]),
        data.splits["val"].labels.clone(),
    )
    return out.recalibrated(calibrated)


def fold_rows(data: PreparedData, num_folds: int, seed: int) -> np.ndarray:
    return fold_assignment(data.splits["train"].labels.numpy(), num_folds, seed)


def train_fold_teacher(
    data: PreparedData,
    project: ProjectConfig,
    fold: int,
    num_folds: int,
    out_dir: str | Path,
    progress: bool = True,
    resume: bool = True,
    train_cfg: TrainConfig | None = None,
) -> dict:
    """Train the teacher of fold ``fold`` on the other folds; save its logits on the held-out fold and on validation."""
    scenario = data.manifest["scenario"]
    cfg = train_cfg or project.train_for(scenario)
    folds = fold_rows(data, num_folds, cfg.seed)
    held_out = torch.from_numpy(np.flatnonzero(folds == fold))
    fold_data = data.with_train(torch.from_numpy(np.flatnonzero(folds != fold)))
    fold_cfg = cfg.model_copy(update={"seed": cfg.seed + 1009 * (fold + 1)})
    model = new_model(fold_data, project.model, "teacher", fold_cfg.seed)
    out = Path(out_dir)
    result = fit(
        {"teacher": model},
        "teacher",
        ce_loss("teacher"),
        fold_data,
        fold_cfg,
        out,
        f"teacher fold {fold + 1}/{num_folds} [{scenario}]",
        progress,
        resume,
    )
    train = data.splits["train"]
    if is_main():
        atomic_save_tensors(
            {
                "index": held_out,
                "video_id": train.video_ids[held_out],
                "trained_on": fold_data.splits["train"].video_ids,
                "logits": predict_logits(model, train.subset(held_out)),
                "val_logits": predict_logits(model, data.splits["val"]),
            },
            out / FOLD_OUTPUTS_FILE,
        )
    barrier()
    return {
        "fold": fold,
        "num_folds": num_folds,
        "held_out": int(len(held_out)),
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "best_val_macro_f1": result.best_val_f1,
    }


def combine_fold_outputs(
    data: PreparedData, fold_dirs: Sequence[str | Path], calibrated: bool = True
) -> TeacherOutputs:
    """Out-of-fold teacher outputs from every fold teacher's held-out logits; one temperature fitted on validation."""
    from safetensors.torch import load_file

    train = data.splits["train"]
    k = len(train)
    logits = torch.full((k, len(data.label_names)), float("nan"))
    folds = torch.full((k,), -1, dtype=torch.int64)
    val_logits = []
    for i, d in enumerate(sorted(fold_dirs, key=str)):
        path = Path(d) / FOLD_OUTPUTS_FILE if Path(d).is_dir() else Path(d)
        try:
            t = load_file(str(path))
        except Exception as e:
            raise DataContractError(f"{path}: cannot read fold outputs ({type(e).__name__}: {e})") from None
        if not torch.equal(train.video_ids[t["index"]], t["video_id"]):
            raise DataContractError(f"{path}: fold outputs were computed on another training split (video_ids differ)")
        if "trained_on" in t and bool(torch.isin(t["video_id"], t["trained_on"]).any()):
            raise DataContractError(f"{path}: the fold teacher scored examples it was trained on")
        if (folds[t["index"]] >= 0).any():
            raise DataContractError(f"{path}: fold outputs overlap another fold's rows")
        logits[t["index"]] = t["logits"]
        folds[t["index"]] = i
        val_logits.append(t["val_logits"])
    if (folds < 0).any():
        raise DataContractError(f"fold outputs cover {int((folds >= 0).sum())} of {k} training rows; a fold is missing")
    val_labels = data.splits["val"].labels.repeat(len(val_logits))
    return TeacherOutputs(
        logits, train.video_ids.clone(), folds, "oof", torch.cat(val_logits), val_labels
    ).recalibrated(calibrated)


def compute_teacher_outputs(
    data: PreparedData,
    project: ProjectConfig,
    teacher: VideoClassifier,
    work_dir: str | Path,
    distill_cfg: DistillConfig | None = None,
    progress: bool = True,
    resume: bool = True,
    train_cfg: TrainConfig | None = None,
) -> TeacherOutputs:
    """The soft-target source the config asks for: out-of-fold (training the fold teachers here) or in-sample."""
    scenario = data.manifest["scenario"]
    dcfg = distill_cfg or project.distill_for(scenario)
    if dcfg.teacher_outputs == "insample":
        out = insample_teacher_outputs(teacher, data, dcfg.calibrate)
    else:
        dirs = []
        for fold in range(dcfg.folds):
            d = Path(work_dir) / f"fold{fold}"
            if not (resume and (d / FOLD_OUTPUTS_FILE).exists()):
                train_fold_teacher(data, project, fold, dcfg.folds, d, progress, resume, train_cfg)
            dirs.append(d)
        out = combine_fold_outputs(data, dirs, dcfg.calibrate)
    out = with_hints(out, teacher, data) if dcfg.hint != "none" else out
    return with_pool(out, teacher, data) if uses_pool(data, dcfg) else out


def uses_pool(data: PreparedData, dcfg: DistillConfig) -> bool:
    """Whether distillation reads the unlabelled pool: the dataset has one and ``distill.pool_weight`` is above 0."""
    return dcfg.pool_weight > 0 and data.pool is not None


def with_pool(outputs: TeacherOutputs, teacher: VideoClassifier, data: PreparedData) -> TeacherOutputs:
    """``outputs`` with the full teacher's logits on the unlabelled pool (it never saw those videos)."""
    from dataclasses import replace

    assert data.pool is not None
    return replace(outputs, pool_logits=predict_logits(teacher, data.pool), pool_video_ids=data.pool.video_ids.clone())


def pooled_targets(
    data: PreparedData, teacher: TeacherOutputs, dcfg: DistillConfig, weights: torch.Tensor
) -> tuple[PreparedData, torch.Tensor, torch.Tensor]:
    """The training data with the pool after the labelled rows (``PooledSplit``), and the teacher logits and weights
    over both; the data unchanged without a pool in use."""
    from cpfd.data.loader import PooledSplit

    logits = teacher.calibrated
    if not uses_pool(data, dcfg):
        return data, logits, weights
    pool = data.pool
    assert pool is not None
    pool_logits = teacher.calibrated_pool
    if pool_logits is None or teacher.pool_video_ids is None or not torch.equal(teacher.pool_video_ids, pool.video_ids):
        raise DataContractError(
            "the teacher outputs do not cover the dataset's unlabelled pool (recompute them with this dataset, or set "
            "distill.pool_weight: 0)"
        )
    train = data.splits["train"]
    per_epoch = len(pool) if dcfg.pool_ratio is None else int(round(dcfg.pool_ratio * len(train)))
    split = PooledSplit(train, pool, per_epoch)
    pooled = PreparedData(
        data.manifest, data.tokenizer, {**data.splits, "train": split}, data.max_tokens, data.title_stats
    )
    return pooled, torch.cat([logits, pool_logits]), torch.cat([weights, pool_weights(pool_logits, dcfg)])


def distill_student(
    data: PreparedData,
    teacher: TeacherOutputs,
    project: ProjectConfig,
    out_dir: str | Path,
    distill_cfg: DistillConfig | None = None,
    progress: bool = True,
    resume: bool = True,
    train_cfg: TrainConfig | None = None,
) -> dict:
    """Two-stage PFD / CPFD from cached (calibrated) teacher outputs."""
    scenario = data.manifest["scenario"]
    cfg = train_cfg or project.train_for(scenario)
    dcfg = distill_cfg or project.distill_for(scenario)
    train = data.splits["train"]
    labels = train.labels
    logits = teacher.calibrated
    if logits.shape != (len(labels), len(data.label_names)):
        raise DataContractError(
            f"teacher outputs have shape {tuple(logits.shape)}, expected {(len(labels), len(data.label_names))}"
        )
    if not torch.equal(teacher.video_ids, train.video_ids):
        raise DataContractError("teacher outputs were computed on another training split (video_ids differ)")
    weights = example_weights(logits, labels, dcfg)
    model = new_model(data, project.model, "student", cfg.seed)
    models: dict[str, torch.nn.Module] = {"student": model}
    fit_data, all_logits, all_weights = pooled_targets(data, teacher, dcfg, weights)
    hints = None
    if dcfg.hint != "none":
        if teacher.hints is None or teacher.hints.shape[0] != len(labels):
            raise DataContractError(
                "distill.hint: fused needs the teacher's representation of every training row in the teacher outputs "
                "(recompute them with distill.hint: fused)"
            )
        hints = standardize(teacher.hints)
        models[HINT_KEY] = torch.nn.Linear(model.fused_size, hints.shape[1])
    pool_rows = len(all_weights) - len(weights)
    if hints is not None and pool_rows:  # the hint term reads labelled rows only (the pool's weight 0 in it)
        hints = torch.cat([hints, hints.new_zeros((pool_rows, hints.shape[1]))])
    loss = cached_distill_loss(all_logits, all_weights, dcfg, hints, len(weights))
    desc = f"{dcfg.method}[{scenario}]" + (f" + pool of {pool_rows}" if pool_rows else "")
    result = fit(models, "student", loss, fit_data, cfg, out_dir, desc, progress, resume)
    return _finish(
        model,
        data,
        Path(out_dir),
        result,
        {
            "role": "student",
            "method": dcfg.method,
            "distill": dcfg.model_dump(),
            "train": cfg.model_dump(),
            "mean_weight": float(weights.mean()),
            "pool": {"rows": pool_rows, "per_epoch": epoch_rows(fit_data.splits["train"]) - len(labels)},
            "teacher_outputs": teacher.source,
            "teacher_calibration": teacher.calibration,
        },
    )


def train_joint(
    data: PreparedData,
    project: ProjectConfig,
    out_dir: str | Path,
    distill_cfg: DistillConfig | None = None,
    progress: bool = True,
    resume: bool = True,
    train_cfg: TrainConfig | None = None,
) -> dict:
    """Teacher and student trained together; returns the student's info (the teacher is saved beside it). Labelled
    videos only: the unlabelled pool needs a trained teacher to score it (two-stage distillation)."""
    scenario = data.manifest["scenario"]
    cfg = train_cfg or project.train_for(scenario)
    dcfg = distill_cfg or project.distill_for(scenario)
    if uses_pool(data, dcfg):
        log.warning(
            "%s: joint training reads labelled videos only; the unlabelled pool is read by two-stage runs", scenario
        )
    models = {
        "teacher": new_model(data, project.model, "teacher", cfg.seed),
        "student": new_model(data, project.model, "student", cfg.seed + 1),
    }
    result = fit(
        models, "student", joint_loss(dcfg), data, cfg, out_dir, f"joint-{dcfg.method}[{scenario}]", progress, resume
    )
    if is_main():
        save_model(models["teacher"], Path(out_dir) / "teacher", data.tokenizer, {"role": "teacher", "method": "joint"})
    return _finish(
        models["student"],
        data,
        Path(out_dir),
        result,
        {
            "role": "student",
            "method": f"joint-{dcfg.method}",
            "distill": dcfg.model_dump(),
            "train": cfg.model_dump(),
        },
    )
