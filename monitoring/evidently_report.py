"""The Evidently reports of a monitoring run: one per scenario (HTML, snapshot JSON, and a snapshot in the scenario's
project of the Evidently workspace) and one of the whole window (the KFP step's HTML artifact).

A report's dataset is the window's values table: one row, a column per value of cpfd.monitoring.series.flat_values
(``<scenario>.<arm>.<quantity>``), the numbers the job computed over every prediction of the window. Its metrics are
``MonitorValue``s reading that table; a check's value (``check_<name>``, 1 = failed) carries the Evidently test
``eq(0)``, so the report's tests fail exactly where the job's checks do. Nothing is computed twice: Evidently renders,
tests, stores and plots the job's statistics (cpfd.monitoring.evidently_ui).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from cpfd.monitoring.series import CHECK_PREFIX, flat_values, scenario_values

TOTALS = ("predictions", "labelled", "failed_checks")


def values_table(summary: dict) -> pd.DataFrame:
    """The window's values as one row (cpfd.monitoring.series.flat_values)."""
    return pd.DataFrame([flat_values(summary)])


def value_metrics(summary: dict, scenario: str | None = None) -> list:
    """``MonitorValue`` metrics of one scenario's values, or (``scenario`` None) of the totals and every scenario;
    checks tested ``eq(0)``, and in the window's report the number of failed checks too."""
    from evidently.tests import eq

    from cpfd.monitoring.evidently_ui import MonitorValue

    def metric(s: str, quantity: str, arm: str | None, tested: bool) -> MonitorValue:
        return MonitorValue(scenario=s, quantity=quantity, arm=arm, tests=[eq(0)] if tested else [])

    names = [scenario] if scenario is not None else list(summary["scenarios"])
    out = [metric("", q, None, q == "failed_checks") for q in TOTALS] if scenario is None else []
    for s in names:
        res = summary["scenarios"][s]
        out += [metric(s, q, arm, q.startswith(CHECK_PREFIX)) for q, arm, _ in scenario_values(res)]
    return out


def run_report(summary: dict, scenario: str | None = None) -> Any:
    """The Evidently snapshot of one scenario (``scenario``) or of the whole window, timestamped with its end."""
    from evidently import DataDefinition, Dataset, Report

    from cpfd.monitoring.evidently_ui import snapshot_time

    values, window = values_table(summary), summary["window"]
    data = Dataset.from_pandas(values, data_definition=DataDefinition(numerical_columns=list(values.columns)))
    status = summary["status"] if scenario is None else summary["scenarios"][scenario]["status"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Evidently's dependencies' deprecation notices
        return Report(value_metrics(summary, scenario)).run(
            current_data=data,
            timestamp=snapshot_time(window["until"]),
            name=f"{scenario or 'all scenarios'} {window['since']} .. {window['until']}",
            tags=[f"status:{status}"],
            metadata={"scenario": scenario or "", "since": window["since"], "until": window["until"]},
        )


def outcomes(snapshot: Any) -> dict[str, str]:
    """The snapshot's test results, ``{test name: SUCCESS | FAIL | ...}``."""
    return {t["name"]: str(getattr(t["status"], "value", t["status"])) for t in snapshot.dict()["tests"]}


def write_scenario_reports(summary: dict, out_dir: Path, workspace: str | Path) -> None:
    """Write <scenario>.html / .json for each scenario with traffic and add it to the Evidently ``workspace``;
    record paths and ids in the summary."""
    from cpfd.monitoring.evidently_ui import MonitoringWorkspace

    out_dir.mkdir(parents=True, exist_ok=True)
    ws = MonitoringWorkspace(workspace)
    summary["workspace"] = ws.path
    for scenario, res in summary["scenarios"].items():
        if not res["n"]:
            continue
        snapshot = run_report(summary, scenario)
        snapshot.save_html(str(out_dir / f"{scenario}.html"))
        snapshot.save_json(str(out_dir / f"{scenario}.json"))
        res["workspace"] = ws.add(scenario, snapshot)
        res["report_html"] = f"{out_dir.name}/{scenario}.html"
        res["snapshot_json"] = f"{out_dir.name}/{scenario}.json"
