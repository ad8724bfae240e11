"""Plain helpers the component bodies import at run time (inside the project image).

Only KFP glue, unit-testable without KFP: config from the pipeline parameter, the fold-teacher plan
and its fan-in check, classification metrics on an artifact. The gate lives in ``cpfd.gate``, the
report in ``cpfd.reports``.
"""

from __future__ import annotations

import numpy as np

from cpfd.config import ProjectConfig
from cpfd.errors import ConfigError
from cpfd.reports import roc_points


def project_from_yaml(text: str) -> ProjectConfig:
    """The project config passed to the pipeline as a YAML string (a JSON-able parameter)."""
    from cpfd.config import config_from_dict, read_yaml

    return config_from_dict(read_yaml("pipeline parameter config_yaml", text=text), "pipeline parameter config_yaml")


def fold_plan_items(project: ProjectConfig, scenario: str) -> list[dict]:
    """The fold-teacher loop's items: one per fold of distill.folds for out-of-fold teacher outputs, a single
    ``fold: -1`` (nothing to train) for in-sample ones."""
    dcfg = project.distill_for(scenario)
    if dcfg.teacher_outputs == "insample":
        return [{"scenario": scenario, "fold": -1}]
    return [{"scenario": scenario, "fold": k} for k in range(dcfg.folds)]


def fold_output_paths(artifacts: list[tuple[str, dict]], scenario: str, folds: int) -> list[str]:
    """The fold teachers' output folders (``(path, metadata)`` of the collected artifacts), checked against the
    config's distill.folds: exactly one trained output for every fold 0..folds-1."""
    got = sorted(int(m.get("fold", -1)) for _, m in artifacts)
    if any(m.get("skipped") for _, m in artifacts):
        raise ConfigError(f"scenario {scenario}: the fold teacher steps were skipped (in-sample plan) but distill.teacher_outputs "
                          f"is oof with distill.folds = {folds}")
    declared = sorted({int(m.get("num_folds", -1)) for _, m in artifacts})
    if got != list(range(folds)) or declared != [folds]:
        raise ConfigError(f"scenario {scenario}: distill.folds = {folds} in the config, but the fold teacher steps produced "
                          f"{len(artifacts)} output(s) for folds {got} of {declared} fold(s)")
    return [path for path, _ in sorted(artifacts, key=lambda a: int(a[1]["fold"]))]


def log_classification(artifact, metrics: dict, probs: np.ndarray, labels: np.ndarray) -> None:
    """Confusion matrix on a ClassificationMetrics artifact, plus the ROC curve for a binary task."""
    artifact.log_confusion_matrix(metrics["label_names"], metrics["confusion_matrix"])
    if probs.shape[1] == 2:
        artifact.log_roc_curve(*roc_points(probs[:, 1], labels == 1))
