"""Monitoring in Evidently, on its public API: the job's values as an Evidently metric, the workspace with one project
per scenario and one snapshot per monitoring window (timestamp = the window's end), and Evidently's own UI over it.

The statistics are computed once, by the job (cpfd.monitoring.analysis): Evidently shows them. Every value of a window
(cpfd.monitoring.series: ``<scenario>.<arm>.<quantity>``) is one ``MonitorValue`` metric, labelled by ``scenario``,
``quantity`` and ``arm``, which reads its value from the window's one-row values table (the report's dataset), so
the value is data, not a parameter, and every window extends the same series of the project's dashboard. Each check
is a value too (``check_<name>``: 1 failed, 0 passed) with an Evidently test ``eq(0)``: the report's test results are
the job's checks. ``evidently ui --workspace DIR`` (``cpfd monitor-ui``) serves the workspace.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from evidently.core.metric_types import SingleValueCalculation, SingleValueMetric
from evidently.sdk.models import DashboardModel, DashboardPanelPlot, DashboardTabModel, PanelMetric
from evidently.sdk.panels import line_plot_panel

from cpfd.errors import CpfdError
from cpfd.monitoring.series import CHECK_PREFIX

PROJECT_PREFIX = "cpfd monitoring: "
UI_HOST = "127.0.0.1"
DASHBOARD_TAB = "Monitoring"


def value_column(scenario: str, quantity: str, arm: str | None = None) -> str:
    """The values table's column of one value: cpfd.monitoring.series.flat_values' key (``""`` scenario: a total)."""
    return ".".join(p for p in (scenario, arm, quantity) if p)


class MonitorValue(SingleValueMetric):
    """A value the monitoring job computed on the whole window: ``quantity`` of ``arm`` (None: the scenario) of
    ``scenario`` (empty: the window's totals), read from the report's values table."""

    scenario: str = ""
    quantity: str
    arm: str | None = None


class MonitorValueCalculation(SingleValueCalculation[MonitorValue]):
    def calculate(self, context, current_data, reference_data):
        m = self.metric
        frame = current_data.as_dataframe()
        return self.result(float(frame[value_column(m.scenario, m.quantity, m.arm)].iloc[0])), None

    def display_name(self) -> str:
        m = self.metric
        where = " / ".join(p for p in (m.scenario, m.arm) if p) or "window"
        meaning = " (1 = failed)" if m.quantity.startswith(CHECK_PREFIX) else ""
        return f"{where}: {m.quantity}{meaning}"


def snapshot_time(until: str) -> datetime:
    """The window's end as a naive UTC time, like Evidently's own snapshot times (naive ``datetime.now()``)."""
    return pd.Timestamp(until).tz_convert("UTC").tz_localize(None).to_pydatetime()


def _series(quantity: str, legend: str = "{{arm}}") -> PanelMetric:
    return PanelMetric(legend=legend, metric="MonitorValue", metric_labels={"quantity": quantity})


def panels() -> list[DashboardPanelPlot]:
    """The panels of a scenario's project: line plots with a point per window, a series per arm for per-arm
    values. No counters: Evidently's counter shows 0 as "no value"."""
    out = [
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
        line_plot_panel(
            "Experiment: always-valid macro-F1 interval",
            [_series("exp_f1_diff", "difference"), _series("exp_f1_low", "low"), _series("exp_f1_high", "high")],
            "treatment - control since the experiment's start; the interval may be read at every window",
        ),
        line_plot_panel(
            "Experiment decision",
            [_series("exp_decision", "decision")],
            "2 promote, 1 ramp, 0 hold, -1 rollback, -2 invalid (sample-ratio mismatch)",
        ),
        line_plot_panel("Failed checks", [_series("failed_checks", "failed checks")], "drift, F1, coverage and A/B"),
    ]
    for p in out:
        p.size = "half"
    return out


def dashboard() -> DashboardModel:
    """A scenario project's dashboard: one tab with the panels. (Written whole with ``Workspace.save_dashboard``:
    evidently 0.7.23's ``ProjectDashboard.add_panel`` lists a panel twice in a tab that already exists.)"""
    plots = panels()
    return DashboardModel(tabs=[DashboardTabModel(title=DASHBOARD_TAB, panels=[p.id for p in plots])], panels=plots)


class MonitoringWorkspace:
    """An Evidently workspace folder (``evidently.ui.workspace.Workspace``): ``add`` puts a scenario's snapshot into
    that scenario's project, created with its dashboard on first use."""

    def __init__(self, path: str | Path):
        from evidently.ui.workspace import Workspace

        self.path = str(path)
        self.workspace = Workspace.create(self.path)
        self.projects = {p.name: str(p.id) for p in self.workspace.list_projects()}

    def project_id(self, scenario: str) -> str:
        name = PROJECT_PREFIX + scenario
        if name not in self.projects:
            project = self.workspace.create_project(
                name, description=f"CPFD monitoring of the {scenario} scenario, per window"
            )
            self.workspace.save_dashboard(project.id, dashboard())
            self.projects[name] = str(project.id)
        return self.projects[name]

    def add(self, scenario: str, snapshot: Any) -> dict[str, str]:
        """Add the snapshot (``Workspace.add_run``); returns its project and snapshot ids."""
        ref = self.workspace.add_run(self.project_id(scenario), snapshot)
        return {"project_id": str(ref.project_id), "snapshot_id": str(ref.id)}


def ui_command(workspace: str | Path, port: int) -> list[str]:
    """``evidently ui`` over ``workspace`` on the loopback interface (this interpreter's evidently)."""
    if not Path(workspace).is_dir() or not MonitoringWorkspace(workspace).projects:
        raise CpfdError(f"{workspace} holds no Evidently project: run `cpfd monitor` first (--workspace)")
    return [sys.executable, "-m", "evidently.cli", "ui", "--workspace", str(workspace), "--host", UI_HOST] + [
        "--port",
        str(port),
    ]


def ui_environment() -> dict[str, str]:
    """The UI's environment: ``DO_NOT_TRACK`` set, evidently's own switch for its usage events."""
    return {**os.environ, "DO_NOT_TRACK": "1"}


def serve_ui(command: list[str]) -> None:
    """Replace this process with ``command`` (``ui_command``): Evidently's UI until interrupted."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(command[0], command, ui_environment())
