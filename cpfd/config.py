"""Typed configuration: models, training, distillation, scenarios; YAML in, dotted overrides on top."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cpfd.errors import ConfigError

ModelSize = Literal["tiny", "small", "base"]
WeightingKind = Literal["true_class", "max_prob", "entropy", "correct"]
Normalization = Literal["none", "mean", "mean_clip"]
LossForm = Literal["coupled", "decoupled"]
TeacherOutputsSource = Literal["oof", "insample"]
DistillMethod = Literal["none", "pfd", "cpfd"]
DistillMode = Literal["two_stage", "joint"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class ModelConfig(_Strict):
    """Backbone shared by the student (X-VLM) and the teacher (DF-X-VLM).

    ``size`` picks the preset; explicit fields override it. ``text_pretrained`` and
    ``vision_pretrained`` load a tower with ``from_pretrained`` from a local folder.
    """

    size: ModelSize = "tiny"
    hidden_size: int | None = None
    vision_layers: int | None = None
    text_layers: int | None = None
    fusion_layers: int | None = None
    heads: int | None = None
    patch_size: int | None = None
    dense_hidden: int | None = None
    dropout: float = 0.1
    text_pretrained: str | None = None
    vision_pretrained: str | None = None
    max_title_tokens: int = 16


class TrainConfig(_Strict):
    epochs: int = Field(8, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    patience: int = Field(3, ge=1, description="epochs without a better validation F1 before stopping")
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(None, ge=1, description="torch intra-op threads on CPU")


class DistillConfig(_Strict):
    """How the student learns from the teacher (formulas in ``cpfd/distill.py``).

    ``teacher_outputs``: ``oof`` takes soft targets and confidences from ``folds`` teachers
    cross-fitted on the training split (fold k's teacher never saw the examples it scores);
    ``insample`` from the full teacher on the examples it was trained on. ``calibrate``
    temperature-scales them on the validation split first.
    """

    method: DistillMethod = "cpfd"
    weighting: WeightingKind = "max_prob"
    gamma: float = Field(1.0, gt=0, description="sharpening exponent: w = c**gamma")
    normalize: Normalization = "mean"
    loss: LossForm = "decoupled"
    temperature: float = Field(2.0, gt=0)
    lam: float = Field(0.7, ge=0, le=1)
    teacher_outputs: TeacherOutputsSource = "oof"
    folds: int = Field(3, ge=2, le=10, description="cross-fitting folds for teacher_outputs: oof")
    calibrate: bool = True
    mode: DistillMode = "two_stage"
    warmup_steps: int = Field(0, ge=0, description="joint mode: steps with lam = 0")


class GateConfig(_Strict):
    """Packaging gate: beat the baseline student by a margin, stay near the teacher."""

    min_gain_over_baseline: float = 0.0
    max_gap_to_teacher: float = 0.25
    min_f1: float = 0.0
    require_teacher_better: bool = Field(
        False, description="refuse a teacher not better than the baseline on validation (otherwise: flagged only)")


class ScenarioConfig(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    label_names: list[str] = Field(min_length=2)
    feature_service: str = "teacher_dense_v1"
    description: str = ""
    train: dict[str, Any] = Field(default_factory=dict, description="overrides of TrainConfig")
    distill: dict[str, Any] = Field(default_factory=dict, description="overrides of DistillConfig")
    gate: GateConfig = Field(default_factory=GateConfig)

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    @model_validator(mode="after")
    def _unique_labels(self) -> "ScenarioConfig":
        if len(set(self.label_names)) != len(self.label_names):
            raise ValueError(f"scenario {self.name!r}: label_names must be unique")
        return self


class ProjectConfig(_Strict):
    """Everything a run needs: the scenarios and how to train and distil them."""

    scenarios: list[ScenarioConfig]
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)

    def scenario(self, name: str) -> ScenarioConfig:
        for s in self.scenarios:
            if s.name == name:
                return s
        known = ", ".join(s.name for s in self.scenarios)
        raise ConfigError(f"unknown scenario {name!r}; configured scenarios: {known}")

    def train_for(self, scenario: str) -> TrainConfig:
        return _merged(self.train, self.scenario(scenario).train, f"scenario {scenario} train")

    def distill_for(self, scenario: str) -> DistillConfig:
        return _merged(self.distill, self.scenario(scenario).distill, f"scenario {scenario} distill")


def _merged(base: _Strict, overrides: dict[str, Any], where: str):
    try:
        return type(base).model_validate({**base.model_dump(), **overrides})
    except ValidationError as e:
        raise ConfigError(f"{where}: {_first_error(e)}") from None


RENAMED = {"confidence": "weighting", "normalize_per_scenario": "normalize (none | mean | mean_clip)"}


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    last = str(err["loc"][-1]) if err["loc"] else ""
    if err["type"] == "extra_forbidden" and last in RENAMED:
        return f"{loc}: renamed to {loc.rsplit('.', 1)[0] + '.' if '.' in loc else ''}{RENAMED[last]}"
    return f"{loc}: {err['msg']}"


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b=3`` -> (["a", "b"], 3); values are parsed as YAML scalars."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.path=value")
    key, value = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(value)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {part!r} is not a section")
        node[path[-1]] = value
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> ProjectConfig:
    """Load a project config (YAML); ``None`` gives the embedded default."""
    path = Path(path) if path else default_config_path()
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    data = apply_overrides(data, overrides or [])
    try:
        return ProjectConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"{path}: {_first_error(e)}") from None


def default_config_path() -> Path:
    return Path(__file__).parent / "defaults" / "project.yaml"
