"""The two-stage run of one scenario, in one place: teacher, baseline student, gain estimate, fold teachers, teacher
outputs (calibrated), distilled student.

Every stage writes into a folder of the work folder named by a key over everything that decides its output (the
dataset's training rows, the model, training and distillation settings that stage reads, and the keys of the stages
it reads), so a rerun reuses what still holds and retrains what a changed setting invalidates. ``cpfd train run`` and
the quality benchmark call it; the KFP components call the same recipes step by step.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from cpfd.config import DistillConfig, ProjectConfig, TrainConfig
from cpfd.conventions import WEIGHTS_FILE
from cpfd.data.tensors import PreparedData
from cpfd.errors import ConfigError
from cpfd.teacher_outputs import TeacherOutputs
from cpfd.training.distributed import barrier, is_main
from cpfd.training.estimate import ESTIMATE_FILE, GainEstimate, estimate_gain

OUTPUTS_FILE = "teacher_outputs.safetensors"
# what the teacher outputs depend on (calibration is refitted on load: it reads only the stored validation logits)
OUTPUT_FIELDS = ("teacher_outputs", "folds", "hint")
# the distillation settings a student depends on (the estimate too: it distils with them)
STUDENT_FIELDS = (
    "method",
    "weighting",
    "gamma",
    "normalize",
    "loss",
    "temperature",
    "lam",
    "calibrate",
    "hint",
    "hint_weight",
    "pool_weight",
    "pool_ratio",
)


def stage_key(*parts: object) -> str:
    """A short, stable hash of JSON-able parts."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def data_key(data: PreparedData) -> str:
    """What identifies a dataset's training rows: scenario, labels, features and every split's video ids."""
    ids = {name: split.video_ids.tolist() for name, split in data.splits.items()}
    m = data.manifest
    return stage_key(m["scenario"], m["label_names"], m.get("feature_names"), m.get("modalities"), ids)


def model_key(model_dir: Path) -> str:
    """A saved model's identity: its spec and training record (a retrained model at the same path gets a new key)."""
    from cpfd.conventions import CONFIG_FILE

    return stage_key((Path(model_dir) / CONFIG_FILE).read_text())


@dataclass
class Stages:
    """The work folder of one scenario's run and the settings every stage's key reads."""

    data: PreparedData
    project: ProjectConfig
    work: Path
    train: TrainConfig
    progress: bool = True
    resume: bool = True
    say: Callable[[str], None] = print

    def folder(self, stage: str, *parts: object) -> Path:
        key = stage_key(self.project.model.model_dump(), self.train.model_dump(), *parts)
        return self.work / f"{stage}-{key}"

    @cached_property
    def base(self) -> str:
        """The dataset's key, hashed once (it reads every split's video ids: every stage and trial asks for it)."""
        return data_key(self.data)

    def pool_key(self, dcfg: DistillConfig) -> str | None:
        """The unlabelled pool's key when distillation reads it (its video ids), else None."""
        from cpfd.training.recipes import uses_pool

        if not uses_pool(self.data, dcfg):
            return None
        assert self.data.pool is not None
        return stage_key(self.data.pool.video_ids.tolist())

    def classifier(self, role: str) -> Path:
        """The teacher (role ``teacher``) or the baseline student (``student``), trained with cross-entropy."""
        from cpfd.training.recipes import train_classifier

        out = self.folder("teacher" if role == "teacher" else "baseline", self.base, role)
        if not (self.resume and (out / WEIGHTS_FILE).exists()):
            train_classifier(self.data, role, self.project, out, self.progress, self.resume, train_cfg=self.train)
        return out

    def estimate(self, teacher_dir: Path, dcfg: DistillConfig) -> GainEstimate:
        from cpfd.models import load_model

        out = self.folder("estimate", self.base, model_key(teacher_dir), dcfg.model_dump(include=set(STUDENT_FIELDS)))
        cached = out / ESTIMATE_FILE
        if self.resume and cached.exists():
            return GainEstimate(**{k: v for k, v in json.loads(cached.read_text()).items() if k != "verdict"})
        est = estimate_gain(self.data, load_model(teacher_dir), self.project, out, dcfg, self.train, self.progress)
        if is_main():  # under torchrun every rank computed the same estimate; rank 0 writes it
            cached.write_text(json.dumps(est.to_dict(), indent=2))
        barrier()
        return est

    def outputs(self, teacher_dir: Path, dcfg: DistillConfig) -> tuple[TeacherOutputs, Path]:
        """The soft targets ``dcfg`` asks for; fold teachers live beside them, shared by every hint setting."""
        from cpfd.models import load_model
        from cpfd.training.recipes import compute_teacher_outputs

        fields = dcfg.model_dump(include=set(OUTPUT_FIELDS))
        out = self.folder("outputs", self.base, model_key(teacher_dir), fields, self.pool_key(dcfg))
        path = out / OUTPUTS_FILE
        if self.resume and path.exists():
            loaded = TeacherOutputs.load(path, self.data.splits["train"].video_ids)
            return loaded.recalibrated(dcfg.calibrate), out
        folds = self.folder("folds", self.base, model_key(teacher_dir), dcfg.folds)
        outputs = compute_teacher_outputs(
            self.data, self.project, load_model(teacher_dir), folds, dcfg, self.progress, self.resume, self.train
        )
        if is_main():
            out.mkdir(parents=True, exist_ok=True)
            outputs.save(path)
        barrier()
        return outputs, out

    def student(self, outputs: TeacherOutputs, outputs_dir: Path, dcfg: DistillConfig) -> tuple[Path, dict]:
        from cpfd.conventions import model_metadata
        from cpfd.training.recipes import distill_student

        out = self.folder("distilled", self.base, outputs_dir.name, dcfg.model_dump(include=set(STUDENT_FIELDS)))
        if self.resume and (out / WEIGHTS_FILE).exists():
            return out, model_metadata(out)
        info = distill_student(self.data, outputs, self.project, out, dcfg, self.progress, self.resume, self.train)
        return out, info


