"""Training: the teacher, the baseline student, two-stage and joint distillation.

One loop for all of them: seeded, CUDA + bf16 autocast when there is a GPU, a checkpoint after
every epoch (safetensors + JSON) and resume from it, early stopping on validation macro-F1.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cpfd.config import DistillConfig, ModelConfig, ProjectConfig, TrainConfig
from cpfd.data.tensors import SplitTensors, read_manifest, read_split_table, to_tensors
from cpfd.distill import distillation_loss, example_weights
from cpfd.errors import CpfdError, DataContractError
from cpfd.evaluate import classification_metrics
from cpfd.models import VideoClassifier, build_model, make_spec, save_model
from cpfd.preprocess import build_word_tokenizer, load_tokenizer
from cpfd.teacher_outputs import FOLD_OUTPUTS_FILE, TeacherOutputs, fold_assignment

log = logging.getLogger("cpfd.train")


@dataclass
class PreparedData:
    """A built dataset loaded once: tokenizer and tensors of every split."""

    manifest: dict
    tokenizer: object
    splits: dict[str, SplitTensors]
    max_tokens: int

    @property
    def label_names(self) -> list[str]:
        return self.manifest["label_names"]

    @property
    def feature_names(self) -> list[str]:
        return self.manifest["feature_names"]

    def with_train(self, idx: torch.Tensor) -> "PreparedData":
        """The same data with only rows ``idx`` of the training split (a fold teacher's view)."""
        return PreparedData(self.manifest, self.tokenizer, {**self.splits, "train": self.splits["train"].subset(idx)},
                            self.max_tokens)

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
        s: to_tensors(df, manifest["feature_names"], tokenizer, model_cfg.max_title_tokens, None, f"{dataset_dir}/{s}.parquet")
        for s, df in tables.items()
    }
    shapes = {tuple(t.frames.shape[1:]) for t in splits.values()}
    if len(shapes) > 1:
        raise DataContractError(f"{dataset_dir}: splits have different frame shapes {sorted(shapes)}")
    return PreparedData(manifest, tokenizer, splits, model_cfg.max_title_tokens)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise CpfdError("train.device is 'cuda' but no GPU is visible")
    return torch.device(name)


def new_model(data: PreparedData, model_cfg: ModelConfig, role: str, seed: int) -> VideoClassifier:
    torch.manual_seed(seed)
    num_frames, image_size = data.frame_shape
    spec = make_spec(
        model_cfg, role, data.label_names, image_size, num_frames, len(data.tokenizer),
        data.feature_names if role == "teacher" else None,
    )
    model = build_model(spec, model_cfg.text_pretrained, model_cfg.vision_pretrained)
    if model.dense is not None:
        model.dense.fit(data.splits["train"].dense)
    return model


def forward(model: VideoClassifier, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    dense = batch["dense"] if model.uses_dense else None
    return model(batch["frames"], batch["input_ids"], batch["attention_mask"], dense)


@torch.no_grad()
def predict_logits(model: VideoClassifier, split: SplitTensors, batch_size: int = 256, device: torch.device | None = None) -> torch.Tensor:
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(split), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(split)))
        with _autocast(device):
            out.append(forward(model, split.batch(idx, device)).float().cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, model.spec.num_classes)


