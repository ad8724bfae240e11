"""Monitoring in Evidently's UI: a local workspace with one project per scenario and one snapshot per
monitoring window (timestamp = the window's end).

Every scenario report carries the job's own numbers (monitoring.series, computed on the whole window)
as ``MonitorValue`` metrics labelled by ``quantity`` and ``arm``; the project's dashboard plots them over
the windows: confidence drift, macro-F1 and label coverage per arm, the A/B difference and verdict.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from evidently._pydantic_compat import PrivateAttr
from evidently.core.metric_types import SingleValueCalculation, SingleValueMetric
from evidently.sdk.models import DashboardModel, DashboardTabModel, PanelMetric, ProjectModel
from evidently.sdk.panels import line_plot_panel

from cpfd.errors import CpfdError
from monitoring.series import scenario_values

PROJECT_PREFIX = "cpfd monitoring: "
UI_HOST = "127.0.0.1"


class MonitorValue(SingleValueMetric):
    """A value the monitoring job computed on the whole window: ``quantity`` of ``arm`` (None: the scenario)."""

    quantity: str
    arm: str | None = None
    _value: float = PrivateAttr(float("nan"))  # not a parameter: a parameter would start a new series per window


class MonitorValueCalculation(SingleValueCalculation[MonitorValue]):
    def calculate(self, context, current_data, reference_data):
        result = self.result(self.metric._value)
        result.widget = []  # plotted by the project's dashboard, not drawn in the report
        return result, None

    def display_name(self) -> str:
        arm = f" of {self.metric.arm}" if self.metric.arm else ""
        return f"{self.metric.quantity}{arm} (monitoring job, whole window)"


def monitor_metrics(result: dict) -> list[MonitorValue]:
    """One metric per value of a scenario's result (monitoring.series.scenario_values)."""
    metrics = []
    for quantity, arm, value in scenario_values(result):
        m = MonitorValue(quantity=quantity, arm=arm)
        m._value = value
        metrics.append(m)
    return metrics


def snapshot_time(until: str) -> datetime:
    """The window's end as a naive UTC time, like Evidently's own snapshot times (naive ``datetime.now()``)."""
    return pd.Timestamp(until).tz_convert("UTC").tz_localize(None).to_pydatetime()


def _series(quantity: str, legend: str = "{{arm}}") -> PanelMetric:
    return PanelMetric(legend=legend, metric="MonitorValue", metric_labels={"quantity": quantity})


def dashboard() -> DashboardModel:
    """The panels of a scenario's project: line plots with a point per window, a series per arm for per-arm
    values. No counters: Evidently's counter shows 0 as "no value"."""
    panels = [
        line_plot_panel("Confidence drift: KS statistic", [_series("ks_statistic")], "live vs offline reference"),
        line_plot_panel("Confidence drift: PSI", [_series("psi")], "live vs offline reference"),
        line_plot_panel(
            "Mean confidence", [_series("confidence_mean"), _series("reference_confidence_mean", "{{arm}} reference")]
        ),
        line_plot_panel("Macro-F1 per arm", [_series("f1")], "on the labelled predictions"),
        line_plot_panel("Label coverage", [_series("label_coverage")], "labelled share of the predictions"),
        line_plot_panel(
            "A/B: treatment - control macro-F1",
            [_series("ab_diff", "difference"), _series("ab_ci_low", "CI low"), _series("ab_ci_high", "CI high")],
            "bootstrap CI, Bonferroni-corrected over the scenarios",
        ),
        line_plot_panel(
            "A/B verdict",
            [_series("ab_verdict", "verdict")],
            "+1 treatment better, 0 no significant difference, -1 worse",
        ),
        line_plot_panel("Failed checks", [_series("failed_checks", "failed checks")], "drift, F1, coverage and A/B"),
    ]
    for p in panels:
        p.size = "half"
    return DashboardModel(tabs=[DashboardTabModel(title="Monitoring", panels=[p.id for p in panels])], panels=panels)


class MonitoringWorkspace:
    """An Evidently workspace folder: ``add`` puts a scenario's snapshot into that scenario's project,
    created with the dashboard on first use.

    Writes through the storage layer that ``evidently.ui.workspace.Workspace`` writes with (``LocalState``):
    opening a ``Workspace`` parses every stored snapshot (about 0.1 s each), a cost that would grow with
    every monitoring run.
    """

    def __init__(self, path: str | Path):
        from evidently.ui.storage.local.base import LocalState

        self.path = str(path)
        self.state = LocalState(self.path)
        self.state.location.makedirs("")
        self.projects = {self.state.read_project(p).name: str(p) for p in self.state.list_projects()}

    def project_id(self, scenario: str) -> str:
        name = PROJECT_PREFIX + scenario
        if name not in self.projects:
            project = self.state.write_project(
                ProjectModel(name=name, description=f"CPFD monitoring of the {scenario} scenario, per window")
            )
            self.state.write_dashboard(project.id, dashboard())
            self.projects[name] = str(project.id)
        return self.projects[name]

    def add(self, scenario: str, snapshot: Any) -> dict[str, str]:
        """Add the snapshot; returns its project and snapshot ids."""
        from evidently.legacy.core import new_id

        project, snapshot_id = self.project_id(scenario), new_id()
        self.state.write_snapshot(project, snapshot_id, snapshot.to_snapshot_model())
        return {"project_id": project, "snapshot_id": str(snapshot_id)}


def ui_config(workspace: str | Path, port: int) -> Any:
    """Evidently's local service over ``workspace`` on the loopback interface, telemetry off."""
    from evidently.ui.service.app import get_config

    if not Path(workspace).is_dir() or not MonitoringWorkspace(workspace).projects:
        raise CpfdError(f"{workspace} holds no Evidently project: run `cpfd monitor` first (--workspace)")
    config = get_config(host=UI_HOST, port=port, workspace=str(workspace))
    config.telemetry.enabled = False
    return config


def serve_ui(config: Any) -> None:
    """Run the UI of ``ui_config`` until interrupted."""
    from evidently.ui.service.app import run

    os.environ["DO_NOT_TRACK"] = "1"  # evidently's own switch for its usage events (evidently.telemetry)
    run(config)