@dataclass
class RunResult:
    """Where a scenario's run put its models, and what it decided on the way."""

    teacher: Path
    baseline: Path
    student: Path
    student_info: dict
    outputs: TeacherOutputs
    estimate: GainEstimate | None
    skipped_folds: bool


def resolve_outputs_source(
    dcfg: DistillConfig, estimate: GainEstimate | None, say: Callable[[str], None]
) -> DistillConfig:
    """``dcfg`` with in-sample outputs when the estimate says no gain and the config asks to skip the fold teachers."""
    if estimate is None:
        return dcfg
    say(f"gain estimate: {estimate.summary()} (probe: {estimate.n_probe} rows, {estimate.seconds:.0f}s)")
    if estimate.verdict == "no gain" and dcfg.skip_folds_when_no_gain and dcfg.teacher_outputs == "oof":
        say(f"the estimate says no gain: the {dcfg.folds} fold teachers are skipped; distilling from in-sample outputs")
        return dcfg.model_copy(update={"teacher_outputs": "insample"})
    return dcfg


def estimate_refused(data: PreparedData, dcfg: DistillConfig) -> str | None:
    """Why the gain estimate is not made for this run, or None: it predicts labelled-only distillation and was
    checked against those runs only, so a run that distils from an unlabelled pool gets no prediction."""
    from cpfd.training.recipes import uses_pool

    if not uses_pool(data, dcfg):
        return None
    assert data.pool is not None
    return (
        f"not made: this run distils from an unlabelled pool of {len(data.pool)} videos, and the estimate was checked "
        "against labelled-only runs only (docs/decision.md)"
    )


def run_two_stage(
    data: PreparedData,
    project: ProjectConfig,
    work: str | Path,
    progress: bool = True,
    resume: bool = True,
    say: Callable[[str], None] = print,
    train_cfg: TrainConfig | None = None,
    distill_cfg: DistillConfig | None = None,
) -> RunResult:
    """Teacher, baseline, gain estimate (``distill.estimate_gain``), fold teachers (unless skipped: ``distill.
    skip_folds_when_no_gain``), calibrated teacher outputs and the distilled student of the scenario's config."""
    scenario = data.manifest["scenario"]
    stages = Stages(data, project, Path(work), train_cfg or project.train_for(scenario), progress, resume, say)
    dcfg = distill_cfg or project.distill_for(scenario)
    if dcfg.method == "none":
        raise ConfigError("distill.method: none trains no student; run `cpfd train student` for the baseline alone")
    teacher, baseline = stages.classifier("teacher"), stages.classifier("student")
    refused = estimate_refused(data, dcfg) if dcfg.estimate_gain else None
    if refused:
        say(f"gain estimate: {refused}")
    estimate = stages.estimate(teacher, dcfg) if dcfg.estimate_gain and not refused else None
    resolved = resolve_outputs_source(dcfg, estimate, say)
    outputs, outputs_dir = stages.outputs(teacher, resolved)
    student, info = stages.student(outputs, outputs_dir, resolved)
    return RunResult(teacher, baseline, student, info, outputs, estimate, resolved is not dcfg)
