"""Monitoring on controlled prediction logs: drift, F1 vs scikit-learn, A/B calls, edge cases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cpfd.benchmarks.monitoring import START, make_traffic, write_traffic

SCENARIOS = {"bin": 2, "three": 3, "four": 4}
SINCE, UNTIL = START.isoformat(), (START + pd.Timedelta(days=2)).isoformat()


def _log(tmp_path, preds, labels, reference):
    from cpfd.predlog import PredictionLog

    write_traffic(PredictionLog(tmp_path / "log.db"), preds, labels)
    reference.to_parquet(tmp_path / "reference.parquet", index=False)
    return tmp_path / "log.db", tmp_path / "reference.parquet"


def _window(preds, labels):
    """The frame monitoring reads from the log, built in memory (for the many-seed statistics tests)."""
    lab = labels.rename(columns={"label": "true_label"})
    return (
        preds.drop(columns=["true_label"])
        .rename(columns={"label": "predicted"})
        .merge(lab, on=["video_id", "scenario"], how="left")
        .assign(true_label=lambda d: d["true_label"].astype(float))
    )


def _cli(*args):
    from typer.testing import CliRunner

    from cpfd.cli.main import app

    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    """No drift, equal arms: the whole job through the CLI, Evidently included."""
    tmp = tmp_path_factory.mktemp("clean")
    preds, labels, ref = make_traffic(SCENARIOS, 1500, seed=0)
    log, reference = _log(tmp, preds, labels, ref)
    res = _cli(
        "monitor", "--log", log, "--reference", reference, "--since", SINCE, "--until", UNTIL, "--out", tmp / "out"
    )
    return res, json.loads((tmp / "out" / "summary.json").read_text()), preds, labels, tmp / "out"


@pytest.mark.integration
def test_no_drift_every_check_passes(clean_run):
    res, summary, _, _, out = clean_run
    assert res.exit_code == 0, res.output
    assert summary["status"] == "pass" and summary["failed_checks"] == []
    for s, r in summary["scenarios"].items():
        assert set(r["arms"]) == {"control", "treatment"}
        assert all(v == "pass" for sl in r["arms"].values() for v in sl["checks"].values()), (s, r["arms"])
        assert r["ab"]["verdict"] == "no significant difference"
        for f in (r["report_html"], r["snapshot_json"]):
            assert (out / f).stat().st_size > 1000 and f in (out / "index.html").read_text()
    assert (out / "plots" / "ab.png").exists() and (out / "plots" / "confidence.png").exists()


@pytest.mark.integration
def test_reports_go_to_an_evidently_workspace_next_to_the_output(clean_run):
    from cpfd.monitoring.evidently_ui import PROJECT_PREFIX, MonitoringWorkspace

    res, summary, _, _, out = clean_run
    workspace = out.parent / "evidently_workspace"
    assert summary["workspace"] == str(workspace) and f"cpfd monitor-ui --workspace {workspace}" in res.output
    assert f"cpfd monitor-ui --workspace {workspace}" in (out / "index.html").read_text()
    projects = MonitoringWorkspace(workspace).projects
    assert set(projects) == {PROJECT_PREFIX + s for s in SCENARIOS}
    for s, r in summary["scenarios"].items():
        assert r["workspace"]["project_id"] == projects[PROJECT_PREFIX + s]
        assert (
            workspace / projects[PROJECT_PREFIX + s] / "snapshots" / f"{r['workspace']['snapshot_id']}.json"
        ).exists()


@pytest.mark.integration
def test_report_f1_equals_sklearn_on_the_slice(clean_run):
    from sklearn.metrics import f1_score, precision_score, recall_score

    _, summary, preds, labels, _ = clean_run
    w = _window(preds, labels).dropna(subset=["true_label"])
    for (s, arm), g in w.groupby(["scenario", "arm"]):
        sl = summary["scenarios"][s]["arms"][arm]
        y, p = g["true_label"].astype(int), g["predicted"]
        assert sl["labelled"] == len(g)
        assert sl["f1"] == pytest.approx(f1_score(y, p, average="macro"), abs=1e-12)
        assert sl["precision"] == pytest.approx(precision_score(y, p, average="macro"), abs=1e-12)
        assert sl["recall"] == pytest.approx(recall_score(y, p, average="macro"), abs=1e-12)


def _report_values(snapshot: dict) -> dict:
    """(scenario, arm, quantity) -> value of every metric of an Evidently snapshot (``save_json``'s format)."""
    out = {}
    for m in snapshot["metrics"]:
        params = m["config"]
        assert params["type"].endswith(":MonitorValue"), params  # nothing but the job's values
        out[(params["scenario"], params.get("arm"), params["quantity"])] = m["value"]
    return out


@pytest.mark.integration
def test_evidently_reports_show_the_jobs_values_and_test_its_checks(tmp_path):
    """Drift is computed once, by the job: each scenario's Evidently snapshot carries exactly the summary's values,
    and its tests fail exactly where the job's checks failed."""
    from cpfd.monitoring.analysis import run_monitor
    from cpfd.monitoring.series import scenario_values

    preds, labels, ref = make_traffic(SCENARIOS, 600, seed=6, drift={"three": 0.5})
    log, reference = _log(tmp_path, preds, labels, ref)
    summary = run_monitor(log, reference, SINCE, UNTIL, tmp_path / "out", workspace=tmp_path / "ws")
    assert summary["status"] == "fail"
    for s, r in summary["scenarios"].items():
        snap = json.loads((tmp_path / "out" / r["snapshot_json"]).read_text())
        got = _report_values(snap)
        assert got == {(s, arm, q): pytest.approx(v, abs=1e-12) for q, arm, v in scenario_values(r)}
        failed = sorted(t["name"] for t in snap["tests"] if t["status"] == "FAIL")
        assert failed == sorted(
            f"{s} / {c.split('/')[0]}: check_{c.split('/')[1]} (1 = failed): Equal 0.000"
            for c in r["failed_checks"]
            if c != "ab"
        ), s
        assert (s == "three") == bool(failed)


@pytest.mark.integration
def test_drift_in_one_scenario_fails_exactly_that_scenario(tmp_path):
    preds, labels, ref = make_traffic(SCENARIOS, 1500, seed=1, drift={"three": 0.5})
    log, reference = _log(tmp_path, preds, labels, ref)
    res = _cli(
        "monitor",
        "--log",
        log,
        "--reference",
        reference,
        "--since",
        SINCE,
        "--until",
        UNTIL,
        "--out",
        tmp_path / "out",
        "--no-evidently",
    )
    assert res.exit_code == 1, res.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert {s for s, r in summary["scenarios"].items() if r["status"] == "fail"} == {"three"}
    assert sorted(summary["failed_checks"]) == sorted(
        f"three/{arm}/{c}" for arm in ("control", "treatment") for c in ("confidence_ks", "confidence_psi")
    )


def test_better_treatment_is_significant():
    from cpfd.monitoring.analysis import analyse
    from cpfd.monitoring.settings import load_monitor_config

    preds, labels, ref = make_traffic(SCENARIOS, 1500, seed=2, accuracy={"control": 0.75, "treatment": 0.85})
    result = analyse(_window(preds, labels), ref, load_monitor_config())
    for r in result.values():
        assert r["ab"]["verdict"] == "treatment better" and r["ab"]["ci_low"] > 0, r["ab"]
        assert r["ab"]["status"] == "pass"
    worse = analyse(
        _window(preds, labels).replace({"arm": {"control": "treatment", "treatment": "control"}}),
        ref,
        load_monitor_config(),
    )
    assert all(r["ab"]["verdict"] == "treatment worse" and r["status"] == "fail" for r in worse.values())


def test_equal_arms_no_difference_called_in_90_percent_of_seeds():
    from cpfd.monitoring.analysis import ab_verdict, slice_metrics
    from cpfd.monitoring.settings import load_monitor_config

    cfg = load_monitor_config()
    called = 0
    for seed in range(20):
        preds, labels, ref = make_traffic({"three": 3}, 1000, seed=100 + seed, reference_n=200)
        w = _window(preds, labels)
        arms = {a: slice_metrics(w[w["arm"] == a], ref, 3, cfg) for a in ("control", "treatment")}
        called += ab_verdict(arms, cfg)["significant"]
    assert called <= 2, f"a difference was called in {called} of 20 seeds with equal arms"


@pytest.mark.integration
def test_empty_window_no_labels_and_missing_arm_are_explained(tmp_path):
    preds, labels, ref = make_traffic(SCENARIOS, 400, seed=3)
    preds = preds[~((preds["scenario"] == "four") & (preds["arm"] == "treatment"))]  # an arm with no traffic
    labels = labels[labels["scenario"] != "three"]  # a scenario with no labels yet
    ref.loc[ref["scenario"] == "bin", "arm"] = "treatment"  # a labelled arm without reference rows
    log, reference = _log(tmp_path, preds, labels, ref)

    res = _cli(
        "monitor",
        "--log",
        log,
        "--reference",
        reference,
        "--since",
        "2030-01-01",
        "--until",
        "2030-01-02",
        "--out",
        tmp_path / "empty",
    )
    assert res.exit_code == 1 and "no predictions in" in res.output
    assert "no predictions in" in (tmp_path / "empty" / "index.html").read_text()

    from cpfd.monitoring.analysis import run_monitor

    summary = run_monitor(log, reference, SINCE, UNTIL, tmp_path / "out")
    three, four = summary["scenarios"]["three"], summary["scenarios"]["four"]
    assert three["arms"]["control"]["checks"]["f1"] == "skipped" and "f1" not in three["arms"]["control"]
    assert any("no labels yet" in m for m in three["messages"])
    assert three["ab"]["status"] == "skipped" and "0 labelled predictions" in three["ab"]["message"]
    assert four["arms"]["treatment"]["n"] == 0 and "no traffic" in four["arms"]["treatment"]["messages"][0]
    assert four["ab"]["status"] == "skipped" and "'treatment' has no traffic" in four["ab"]["message"]
    assert any("control: no offline reference" in m for m in summary["scenarios"]["bin"]["messages"])
    assert summary["scenarios"]["bin"]["arms"]["control"]["checks"]["confidence_ks"] == "skipped"
    assert summary["status"] == "pass"  # missing labels, traffic or reference are reported, not alerts
    assert (tmp_path / "out" / "scenarios" / "three.html").exists() and (
        tmp_path / "out" / "scenarios" / "four.json"
    ).exists()

    bad = _cli("monitor", "--log", tmp_path / "nope.db", "--reference", reference, "--since", SINCE, "--until", UNTIL)
    assert bad.exit_code != 0 and "nope.db does not exist" in str(bad.exception or bad.output)


def test_psi_and_bootstrap_basics():
    from cpfd.monitoring import stats

    rng = np.random.default_rng(0)
    x = rng.normal(size=5000)
    assert stats.psi(x, rng.normal(size=5000)) < 0.02
    assert stats.psi(x, rng.normal(1.0, 1, size=5000)) > 0.5
    cm = np.array([[400, 100], [100, 400]])
    res = stats.bootstrap_f1_diff(cm, cm, 1000, 0.05)
    assert res["diff"] == 0 and res["ci_low"] < 0 < res["ci_high"] and not res["significant"]


def test_monitoring_pipeline_compiles_and_reads_back(tmp_path):
    import yaml

    from cpfd.components.image import project_image
    from cpfd.pipelines.monitoring_pipeline import PIPELINE_NAME, compile_monitoring_pipeline

    spec = yaml.safe_load(compile_monitoring_pipeline(tmp_path / "monitoring.yaml").read_text())
    assert spec["pipelineInfo"]["name"] == PIPELINE_NAME
    assert set(spec["root"]["inputDefinitions"]["parameters"]) == {
        "log_url",
        "reference_uri",
        "since",
        "until",
        "window_hours",
        "config_yaml",
        "fail_on_alert",
    }
    container = spec["deploymentSpec"]["executors"]["exec-monitor"]["container"]
    assert container["image"] == project_image()
    assert "pip install" not in " ".join(container["command"] + container.get("args", []))
    assert (
        spec["deploymentSpec"]["executors"]["exec-importer"]["importer"]["typeSchema"]["schemaTitle"]
        == "system.Dataset"
    )


@pytest.mark.integration
def test_kfp_step_writes_its_page_per_scenario_metrics_and_a_workspace(tmp_path):
    """The component's own code on plain stand-ins for its artifacts (a real kfp Metrics)."""
    from types import SimpleNamespace

    from kfp.dsl import Metrics

    from cpfd.components.monitor import monitor
    from cpfd.monitoring.evidently_ui import PROJECT_PREFIX, MonitoringWorkspace

    preds, labels, ref = make_traffic({"bin": 2, "three": 3}, 300, seed=5, drift={"three": 0.5})
    log, reference = _log(tmp_path, preds, labels, ref)
    metrics = Metrics(name="metrics", uri=str(tmp_path / "metrics"), metadata={})
    report_dir = tmp_path / "report_dir"
    outputs = monitor.python_func(
        log_url=str(log),
        reference=SimpleNamespace(path=str(reference)),
        since=SINCE,
        until=UNTIL,
        window_hours=24.0,
        config_yaml="",
        fail_on_alert=False,
        report=SimpleNamespace(path=str(tmp_path / "report.html")),
        report_dir=SimpleNamespace(path=str(report_dir)),
        metrics=metrics,
    )
    summary = json.loads((report_dir / "summary.json").read_text())
    assert outputs.status == summary["status"] == "fail"
    page = (tmp_path / "report.html").read_text()  # Evidently's own report of the window, every scenario in it
    assert all(f"{s} / treatment: check_f1 (1 = failed)" in page for s in ("bin", "three"))
    assert "window: failed_checks" in page and (report_dir / "index.html").exists()
    m, three = metrics.metadata, summary["scenarios"]["three"]
    assert m["predictions"] == len(preds) and m["failed_checks"] == len(summary["failed_checks"]) > 0
    for s, r in summary["scenarios"].items():
        assert m[f"{s}.failed_checks"] == len(r["failed_checks"]) and m[f"{s}.ab_diff"] == r["ab"]["diff"]
        for arm, sl in r["arms"].items():
            for q in ("n", "label_coverage", "confidence_mean", "ks_statistic", "psi", "f1"):
                assert m[f"{s}.{arm}.{q}"] == sl[q], (s, arm, q)
    assert m["three.treatment.psi"] > 0.2 and three["arms"]["treatment"]["checks"]["confidence_psi"] == "fail"
    assert set(MonitoringWorkspace(report_dir / "evidently_workspace").projects) == {
        PROJECT_PREFIX + s for s in ("bin", "three")
    }  # inside the report_dir artifact: the step's other folders are not kept


@pytest.mark.integration
@pytest.mark.slow
def test_monitoring_pipeline_runs_on_the_kfp_local_runner(tmp_path):
    from kfp import local

    from cpfd.pipelines.monitoring_pipeline import build_monitoring_pipeline

    preds, labels, ref = make_traffic({"three": 3}, 300, seed=4, drift={"three": 0.5})
    log, reference = _log(tmp_path, preds, labels, ref)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    out = build_monitoring_pipeline()(
        log_url=str(log), reference_uri=str(reference), since=SINCE, until=UNTIL, fail_on_alert=False
    )
    page = Path(out.output.path).read_text()
    # Evidently's report of the window: the drifted scenario's checks as failed Evidently tests
    assert "three / treatment: check_confidence_psi (1 = failed): Actual value 1.000" in page


@pytest.mark.integration
def test_reference_from_a_saved_model(clickbait_data, tiny_project, clickbait_dataset, tmp_path):
    from cpfd.evaluate import evaluate_model
    from cpfd.models import build_model, make_spec, save_model
    from cpfd.monitoring.reference import read_reference, reference_from_model

    t = clickbait_data.splits["train"]
    spec = make_spec(
        tiny_project.model,
        "student",
        clickbait_data.label_names,
        int(t.frames.shape[2]),
        int(t.frames.shape[1]),
        len(clickbait_data.tokenizer),
        max_title_tokens=clickbait_data.max_tokens,
    )
    model = build_model(spec).eval()
    save_model(model, tmp_path / "m", clickbait_data.tokenizer, {"scenario": "clickbait", "role": "student"})
    path = reference_from_model(tmp_path / "m", clickbait_dataset, arm="treatment")
    assert path == tmp_path / "m" / "reference.parquet"
    ref = read_reference(tmp_path / "m")
    _, probs = evaluate_model(model, clickbait_data, "test")
    assert (ref["scenario"] == "clickbait").all() and (ref["arm"] == "treatment").all()
    np.testing.assert_allclose(ref["confidence"], probs.max(1), rtol=1e-5)
    assert ref["video_id"].tolist() == clickbait_data.splits["test"].video_ids.tolist()


def test_drift_content_fades_frames_and_titles():
    from cpfd.monitoring.simulate import drift_content

    rng = np.random.default_rng(0)
    frames = np.full((4, 2, 8, 8, 3), 200, np.uint8)
    titles = ["ka lo mi ru te", "sa no vi pe zu", "da fo gi ha je", "wu ka lo mi ru"]
    same_f, same_t = drift_content(frames, titles, 0.0, rng)
    assert same_f is frames and same_t == titles
    f, t = drift_content(frames, titles, 0.9, rng)
    assert abs(f.astype(float).mean() - 200) > 30 and t != titles and [len(x.split()) for x in t] == [5] * 4


@pytest.mark.integration
@pytest.mark.slow
def test_simulator_through_a_real_service_then_monitor(synthetic_dir, tiny_project, tmp_path):
    """Train one tiny student, serve it as both arms with `bentoml serve`, simulate traffic, monitor it."""
    import os
    import subprocess
    import sys

    import yaml

    from cpfd.config import TrainConfig
    from cpfd.data.build import build_scenario_dataset
    from cpfd.data.tensors import prepare_data
    from cpfd.monitoring.analysis import run_monitor
    from cpfd.monitoring.reference import reference_from_model
    from cpfd.monitoring.simulate import simulate
    from cpfd.serving.launch import ServerProcess
    from cpfd.training.recipes import train_classifier

    build_scenario_dataset(
        synthetic_dir / "videos.parquet", synthetic_dir / "features.parquet", "clickbait", tiny_project, tmp_path / "ds"
    )
    data = prepare_data(tmp_path / "ds", tiny_project.model)
    train_classifier(
        data,
        "student",
        tiny_project,
        tmp_path / "m",
        progress=False,
        train_cfg=TrainConfig(epochs=1, batch_size=32, threads=1),
    )
    reference = reference_from_model(tmp_path / "m", tmp_path / "ds")
    home = tmp_path / "bentoml"
    code = (
        "import sys; from cpfd.components.packaging import package_model; "
        "[package_model(sys.argv[1], n) for n in ('cb-control', 'cb-treatment')]"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "m")],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True"},
    )
    assert out.returncode == 0, out.stderr
    config = tmp_path / "serving.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "experiment": "sim",
                "prediction_log": "predictions.db",
                "torch_threads": 1,
                "scenarios": {
                    "clickbait": {
                        "arms": {
                            "control": {"model": "cb-control", "traffic": 0.5},
                            "treatment": {"model": "cb-treatment", "traffic": 0.5},
                        }
                    }
                },
            }
        )
    )
    with ServerProcess(
        config, log_path=tmp_path / "server.log", env={"BENTOML_HOME": str(home)}, timeout=120
    ) as server:
        res = simulate(
            server.url,
            tmp_path / "predictions.db",
            synthetic_dir / "videos.parquet",
            per_scenario=40,
            fraction=0.3,
            drift_scenario="clickbait",
            drift=0.5,
            label_share=0.5,
            batch_size=16,
            log=lambda m: None,
        )
    assert res["predictions"] == 40 and set(res["arms"]) == {"control", "treatment"}
    summary = run_monitor(
        tmp_path / "predictions.db", reference, res["since"], res["until"], tmp_path / "out", evidently=False
    )
    assert summary["n_predictions"] == 40 and summary["n_labelled"] == res["labelled"] > 0
    arms = summary["scenarios"]["clickbait"]["arms"]
    assert sum(a["n"] for a in arms.values()) == 40 and all("ks_statistic" in a for a in arms.values())
