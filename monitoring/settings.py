"""Monitoring thresholds: monitoring/config.yaml, validated; a user file overrides any key."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from cpfd.config import StrictModel, deep_merge, read_yaml, validated
from cpfd.conventions import CONTROL_ARM, TREATMENT_ARM
from cpfd.errors import ConfigError

DEFAULT_CONFIG = Path(__file__).with_name("config.yaml")


class Arms(StrictModel):
    control: str = CONTROL_ARM
    treatment: str = TREATMENT_ARM


class Drift(StrictModel):
    ks_pvalue: float = Field(0.01, gt=0, lt=1)
    ks_min_statistic: float = Field(0.1, ge=0, le=1)
    psi_max: float = Field(0.2, gt=0)
    psi_bins: int = Field(10, ge=2)
    class_psi_max: float = Field(0.2, gt=0)


class Quality(StrictModel):
    min_labelled: int = Field(100, ge=1)
    min_f1: float = Field(0.0, ge=0, le=1)
    max_f1_drop: float = Field(0.10, ge=0, le=1)
    min_label_coverage: float = Field(0.0, ge=0, le=1)


class AB(StrictModel):
    alpha: float = Field(0.05, gt=0, lt=1)
    resamples: int = Field(1000, ge=100)
    fail_on: Literal["worse", "not_better"] = "worse"
    correction: Literal["bonferroni", "none"] = "bonferroni"


class Guardrails(StrictModel):
    """Non-inferiority margins of the treatment against the control (a failed guardrail blocks promotion and
    rolls back; one not yet shown non-inferior holds)."""

    latency_p99_ms: float | None = Field(25.0, ge=0, description="treatment p99 latency may exceed control's by this")
    label_coverage: float | None = Field(0.05, ge=0, le=1, description="treatment label coverage may trail by this")
    confidence_psi: float | None = Field(
        0.1, ge=0, description="treatment confidence PSI (against its reference) may exceed control's by this"
    )
    alpha: float = Field(0.05, gt=0, lt=1)


class Policy(StrictModel):
    """What `cpfd monitor --act` (or ``act: true``) does with a decision, as Argo Rollouts / Flagger analyses do."""

    act: bool = False
    steps: list[float] = Field(default_factory=lambda: [0.5], description="treatment shares to ramp through")
    who: str = "cpfd-monitor"


class Experiments(StrictModel):
    enabled: bool = True
    state_dir: str = Field("", description="experiment state files ('' = experiments next to --out)")
    serving_config: str = Field("", description="serving config whose traffic shares are tested ('' = no SRM)")
    design_labelled: int = Field(2000, ge=10, description="labelled units, both arms, the sequence is tuned for")
    srm_alpha: float = Field(0.001, gt=0, lt=1)
    guardrails: Guardrails = Field(default_factory=Guardrails)
    policy: Policy = Field(default_factory=Policy)


class EvidentlyOpts(StrictModel):
    workspace: str = ""


class MonitorConfig(StrictModel):
    arms: Arms = Field(default_factory=Arms)
    drift: Drift = Field(default_factory=Drift)
    quality: Quality = Field(default_factory=Quality)
    ab: AB = Field(default_factory=AB)
    empty_window_fails: bool = True
    experiments: Experiments = Field(default_factory=Experiments)
    evidently: EvidentlyOpts = Field(default_factory=EvidentlyOpts)


def load_monitor_config(path: str | Path | None = None, text: str | None = None) -> MonitorConfig:
    """The defaults in monitoring/config.yaml, with the keys of the file ``path`` (or the YAML ``text``) on top."""
    data = read_yaml("monitoring config", DEFAULT_CONFIG)
    where = "monitoring config (text)" if text is not None else f"monitoring config {path}"
    if path is not None:
        if not Path(path).exists():
            raise ConfigError(f"{where} does not exist")
        data = deep_merge(data, read_yaml(where, path))
    elif text:
        data = deep_merge(data, read_yaml(where, text=text))
    return validated(MonitorConfig, data, where)