def _autocast(device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def macro_f1(model: VideoClassifier, split: SplitTensors, label_names: list[str]) -> float:
    probs = predict_logits(model, split).softmax(-1).numpy()
    return classification_metrics(probs, split.labels.numpy(), label_names)["macro_f1"]


# ---- checkpoints: tensors in safetensors, the rest in JSON ------------------------------------


def _atomic_save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    tmp = path.with_suffix(".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp)
    os.replace(tmp, path)


def _models_state(models: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    return {f"model.{name}.{k}": v for name, m in models.items() for k, v in m.state_dict().items()}


def _load_models_state(models: dict[str, nn.Module], tensors: dict[str, torch.Tensor]) -> None:
    for name, m in models.items():
        prefix = f"model.{name}."
        m.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})


def save_checkpoint(ckpt_dir: Path, models, optimizer: torch.optim.Optimizer, state: dict) -> None:
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    opt = optimizer.state_dict()
    tensors = _models_state(models)
    scalars: dict[str, dict] = {}
    for pid, pstate in opt["state"].items():
        for key, value in pstate.items():
            if torch.is_tensor(value):
                tensors[f"optim.{pid}.{key}"] = value
            else:
                scalars.setdefault(str(pid), {})[key] = value
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    _atomic_save_tensors(tensors, ckpt_dir / "state.safetensors")
    meta = {**state, "optimizer_param_groups": opt["param_groups"], "optimizer_scalars": scalars}
    tmp = ckpt_dir / "state.json.tmp"
    tmp.write_text(json.dumps(meta))
    os.replace(tmp, ckpt_dir / "state.json")


def load_checkpoint(ckpt_dir: Path, models, optimizer: torch.optim.Optimizer) -> dict:
    from safetensors.torch import load_file

    meta = json.loads((ckpt_dir / "state.json").read_text())
    tensors = load_file(ckpt_dir / "state.safetensors")
    _load_models_state(models, tensors)
    opt_state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, pid, key = k.split(".", 2)
            opt_state.setdefault(int(pid), {})[key] = v
    for pid, extra in meta.pop("optimizer_scalars").items():
        opt_state.setdefault(int(pid), {}).update(extra)
    optimizer.load_state_dict({"state": opt_state, "param_groups": meta.pop("optimizer_param_groups")})
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    return meta


# ---- the loop --------------------------------------------------------------------------------

LossFn = Callable[[dict[str, nn.Module], dict[str, torch.Tensor], int], torch.Tensor]


@dataclass
class FitResult:
    best_epoch: int
    best_val_f1: float
    epochs_run: int
    stopped_early: bool
    train_examples_per_s: float
    history: list[dict] = field(default_factory=list)


def _lr_at(step: int, total: int, base: float) -> float:
    warmup = max(1, int(0.05 * total))
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def fit(
    models: dict[str, nn.Module],
    eval_key: str,
    loss_fn: LossFn,
    data: PreparedData,
    cfg: TrainConfig,
    out_dir: str | Path,
    desc: str,
    progress: bool = True,
    resume: bool = True,
    on_epoch_end: Callable[[int], None] | None = None,
) -> FitResult:
    """Train ``models`` jointly with ``loss_fn``; select by validation macro-F1 of ``models[eval_key]``."""
    from tqdm.auto import tqdm

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    for m in models.values():
        m.to(device).train()
    params = [p for m in models.values() for p in m.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    train = data.splits["train"]
    n = len(train)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    ckpt_dir = Path(out_dir) / "checkpoint"
    state = {"epoch": 0, "global_step": 0, "best_val_f1": -1.0, "best_epoch": -1, "bad_epochs": 0,
             "done": False, "history": [], "train_seconds": 0.0}
    if resume and (ckpt_dir / "state.json").exists():
        state = load_checkpoint(ckpt_dir, models, optimizer)
        log.info("%s: resumed after epoch %d", desc, state["epoch"])
    else:
        torch.manual_seed(cfg.seed)

    while not state["done"] and state["epoch"] < cfg.epochs:
        epoch = state["epoch"]
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed * 100_003 + epoch))
        running, t0 = 0.0, time.perf_counter()
        bar = tqdm(range(steps_per_epoch), desc=f"{desc} epoch {epoch + 1}/{cfg.epochs}", leave=False, disable=not progress)
        for b in bar:
            idx = perm[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            batch = train.batch(idx, device)
            for g in optimizer.param_groups:
                g["lr"] = _lr_at(state["global_step"], total, cfg.lr)
            with _autocast(device):
                loss = loss_fn(models, batch, state["global_step"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            state["global_step"] += 1
            running += loss.item()
            bar.set_postfix(loss=f"{running / (b + 1):.4f}")
        state["train_seconds"] += time.perf_counter() - t0
        val_f1 = macro_f1(models[eval_key], data.splits["val"], data.label_names)
        state["history"].append({"epoch": epoch + 1, "train_loss": running / steps_per_epoch, "val_macro_f1": val_f1})
        if val_f1 > state["best_val_f1"]:
            state.update(best_val_f1=val_f1, best_epoch=epoch + 1, bad_epochs=0)
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            _atomic_save_tensors(_models_state(models), ckpt_dir / "best.safetensors")
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch + 1
        state["done"] = state["bad_epochs"] >= cfg.patience
        save_checkpoint(ckpt_dir, models, optimizer, state)
        if progress:
            log.info("%s epoch %d: loss %.4f, val macro-F1 %.4f", desc, epoch + 1, running / steps_per_epoch, val_f1)
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1)

    from safetensors.torch import load_file

    _load_models_state(models, load_file(ckpt_dir / "best.safetensors"))
    for m in models.values():
        m.eval()
    seen = state["global_step"] * cfg.batch_size
    return FitResult(
        best_epoch=state["best_epoch"], best_val_f1=state["best_val_f1"], epochs_run=state["epoch"],
        stopped_early=state["done"] and state["epoch"] < cfg.epochs,
        train_examples_per_s=min(seen, state["epoch"] * n) / max(state["train_seconds"], 1e-9),
        history=state["history"],
    )


# ---- the jobs --------------------------------------------------------------------------------


def ce_loss(key: str) -> LossFn:
    def loss(models, batch, step):
        return F.cross_entropy(forward(models[key], batch).float(), batch["labels"])

    return loss


def cached_distill_loss(teacher_logits: torch.Tensor, weights: torch.Tensor, cfg: DistillConfig) -> LossFn:
    """Two-stage: teacher logits and weights were computed once over the training split."""

    def loss(models, batch, step):
        idx = batch["index"]
        device = batch["labels"].device
        return distillation_loss(
            forward(models["student"], batch), batch["labels"], teacher_logits[idx].to(device),
            weights[idx].to(device), cfg.lam, cfg.temperature, cfg.loss,
        )

    return loss


def joint_loss(cfg: DistillConfig) -> LossFn:
    """Synchronous PFD: the teacher learns from CE only; its logits reach the student detached."""

    def loss(models, batch, step):
        t_logits = forward(models["teacher"], batch).float()
        s_logits = forward(models["student"], batch)
        teacher_ce = F.cross_entropy(t_logits, batch["labels"])
        lam = 0.0 if step < cfg.warmup_steps else cfg.lam
        w = example_weights(t_logits.detach(), batch["labels"], cfg).to(t_logits.device)
        return teacher_ce + distillation_loss(s_logits, batch["labels"], t_logits.detach(), w, lam, cfg.temperature, cfg.loss)

    return loss


def _finish(model: VideoClassifier, data: PreparedData, out_dir: Path, result: FitResult, extra: dict) -> dict:
    info = {**extra, "scenario": data.manifest["scenario"], "best_epoch": result.best_epoch,
            "best_val_macro_f1": result.best_val_f1, "epochs_run": result.epochs_run,
            "stopped_early": result.stopped_early, "train_examples_per_s": result.train_examples_per_s,
            "history": result.history}
    save_model(model, out_dir, data.tokenizer, info)
    return info


def train_classifier(
    data: PreparedData, role: str, project: ProjectConfig, out_dir: str | Path, progress: bool = True,
    resume: bool = True, on_epoch_end=None, train_cfg: TrainConfig | None = None,
) -> dict:
    """Cross-entropy training of the teacher (with dense features) or the baseline student."""
    scenario = data.manifest["scenario"]
    cfg = train_cfg or project.train_for(scenario)
    model = new_model(data, project.model, role, cfg.seed)
    result = fit({role: model}, role, ce_loss(role), data, cfg, out_dir, f"{role}[{scenario}]", progress, resume, on_epoch_end)
    return _finish(model, data, Path(out_dir), result, {"role": role, "method": "ce", "train": cfg.model_dump()})


def insample_teacher_outputs(teacher: VideoClassifier, data: PreparedData, calibrated: bool = True) -> TeacherOutputs:
    """The full teacher's logits on the very examples it was trained on (temperature from its validation logits)."""
    train = data.splits["train"]
    out = TeacherOutputs(predict_logits(teacher, train), train.video_ids.clone(),
                         torch.full((len(train),), -1, dtype=torch.int64), "insample",
                         predict_logits(teacher, data.splits["val"]), data.splits["val"].labels.clone())
    return out.recalibrated(calibrated)


def fold_rows(data: PreparedData, num_folds: int, seed: int) -> np.ndarray:
    return fold_assignment(data.splits["train"].labels.numpy(), num_folds, seed)


def train_fold_teacher(
    data: PreparedData, project: ProjectConfig, fold: int, num_folds: int, out_dir: str | Path,
    progress: bool = True, resume: bool = True, train_cfg: TrainConfig | None = None,
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
    result = fit({"teacher": model}, "teacher", ce_loss("teacher"), fold_data, fold_cfg, out,
                 f"teacher fold {fold + 1}/{num_folds} [{scenario}]", progress, resume)
    train = data.splits["train"]
    _atomic_save_tensors({
        "index": held_out, "video_id": train.video_ids[held_out], "trained_on": fold_data.splits["train"].video_ids,
        "logits": predict_logits(model, train.subset(held_out)), "val_logits": predict_logits(model, data.splits["val"]),
    }, out / FOLD_OUTPUTS_FILE)
    return {"fold": fold, "num_folds": num_folds, "held_out": int(len(held_out)), "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run, "best_val_macro_f1": result.best_val_f1}



def combine_fold_outputs(data: PreparedData, fold_dirs: list[str | Path], calibrated: bool = True) -> TeacherOutputs:
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
    return TeacherOutputs(logits, train.video_ids.clone(), folds, "oof", torch.cat(val_logits), val_labels).recalibrated(calibrated)


def compute_teacher_outputs(
    data: PreparedData, project: ProjectConfig, teacher: VideoClassifier, work_dir: str | Path,
    distill_cfg: DistillConfig | None = None, progress: bool = True, resume: bool = True,
    train_cfg: TrainConfig | None = None,
) -> TeacherOutputs:
    """The soft-target source the config asks for: out-of-fold (training the fold teachers here) or in-sample."""
    scenario = data.manifest["scenario"]
    dcfg = distill_cfg or project.distill_for(scenario)
    if dcfg.teacher_outputs == "insample":
        return insample_teacher_outputs(teacher, data, dcfg.calibrate)
    dirs = []
    for fold in range(dcfg.folds):
        d = Path(work_dir) / f"fold{fold}"
        if not (resume and (d / FOLD_OUTPUTS_FILE).exists()):
            train_fold_teacher(data, project, fold, dcfg.folds, d, progress, resume, train_cfg)
        dirs.append(d)
    return combine_fold_outputs(data, dirs, dcfg.calibrate)


def distill_student(
    data: PreparedData, teacher: TeacherOutputs, project: ProjectConfig, out_dir: str | Path,
    distill_cfg: DistillConfig | None = None, progress: bool = True, resume: bool = True,
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
        raise DataContractError(f"teacher outputs have shape {tuple(logits.shape)}, expected {(len(labels), len(data.label_names))}")
    if not torch.equal(teacher.video_ids, train.video_ids):
        raise DataContractError("teacher outputs were computed on another training split (video_ids differ)")
    weights = example_weights(logits, labels, dcfg)
    model = new_model(data, project.model, "student", cfg.seed)
    loss = cached_distill_loss(logits, weights, dcfg)
    result = fit({"student": model}, "student", loss, data, cfg, out_dir, f"{dcfg.method}[{scenario}]", progress, resume)
    return _finish(model, data, Path(out_dir), result, {
        "role": "student", "method": dcfg.method, "distill": dcfg.model_dump(), "train": cfg.model_dump(),
        "mean_weight": float(weights.mean()), "teacher_outputs": teacher.source,
        "teacher_calibration": teacher.calibration,
    })


def train_joint(
    data: PreparedData, project: ProjectConfig, out_dir: str | Path, distill_cfg: DistillConfig | None = None,
    progress: bool = True, resume: bool = True, train_cfg: TrainConfig | None = None,
) -> dict:
    """Teacher and student trained together; returns the student's info (the teacher is saved beside it)."""
    scenario = data.manifest["scenario"]
    cfg = train_cfg or project.train_for(scenario)
    dcfg = distill_cfg or project.distill_for(scenario)
    models = {"teacher": new_model(data, project.model, "teacher", cfg.seed),
              "student": new_model(data, project.model, "student", cfg.seed + 1)}
    result = fit(models, "student", joint_loss(dcfg), data, cfg, out_dir, f"joint-{dcfg.method}[{scenario}]", progress, resume)
    save_model(models["teacher"], Path(out_dir) / "teacher", data.tokenizer, {"role": "teacher", "method": "joint"})
    return _finish(models["student"], data, Path(out_dir), result, {
        "role": "student", "method": f"joint-{dcfg.method}", "distill": dcfg.model_dump(), "train": cfg.model_dump(),
    })


def evaluate_saved_model(model_dir: str | Path, dataset_dir: str | Path, split: str = "test") -> tuple[dict, np.ndarray, SplitTensors]:
    """Metrics, class probabilities and the split's tensors for a saved model on a built dataset."""
    from cpfd.models import load_model

    model = load_model(model_dir)
    tokenizer = load_tokenizer(Path(model_dir) / "tokenizer")
    manifest = read_manifest(dataset_dir)
    tensors = to_tensors(read_split_table(dataset_dir, split), manifest["feature_names"], tokenizer,
                         model.spec.max_title_tokens, None, f"{dataset_dir}/{split}.parquet")
    data = PreparedData(manifest, tokenizer, {split: tensors}, model.spec.max_title_tokens)
    metrics, probs = evaluate_model(model, data, split)
    return metrics, probs, tensors


def evaluate_model(model: VideoClassifier, data: PreparedData, split: str = "test") -> tuple[dict, np.ndarray]:
    """Metrics and class probabilities on a split."""
    probs = predict_logits(model, data.splits[split]).softmax(-1).numpy()
    return classification_metrics(probs, data.splits[split].labels.numpy(), data.label_names), probs
