"""Experiments through the monitoring job on a real SQLite prediction log: state kept between runs, the
sample-ratio check voiding the verdict, guardrails blocking promotion."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from cpfd.benchmarks.monitoring import START, make_traffic, write_traffic

pytestmark = pytest.mark.integration
DAY = pd.Timedelta(days=1)


def _serving_config(path, control=0.5, treatment=0.5):
    path.write_text(
        yaml.safe_dump(
            {
                "experiment": "ab",
                "scenarios": {
                    "three": {
                        "arms": {
                            "control": {"model": "three-student", "traffic": control},
                            "treatment": {"model": "three-cpfd", "traffic": treatment},
                        }
                    }
                },
            }
        )
    )
    return path


def _day(log, day: int, seed: int, n_control: int, n_treatment: int, accuracy=None):
    from cpfd.predlog import PredictionLog

    preds, labels, ref = make_traffic(
        {"three": 3},
        max(n_control, n_treatment),
        seed=seed,
        accuracy=accuracy,
        start=START + day * DAY,
        label_share=0.9,
    )
    preds["video_id"] += day * 10**6
    labels["video_id"] += day * 10**6
    preds["request_id"] += f"-d{day}"
    keep = (preds["arm"] == "control") & (preds.groupby("arm").cumcount() < n_control) | (
        (preds["arm"] == "treatment") & (preds.groupby("arm").cumcount() < n_treatment)
    )
    preds = preds[keep]
    labels = labels[labels["video_id"].isin(preds["video_id"])]
    write_traffic(PredictionLog(log), preds, labels)
    return ref


def _monitor(tmp_path, log, ref_path, day: int, serving, **experiments):
    from cpfd.monitoring.analysis import run_monitor
    from cpfd.monitoring.settings import load_monitor_config

    cfg = load_monitor_config(
        text=yaml.safe_dump(
            {"experiments": {"serving_config": str(serving), "state_dir": str(tmp_path / "state"), **experiments}}
        )
    )
    since, until = (START + day * DAY).isoformat(), (START + (day + 1) * DAY).isoformat()
    return run_monitor(log, ref_path, since, until, tmp_path / f"out{day}", cfg, evidently=False)


def test_state_is_kept_between_daily_runs_and_a_55_45_split_voids_the_verdict(tmp_path):
    log, ref_path = tmp_path / "log.db", tmp_path / "ref.parquet"
    serving = _serving_config(tmp_path / "serving.yaml")
    ref = _day(log, 0, 1, 500, 500)
    ref.to_parquet(ref_path, index=False)
    first = _monitor(tmp_path, log, ref_path, 0, serving)["experiments"]["three"]
    assert first["srm"]["status"] == "pass" and first["decision"] == "hold", first
    _day(log, 1, 2, 500, 500)
    second = _monitor(tmp_path, log, ref_path, 1, serving)["experiments"]["three"]
    state = json.loads(Path(second["state"]).read_text())
    assert state["start"] == first["start"] and len(state["looks"]) == 2
    assert second["n"] == {"control": 1000, "treatment": 1000}  # cumulative since the start, not the window
    # a broken assignment: 55/45 served while the config says 50/50
    _day(log, 2, 3, 2200, 1800)
    third = _monitor(tmp_path, log, ref_path, 2, serving)
    look = third["experiments"]["three"]
    assert look["srm"]["status"] == "fail" and look["srm"]["pvalue"] < 0.001, look["srm"]
    assert look["decision"] == "invalid" and "sample ratio mismatch" in look["reason"]
    assert "three/experiment_invalid" in third["failed_checks"] and third["status"] == "fail"
    page = (tmp_path / "out2" / "index.html").read_text()  # what a person sees: the decision, SRM, the interval
    assert "Experiments (always-valid" in page and "invalid: verdict void: sample ratio mismatch" in page
    assert (tmp_path / "out2" / "plots" / "experiments.png").stat().st_size > 1000


def test_better_treatment_promotes_only_when_guardrails_pass(tmp_path):
    log, ref_path = tmp_path / "log.db", tmp_path / "ref.parquet"
    serving = _serving_config(tmp_path / "serving.yaml")
    ref = _day(log, 0, 5, 3000, 3000, accuracy={"control": 0.70, "treatment": 0.90})
    ref.to_parquet(ref_path, index=False)
    look = _monitor(tmp_path, log, ref_path, 0, serving, policy={"steps": []})["experiments"]["three"]
    assert look["f1"]["status"] == "better" and look["f1"]["low"] > 0, look["f1"]
    assert look["decision"] == "promote", look
    # the same data with a label-coverage margin of 0 and the treatment's labels withheld: blocked, rolled back
    from cpfd.predlog import PredictionLog

    with PredictionLog(log).engine.begin() as conn:
        conn.exec_driver_sql(
            "DELETE FROM labels WHERE video_id % 3 = 0 AND video_id IN "
            "(SELECT video_id FROM predictions WHERE arm = 'treatment')"
        )
    look = _monitor(
        tmp_path, log, ref_path, 0, serving, state_dir=str(tmp_path / "state2"), guardrails={"label_coverage": 0.0}
    )["experiments"]["three"]
    assert look["guardrails"]["label_coverage"]["status"] == "fail" and look["decision"] == "rollback", look


def _cli_monitor(tmp_path, log, ref_path, serving, policy: dict):
    from typer.testing import CliRunner

    from cpfd.cli.main import app

    mon = tmp_path / "monitor.yaml"
    mon.write_text(yaml.safe_dump({"experiments": {"serving_config": str(serving), "policy": {"act": True, **policy}}}))
    args = ["monitor", "--log", log, "--reference", ref_path, "--since", START.isoformat()]
    args += ["--until", (START + DAY).isoformat(), "--out", tmp_path / "out", "--config", mon, "--no-evidently"]
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_the_policy_ramps_a_better_treatment_and_rolls_back_a_worse_one(tmp_path):
    from cpfd.monitoring.experiments import load_state
    from cpfd.rollout import read_history

    log, ref_path = tmp_path / "log.db", tmp_path / "ref.parquet"
    serving = _serving_config(tmp_path / "serving.yaml")
    _day(log, 0, 7, 3000, 3000, accuracy={"control": 0.75, "treatment": 0.90}).to_parquet(ref_path, index=False)
    res = _cli_monitor(tmp_path, log, ref_path, serving, {"steps": [0.75]})
    assert res.exit_code == 0 and "policy: three: ramp" in res.output, res.output
    (ramp,) = read_history(serving)[1:]
    assert ramp["who"] == "cpfd-monitor" and ramp["traffic_after"] == {"control": 0.25, "treatment": 0.75}
    assert ramp["verdict"]["decision"] == "ramp" and ramp["verdict"]["f1"]["low"] > 0
    # the same traffic read as control <-> treatment: worse, rolled back to control, the experiment concluded
    worse = tmp_path / "worse"
    worse.mkdir()
    serving = _serving_config(worse / "serving.yaml")
    from cpfd.predlog import PredictionLog

    swapped = tmp_path / "log.db"
    with PredictionLog(swapped).engine.begin() as conn:
        conn.exec_driver_sql("UPDATE predictions SET arm = CASE arm WHEN 'control' THEN 'treatment' ELSE 'control' END")
    res = _cli_monitor(worse, swapped, ref_path, serving, {})
    assert res.exit_code == 1 and "policy: three: rollback" in res.output, res.output
    assert read_history(serving)[-1]["traffic_after"] == {"control": 1.0, "treatment": 0.0}
    (state_file,) = (worse / "experiments").glob("*.json")
    assert "rollback by policy" in load_state(state_file)["concluded"]


def test_a_pruned_log_starts_a_new_state_instead_of_reusing_the_old_interval(tmp_path):
    from cpfd.predlog import PredictionLog

    log, ref_path = tmp_path / "log.db", tmp_path / "ref.parquet"
    serving = _serving_config(tmp_path / "serving.yaml")
    _day(log, 0, 1, 500, 500).to_parquet(ref_path, index=False)
    first = _monitor(tmp_path, log, ref_path, 0, serving)["experiments"]["three"]
    PredictionLog(log).prune((START + DAY).isoformat())
    _day(log, 1, 2, 300, 300)
    second = _monitor(tmp_path, log, ref_path, 1, serving)["experiments"]["three"]
    state = json.loads(Path(second["state"]).read_text())
    assert second["state"] == first["state"] and len(state["looks"]) == 1 and "new state" in state["note"]
    assert state["start"] == (START + DAY).isoformat(timespec="microseconds")
    assert Path(first["state"] + ".superseded").is_file()


def test_a_recreated_log_starts_a_new_state(tmp_path):
    log, ref_path = tmp_path / "log.db", tmp_path / "ref.parquet"
    serving = _serving_config(tmp_path / "serving.yaml")
    _day(log, 0, 1, 500, 500).to_parquet(ref_path, index=False)
    first = _monitor(tmp_path, log, ref_path, 0, serving)["experiments"]["three"]
    log.unlink()  # as `make run` does: a new log at the same path, as many rows or more
    _day(log, 0, 9, 600, 600)
    again = _monitor(tmp_path, log, ref_path, 0, serving)["experiments"]["three"]
    state = json.loads(Path(again["state"]).read_text())
    assert again["state"] == first["state"] and len(state["looks"]) == 1 and "recreated" in state["note"]
    assert again["n"] == {"control": 600, "treatment": 600}
