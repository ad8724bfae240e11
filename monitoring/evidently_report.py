"""One Evidently report (HTML) and snapshot (JSON) per scenario.

Every arm gets its own columns (``confidence__<arm>``, ``predicted__<arm>``, and for labelled rows
``target__<arm>`` / ``labelled_pred__<arm>`` as a named classification), null on the other arms'
rows: per-arm drift and classification metrics in one report, without GroupBy. The current data is
a uniform sample of at most ``evidently.max_rows`` rows of the scenario's window. The report also carries
the job's whole-window values (monitoring.evidently_ui.MonitorValue), is timestamped with the window's
end and goes into the scenario's project of the Evidently workspace.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from monitoring.settings import MonitorConfig
from monitoring.slices import reference_slice


def _key(arm: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", arm)


def _wide(rows: pd.DataFrame, arm_of: np.ndarray, arms: list[str], true_col: str) -> pd.DataFrame:
    """Stack one block per arm into arm-specific columns (others null)."""
    df = pd.DataFrame(index=range(len(rows)))
    for a in arms:
        m = arm_of == a
        lab = m & rows[true_col].notna().to_numpy()
        df[f"confidence__{_key(a)}"] = np.where(m, rows["confidence"].to_numpy(), np.nan)
        df[f"predicted__{_key(a)}"] = pd.Series(np.where(m, rows["predicted"].astype(str), None), dtype=object)
        df[f"target__{_key(a)}"] = pd.Series(
            np.where(lab, rows[true_col].astype("Int64").astype(str), None), dtype=object
        )
        df[f"labelled_pred__{_key(a)}"] = pd.Series(np.where(lab, rows["predicted"].astype(str), None), dtype=object)
    return df


def scenario_report(
    cur: pd.DataFrame, reference: pd.DataFrame, scenario: str, result: dict, window: dict, cfg: MonitorConfig
):
    """The Evidently snapshot of one scenario (its ``result`` from the job, the ``window`` of the summary),
    and the per-arm values Evidently computed.

    Two-class scenarios are a BinaryClassification with positive class "1" (Evidently's F1Score is
    then the positive class's F1; the summary's ``f1`` is always macro).
    """
    from evidently import BinaryClassification, DataDefinition, Dataset, MulticlassClassification, Report
    from evidently.metrics import F1ByLabel, F1Score, MeanValue, Precision, Recall, ValueDrift

    from monitoring.evidently_ui import monitor_metrics, snapshot_time

    num_classes = result["num_classes"]
    arms = sorted(cur["arm"].unique())
    refs = {a: reference_slice(reference, scenario, a) for a in arms}
    ref_rows = pd.concat([r for r in refs.values()], ignore_index=True)
    ref_arm = np.concatenate([np.full(len(r), a, dtype=object) for a, r in refs.items()])
    current = _wide(cur.reset_index(drop=True), cur["arm"].to_numpy(), arms, "true_label")
    ref_df = (
        _wide(ref_rows.assign(true_label=ref_rows["label"]), ref_arm, arms, "true_label") if len(ref_rows) else None
    )

    metrics, classes = [], []
    d = cfg.drift
    for a in arms:
        k = _key(a)
        metrics.append(MeanValue(column=f"confidence__{k}"))
        if len(refs[a]):
            metrics += [
                ValueDrift(column=f"confidence__{k}", method="ks", threshold=d.ks_pvalue),
                ValueDrift(column=f"confidence__{k}", method="psi", threshold=d.psi_max),
                ValueDrift(column=f"predicted__{k}", method="psi", threshold=d.class_psi_max),
            ]
        # with a reference, Evidently also scores it: an arm without reference rows would break the report
        if current[f"target__{k}"].notna().any() and (ref_df is None or len(refs[a])):
            cols = {"target": f"target__{k}", "prediction_labels": f"labelled_pred__{k}", "name": k}
            classes.append(
                BinaryClassification(**cols, pos_label="1") if num_classes == 2 else MulticlassClassification(**cols)
            )
            metrics += [
                F1Score(classification_name=k, conf_matrix=False),
                Precision(classification_name=k),
                Recall(classification_name=k),
                F1ByLabel(classification_name=k),
            ]
    metrics += monitor_metrics(result)
    definition = DataDefinition(
        numerical_columns=[c for c in current if c.startswith("confidence__")],
        categorical_columns=[c for c in current if not c.startswith("confidence__")],
        classification=classes or None,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # evidently warns about the nulls that mark other arms' rows
        snapshot = Report(metrics).run(
            current_data=Dataset.from_pandas(current, data_definition=definition),
            reference_data=Dataset.from_pandas(ref_df, data_definition=definition) if ref_df is not None else None,
            timestamp=snapshot_time(window["until"]),
            name=f"{scenario} {window['since']} .. {window['until']}",
            tags=[f"status:{result['status']}"],
            metadata={"scenario": scenario, "since": window["since"], "until": window["until"]},
        )
    values: dict[str, dict] = {a: {} for a in arms}
    by_key = {_key(a): a for a in arms}
    for m in snapshot.dict()["metrics"]:
        cfg_ = m["config"]
        k = (cfg_.get("column") or "").split("__", 1)[-1] or cfg_.get("classification_name")
        if k not in by_key or not isinstance(m["value"], (int, float)):
            continue
        name = cfg_["type"].rsplit(":", 1)[-1]
        if name == "ValueDrift":
            name = f"drift_{'class' if cfg_['column'].startswith('predicted') else 'confidence'}_{cfg_['method']}"
        values[by_key[k]][name] = float(m["value"])
    return snapshot, values


def write_scenario_reports(
    window: pd.DataFrame,
    reference: pd.DataFrame,
    summary: dict,
    cfg: MonitorConfig,
    out_dir: Path,
    workspace: str | Path,
) -> None:
    """Write <scenario>.html / .json for each scenario with traffic and add it to the Evidently ``workspace``;
    record paths, ids and values in the summary."""
    from monitoring.evidently_ui import MonitoringWorkspace

    out_dir.mkdir(parents=True, exist_ok=True)
    ws = MonitoringWorkspace(workspace)
    summary["workspace"] = ws.path
    rng = np.random.default_rng(cfg.evidently.seed)
    for scenario, res in summary["scenarios"].items():
        cur = window[window["scenario"] == scenario]
        if cur.empty:
            continue
        if len(cur) > cfg.evidently.max_rows:
            cur = cur.iloc[np.sort(rng.choice(len(cur), cfg.evidently.max_rows, replace=False))]
            res["messages"].append(
                f"Evidently report on a uniform sample of {cfg.evidently.max_rows} of {res['n']} predictions"
            )
        snapshot, values = scenario_report(cur, reference, scenario, res, summary["window"], cfg)
        snapshot.save_html(str(out_dir / f"{scenario}.html"))
        snapshot.save_json(str(out_dir / f"{scenario}.json"))
        res["workspace"] = ws.add(scenario, snapshot)
        res["report_html"] = f"{out_dir.name}/{scenario}.html"
        res["snapshot_json"] = f"{out_dir.name}/{scenario}.json"
        res["evidently_rows"] = int(len(cur))
        for a, v in values.items():
            res["arms"][a]["evidently"] = v
