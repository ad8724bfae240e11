"""Plain helpers the component bodies import at run time (inside the project image).

Only KFP glue, unit-testable without KFP: the project config from the pipeline parameter, resolved
once per scenario into the typed config artifact every step reads, the fold-teacher plan and its
fan-in check, classification metrics on an artifact. The gate lives in ``cpfd.gate``, the report in
``cpfd.components.reports``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cpfd.components.reports import roc_points
from cpfd.config import DistillConfig, ProjectConfig, ScenarioConfig, config_from_dict, validated
from cpfd.errors import ConfigError

PIPELINE_METHODS = ("pfd", "cpfd")  # what the distill step trains (distill.method "none" is not a distillation)


def project_from_yaml(text: str) -> ProjectConfig:
    """The project config passed to the pipeline as a YAML string (a JSON-able parameter), on top of the embedded
    defaults as a config file is (empty: the defaults)."""
    from cpfd.config import read_yaml, with_defaults

    where = "pipeline parameter config_yaml"
    return config_from_dict(with_defaults(read_yaml(where, text=text)), where)


def resolve_scenario_config(
    project: ProjectConfig, scenario: str, method: str = "", pool_weight: float = -1.0, pool_ratio: float = -1.0
) -> ProjectConfig:
    """A scenario's effective config, resolved once: the project's sections, the scenario's train/distill overrides,
    then the run's ``method`` (empty: the config's distill.method), ``pool_weight`` and ``pool_ratio`` (negative:
    the config's distill.pool_weight / pool_ratio; a ``pool_ratio`` of 0: the whole pool every epoch).

    The result is a ProjectConfig of this one scenario with its overrides folded into the top-level ``train`` and
    ``distill`` (the scenario's own override dicts are empty), so ``train_for``/``distill_for`` return the resolved
    sections and nothing downstream can apply an override twice."""
    if method and method not in PIPELINE_METHODS:
        raise ConfigError(
            f"pipeline parameter method must be empty (the config's distill.method) or one of "
            f"{', '.join(PIPELINE_METHODS)}, got {method!r}"
        )
    scen = project.scenario(scenario)
    distill = project.distill_for(scenario)
    run: dict[str, str | float | None] = {"method": method} if method else {}
    if pool_weight >= 0:
        run["pool_weight"] = pool_weight
    if pool_ratio >= 0:  # 0: the whole pool every epoch (the config's null)
        run["pool_ratio"] = pool_ratio or None
    if run:
        distill = validated(DistillConfig, {**distill.model_dump(), **run}, f"scenario {scenario} distill")
    if distill.method not in PIPELINE_METHODS:
        raise ConfigError(
            f"scenario {scenario}: distill.method is {distill.method!r}; the pipeline distils with "
            f"{' or '.join(PIPELINE_METHODS)} (set it in the config or with the method parameter)"
        )
    return config_from_dict(
        {
            "scenarios": [{**scen.model_dump(), "train": {}, "distill": {}}],
            "model": project.model.model_dump(),
            "train": project.train_for(scenario).model_dump(),
            "distill": distill.model_dump(),
            "feature_store": project.feature_store.model_dump(),
        },
        f"scenario {scenario} (resolved)",
    )


def write_scenario_config(resolved: ProjectConfig, artifact, method_source: str = "config") -> None:
    """The resolved config as the step's typed artifact: JSON in the file, its main choices as metadata."""
    scen = _only_scenario(resolved, "resolved config")
    Path(artifact.path).parent.mkdir(parents=True, exist_ok=True)
    Path(artifact.path).write_text(json.dumps(resolved.model_dump(mode="json"), indent=1))
    d, t = resolved.distill, resolved.train
    artifact.metadata.update(
        {
            "scenario": scen.name,
            "method": d.method,
            "method_source": method_source,
            "weighting": d.weighting,
            "normalize": d.normalize,
            "loss": d.loss,
            "teacher_outputs": d.teacher_outputs,
            "folds": d.folds,
            "calibrate": d.calibrate,
            "model_size": resolved.model.size,
            "epochs": t.epochs,
            "seed": t.seed,
            "feature_service": scen.feature_service,
            "classes": scen.num_classes,
        }
    )


def read_scenario_config(artifact) -> tuple[ProjectConfig, ScenarioConfig]:
    """The one reader of the resolved config artifact (or its path): the validated config and its one scenario.

    ``project.train`` and ``project.distill`` are the scenario's resolved sections."""
    path = Path(getattr(artifact, "path", artifact))
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"resolved config {path}: cannot read it ({type(e).__name__}: {e})") from None
    project = config_from_dict(data, f"resolved config {path}")
    scen = _only_scenario(project, f"resolved config {path}")
    if scen.train or scen.distill:
        raise ConfigError(
            f"resolved config {path}: scenario {scen.name} still has overrides; write it with resolve_scenario_config"
        )
    return project, scen


def _only_scenario(project: ProjectConfig, where: str) -> ScenarioConfig:
    if len(project.scenarios) != 1:
        raise ConfigError(f"{where}: expected the config of one scenario, found {[s.name for s in project.scenarios]}")
    return project.scenarios[0]


def fold_plan_items(project: ProjectConfig) -> list[int]:
    """The fold-teacher loop's items (``project``: a resolved config): fold k for k in 0..distill.folds-1 for
    out-of-fold teacher outputs, a single -1 (nothing to train) for in-sample ones."""
    if project.distill.teacher_outputs == "insample":
        return [-1]
    return list(range(project.distill.folds))


def fold_output_paths(artifacts: list[tuple[str, dict]], scenario: str, folds: int) -> list[str]:
    """The fold teachers' output folders (``(path, metadata)`` of the collected artifacts), checked against the
    config's distill.folds: exactly one trained output for every fold 0..folds-1."""
    got = sorted(int(m.get("fold", -1)) for _, m in artifacts)
    if any(m.get("skipped") for _, m in artifacts):
        raise ConfigError(
            f"scenario {scenario}: the fold teacher steps were skipped (in-sample plan) but distill.teacher_outputs "
            f"is oof with distill.folds = {folds}"
        )
    declared = sorted({int(m.get("num_folds", -1)) for _, m in artifacts})
    if got != list(range(folds)) or declared != [folds]:
        raise ConfigError(
            f"scenario {scenario}: distill.folds = {folds} in the config, but the fold teacher steps produced "
            f"{len(artifacts)} output(s) for folds {got} of {declared} fold(s)"
        )
    return [path for path, _ in sorted(artifacts, key=lambda a: int(a[1]["fold"]))]


def log_classification(artifact, metrics: dict, probs: np.ndarray, labels: np.ndarray) -> None:
    """Confusion matrix on a ClassificationMetrics artifact, plus the ROC curve for a binary task."""
    artifact.log_confusion_matrix(metrics["label_names"], metrics["confusion_matrix"])
    if probs.shape[1] == 2:
        artifact.log_roc_curve(*roc_points(probs[:, 1], labels == 1))


def log_gate_metrics(metrics, f1: dict, val_f1: dict, gap, ece_distilled: float, calibration: dict, passed: bool):
    """The evaluate step's metrics: test and validation F1 per model, the gain, gap closed, calibration, the gate."""
    for name, value in f1.items():
        metrics.log_metric(f"f1_{name}", value)
    for name, value in val_f1.items():
        metrics.log_metric(f"val_f1_{name}", value)
    metrics.log_metric("teacher_better_on_val", int(val_f1["teacher"] > val_f1["baseline"]))
    metrics.log_metric("gain_over_baseline", f1["distilled"] - f1["baseline"])
    if gap is not None:  # None when the teacher is not better than the baseline
        metrics.log_metric("gap_closed", gap)
    metrics.log_metric("ece_distilled", ece_distilled)
    for key in ("ece_before", "ece_after"):
        if key in calibration:
            metrics.log_metric(f"teacher_{key}", calibration[key])
    metrics.log_metric("gate_passed", int(passed))


def gate_markdown(scenario: str, f1: dict, val_f1: dict, calibration: dict, source: str, why: str) -> str:
    """The evaluate step's Markdown: F1 per model on validation and test, the teacher outputs' calibration, why."""
    cal_line = (
        f"Teacher outputs ({source}): validation ECE {calibration['ece_before']:.4f} -> "
        f"{calibration['ece_after']:.4f} at temperature {calibration['temperature']:.2f}.\n\n"
        if "ece_before" in calibration
        else ""
    )
    return (
        f"# Gate: {scenario}\n\n| model | validation macro-F1 | test macro-F1 |\n|---|---|---|\n"
        + "".join(f"| {k} | {val_f1[k]:.4f} | {v:.4f} |\n" for k, v in f1.items())
        + f"\n{cal_line}{why}\n"
    )
