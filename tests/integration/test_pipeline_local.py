"""The whole Kubeflow pipeline on the kfp.local SubprocessRunner: tiny model, two scenarios, real
Feast join, Great Expectations gate, fold teachers in a nested loop fanned into the teacher
outputs (out-of-fold for one scenario, in-sample for the other), each scenario's config resolved
once (its own distill.method), BentoML model store, the monitoring reference of both arms handed
over through the pipeline's outputs; the packaging gate's both paths; a failing data gate that
stops its branch."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]
POOL_ID_OFFSET = 900_000_000


def informative_features(synthetic_dir, out):
    """The synthetic tables with clickbait's privileged features made to carry the label (within each column's
    interquartile range, so the data gate still passes): the gate now refuses a teacher that does not beat the
    baseline on validation, and tiny models on the small synthetic set do not reliably learn one that does. Clickbait
    also gets an unlabelled pool as large as its labelled set."""
    import numpy as np

    out.mkdir()
    (out / "frames").symlink_to(synthetic_dir / "frames")
    videos = pd.read_parquet(synthetic_dir / "videos.parquet").set_index("video_id")
    features = pd.read_parquet(synthetic_dir / "features.parquet")
    # clickbait's unlabelled pool: its videos again under new ids, with a null label and their feature rows
    pool = videos[videos["scenario"] == "clickbait"].reset_index()
    pool = pool.assign(video_id=pool["video_id"] + POOL_ID_OFFSET, label=pd.NA)
    table = pd.concat([videos.reset_index().astype({"label": "Int64"}), pool], ignore_index=True)
    table.to_parquet(out / "videos.parquet", index=False)
    pool_features = features[features["video_id"].isin(pool["video_id"] - POOL_ID_OFFSET)]
    label = features["video_id"].map(videos["label"]).to_numpy()
    clickbait = (features["video_id"].map(videos["scenario"]) == "clickbait").to_numpy()
    rng = np.random.default_rng(0)
    for col in [c for c in features.columns if c.startswith("dense_")][:8]:
        lo, hi = features[col].quantile([0.25, 0.75])
        rows = clickbait & features[col].notna().to_numpy()
        values = np.where(label[rows] == 1, hi, lo) + rng.normal(0, 0.05 * (hi - lo), int(rows.sum()))
        features.loc[rows, col] = values.astype(features[col].dtype)
    pool_features = features.loc[pool_features.index].assign(video_id=lambda d: d["video_id"] + POOL_ID_OFFSET)
    pd.concat([features, pool_features], ignore_index=True).to_parquet(out / "features.parquet", index=False)
    return out


@pytest.fixture(scope="module")
def local_run(synthetic_dir, tiny_project, tmp_path_factory):
    """clickbait (informative privileged features, out-of-fold teacher outputs, 3 folds) with a gate it passes,
    originality (in-sample teacher outputs, PFD in its own config) with an impossible margin; no run-time method."""
    from cpfd.pipelines.cpfd_pipeline import PipelineOptions
    from cpfd.pipelines.runner import pipeline_arguments, run_local

    project = tiny_project.model_copy(deep=True)
    project.train = project.train.model_copy(update={"epochs": 4, "lr": 5e-3})
    project.scenario("clickbait").gate = project.scenario("clickbait").gate.model_copy(
        update={"min_gain_over_baseline": -1.0, "max_gap_to_teacher": 1.0}
    )
    project.scenario("originality").gate = project.scenario("originality").gate.model_copy(
        update={"min_gain_over_baseline": 1.0}
    )
    project.scenario("originality").distill = {"teacher_outputs": "insample", "method": "pfd"}
    assert project.distill_for("clickbait").teacher_outputs == "oof" and project.distill_for("clickbait").folds == 3
    root = tmp_path_factory.mktemp("kfp")
    data = informative_features(synthetic_dir, root / "data")
    args = pipeline_arguments(
        data / "videos.parquet",
        data / "features.parquet",
        project,
        ["clickbait", "originality"],
        bentoml_home=root / "bentoml",
    )
    lines: list[str] = []
    run = run_local(args, root / "pipeline", PipelineOptions(parallelism=2), echo=lines.append)
    return run, root, lines


def test_passing_scenario_is_packaged_with_metrics(local_run):
    run, root, lines = local_run
    assert any("teacher clickbait: val macro-F1" in line for line in lines)  # progress reached the caller
    gates = {s["scenario"]: s["gate"] for s in run.summaries}
    assert gates["clickbait"]["passed"] is True
    assert [p["scenario"] for p in run.packages] == ["clickbait"]
    tags = run.packages[0]["tags"]
    assert tags["treatment"].startswith("clickbait-cpfd:") and tags["control"].startswith("clickbait-student:")
    assert run.packages[0]["method"] == "cpfd" and run.packages[0]["bentoml_home"] == str(root / "bentoml")
    for tag in tags.values():
        name, version = tag.split(":")
        stored = root / "bentoml" / "models" / name / version
        assert (stored / "model.safetensors").exists() and (stored / "cpfd_model.json").exists()
        assert json.loads((stored / "cpfd_model.json").read_text())["spec"]["dense_features"] == []

    iteration = next(p.parent.parent for p in run.run_dir.glob("*/package/packaged"))
    model_meta = json.loads((iteration / "distill" / "executor_output.json").read_text())["artifacts"]["model"][
        "artifacts"
    ][0]["metadata"]
    assert (
        model_meta["method"] == "cpfd"
        and model_meta["scenario"] == "clickbait"
        and model_meta["framework"] == "pytorch"
    )
    assert model_meta["arm"] == "treatment"
    gate_out = json.loads((iteration / "evaluate" / "executor_output.json").read_text())
    cls = gate_out["artifacts"]["classification"]["artifacts"][0]["metadata"]
    assert cls["confusionMatrix"]["annotationSpecs"] == [{"displayName": "ok"}, {"displayName": "clickbait"}]
    assert sum(sum(r["row"]) for r in cls["confusionMatrix"]["rows"]) > 0
    assert cls["confidenceMetrics"][0] == {"falsePositiveRate": 0.0, "recall": 0.0, "confidenceThreshold": 1.0}


def test_both_arms_reference_is_handed_over_through_the_pipeline_outputs(local_run):
    """make_reference ran after packaging; the run's packages output names the reference folder (no folder layout
    needed), one file per arm with the test split's predictions; the table's rows carry the handover."""
    import pandas as pd

    from cpfd.monitoring.reference import read_reference

    run, _, lines = local_run
    pkg = run.packages[0]
    ref = read_reference(pkg["reference"])
    it = _iterations(run)["clickbait"]
    test_rows = _meta(it / "build-dataset", "dataset")["rows"]["test"]
    assert sorted(pkg["reference_files"].values()) == ["clickbait-control.parquet", "clickbait-treatment.parquet"]
    assert ref.groupby("arm").size().to_dict() == {"control": test_rows, "treatment": test_rows}
    assert set(ref["scenario"]) == {"clickbait"} and ref["confidence"].between(0, 1).all()
    assert pkg["reference_uri"] and pkg["reference"].startswith(str(run.run_dir))
    meta = _meta(it / "make-reference", "reference")
    assert meta["treatment_tag"] == pkg["tags"]["treatment"] and meta["control_tag"] == pkg["tags"]["control"]
    ids = set(pd.read_parquet(it / "build-dataset" / "dataset" / "test.parquet", columns=["video_id"])["video_id"])
    assert set(ref["video_id"]) == ids
    rows = {r["scenario"]: r for r in run.summaries}
    assert rows["clickbait"]["package"] == pkg and rows["originality"]["package"] is None
    assert any("reference clickbait: " in line for line in lines)


def test_each_step_reads_the_config_resolved_once(local_run):
    """build_dataset resolved each scenario's config (its own distill.method, no run-time override); the distilled
    student and the report follow it."""
    run, _, _ = local_run
    its = _iterations(run)
    conf = {s: _meta(it / "build-dataset", "config") for s, it in its.items()}
    assert conf["clickbait"]["method"] == "cpfd" and conf["originality"]["method"] == "pfd"
    assert conf["originality"]["teacher_outputs"] == "insample" and conf["clickbait"]["folds"] == 3
    assert all(c["method_source"] == "config" for c in conf.values())
    assert _meta(its["originality"] / "distill", "model")["method"] == "pfd"
    assert {s["scenario"]: s["method"] for s in run.summaries} == {"clickbait": "cpfd", "originality": "pfd"}
    assert (its["originality"] / "not-packaged").is_dir() and not (its["clickbait"] / "not-packaged").exists()
    # no "no gain" skip here: the config the estimate step decided is the resolved one
    for scenario, it in its.items():
        decided = _meta(it / "estimate-gain", "decided")
        assert {k: decided[k] for k in conf[scenario]} == conf[scenario], scenario


def _iterations(run) -> dict:
    """scenario -> its iteration folder of the scenario loop."""
    out = {}
    for it in run.run_dir.glob("for-loop-1-iteration-*"):
        meta = json.loads((it / "build-dataset" / "executor_output.json").read_text())
        out[meta["artifacts"]["dataset"]["artifacts"][0]["metadata"]["scenario"]] = it
    return out


def _meta(step_dir, name: str) -> dict:
    return json.loads((step_dir / "executor_output.json").read_text())["artifacts"][name]["artifacts"][0]["metadata"]


def test_fold_teachers_fan_into_out_of_fold_teacher_outputs(local_run):
    import torch

    from cpfd.teacher_outputs import FOLD_OUTPUTS_FILE, TeacherOutputs

    run, _, lines = local_run
    it = _iterations(run)["clickbait"]
    folds = sorted(it.glob("*/train-fold-teacher"))
    assert len(folds) == 3 and {p.parent.parent for p in folds} == {it}  # nested inside this scenario's iteration
    metas = [_meta(p, "fold_outputs") for p in folds]
    assert sorted(int(m["fold"]) for m in metas) == [0, 1, 2]
    assert all(m["scenario"] == "clickbait" and int(m["num_folds"]) == 3 and not m["skipped"] for m in metas)
    for p in folds:
        assert (p / "fold_outputs" / FOLD_OUTPUTS_FILE).is_file() and not (p / "fold_outputs" / "checkpoint").exists()
    assert sum(int(m["held_out"]) for m in metas) == _meta(it / "build-dataset", "dataset")["rows"]["train"]

    soft = _meta(it / "teacher-outputs", "train_logits")
    assert soft["source"] == "oof" and int(soft["fold_teachers"]) == 3 and soft["scenario"] == "clickbait"
    assert soft["temperature"] > 0 and {"nll_before", "nll_after", "ece_before", "ece_after"} <= set(soft)
    assert soft["nll_after"] <= soft["nll_before"] + 1e-6  # the temperature minimises validation NLL
    outputs = TeacherOutputs.load(it / "teacher-outputs" / "train_logits")
    assert outputs.source == "oof" and set(outputs.folds.tolist()) == {0, 1, 2}
    assert len(outputs.logits) == soft["rows"] and torch.isfinite(outputs.logits).all()
    assert outputs.temperature == pytest.approx(soft["temperature"])

    distilled = _meta(it / "distill", "model")
    assert distilled["teacher_outputs"] == "oof" and distilled["temperature_calibration"] == pytest.approx(
        soft["temperature"]
    )
    assert {"weighting", "normalize", "loss", "gamma", "lam", "temperature"} <= set(
        distilled
    ) and "confidence" not in distilled
    assert any(
        re.search(r"s\] fold teacher clickbait: fold 1/3, \d+ held-out rows, val macro-F1 0\.\d{4}", line)
        for line in lines
    )
    assert any("teacher outputs clickbait: oof from 3 fold teachers" in line for line in lines)
    # the unlabelled pool went through build_dataset, teacher_outputs (the full teacher) and distill
    assert _meta(it / "build-dataset", "dataset")["pool_rows"] == 240
    assert int(soft["pool_rows"]) == 240 and len(outputs.pool_logits) == 240
    assert bool((outputs.pool_video_ids >= POOL_ID_OFFSET).all())
    assert int(distilled["pool_rows"]) == 240 and int(distilled["pool_rows_per_epoch"]) == 240  # the whole pool
    assert any("teacher outputs clickbait: oof from 3 fold teachers, 240 unlabelled pool" in line for line in lines)
    other = _iterations(run)["originality"]
    assert int(_meta(other / "teacher-outputs", "train_logits")["pool_rows"]) == 0


def test_insample_scenario_uses_the_full_teacher_and_trains_no_fold_teacher(local_run):
    from cpfd.teacher_outputs import TeacherOutputs

    run, _, lines = local_run
    it = _iterations(run)["originality"]
    folds = list(it.glob("*/train-fold-teacher"))
    assert len(folds) == 1 and _meta(folds[0], "fold_outputs")["skipped"] is True
    assert not any((folds[0] / "fold_outputs").iterdir())
    soft = _meta(it / "teacher-outputs", "train_logits")
    assert soft["source"] == "insample" and int(soft["fold_teachers"]) == 0
    assert set(TeacherOutputs.load(it / "teacher-outputs" / "train_logits").folds.tolist()) == {-1}
    assert _meta(it / "distill", "model")["teacher_outputs"] == "insample"
    assert any("fold teacher originality: skipped" in line for line in lines)


def test_gate_reads_validation_f1_and_calibration(local_run):
    run, _, _ = local_run
    it = _iterations(run)["clickbait"]
    gate = json.loads((it / "evaluate" / "executor_output.json").read_text())
    metrics = gate["artifacts"]["metrics"]["artifacts"][0]["metadata"]
    teacher_val = json.loads((it / "train-teacher" / "model" / "cpfd_model.json").read_text())["best_val_macro_f1"]
    student_val = json.loads((it / "train-student" / "model" / "cpfd_model.json").read_text())["best_val_macro_f1"]
    assert metrics["val_f1_teacher"] == pytest.approx(teacher_val) and metrics["val_f1_baseline"] == pytest.approx(
        student_val
    )
    assert metrics["teacher_better_on_val"] == int(teacher_val > student_val)
    soft = _meta(it / "teacher-outputs", "train_logits")
    assert metrics["teacher_ece_after"] == pytest.approx(soft["ece_after"])
    row = next(s for s in run.summaries if s["scenario"] == "clickbait")
    assert row["val_f1"]["teacher"] == pytest.approx(teacher_val) and row["teacher_outputs"] == "oof"
    assert row["teacher_calibration"]["ece_before"] == pytest.approx(soft["ece_before"])


def test_run_leaves_no_kfp_logging_or_print_behind(local_run):
    """kfp.local swaps the root logger's handler and print per task, racily across loop threads; the runner restores
    both, so nothing keeps writing into a finished run's closed log."""
    import builtins
    import logging

    from cpfd.pipelines.runner import _Tee

    assert not [h for h in logging.getLogger().handlers if isinstance(getattr(h, "stream", None), _Tee)]
    assert type(builtins.print).__name__ == "builtin_function_or_method"


def test_gate_negative_path_packages_nothing_and_says_why(local_run):
    run, root, _ = local_run
    gates = {s["scenario"]: s["gate"] for s in run.summaries}
    assert gates["originality"]["passed"] is False
    assert "not above the margin +1.0000" in gates["originality"]["reason"]
    assert not list((root / "bentoml" / "models").glob("originality*"))
    assert len(list(run.run_dir.glob("*/package"))) == 1


def test_cross_scenario_report(local_run):
    run, _, _ = local_run
    md = run.markdown.read_text()
    assert (
        "| scenario | videos (labelled / pool) | X-VLM (baseline) | DF-X-VLM (teacher) | CPFD/PFD (distilled) "
        "| gain over X-VLM (F1 pts) "
        "| predicted gain [95 %] (estimate) | gap closed (%) "
        "| teacher vs X-VLM (val F1) | teacher ECE (val) | gate |"
    ) in md
    assert "| clickbait | 240 / 240 |" in md and "| originality | 240 / 0 |" in md and "1/2 passed" in md
    # the gain estimate's prediction per scenario, as the estimate step made it, before any fold teacher
    rows = {row["scenario"]: row for row in run.summaries}
    e = rows["originality"]["estimate"]
    assert e["estimated"] and e["low"] <= e["predicted"] <= e["high"] and not e["skipped_folds"]
    assert f"{100 * e['predicted']:+.1f} [{100 * e['low']:+.1f}, {100 * e['high']:+.1f}] {e['verdict']}" in md
    # clickbait distils from its pool: the estimate, checked on labelled-only runs, makes no prediction for it
    pool_run = rows["clickbait"]["estimate"]
    assert not pool_run["estimated"] and "unlabelled pool of 240 videos" in pool_run["refused"]
    assert "none: a pool run" in md
    assert "originality: not packaged: F1 gain over the baseline student" in md
    assert (run.html.name, run.markdown.name) == ("report.html", "report.md")  # files with extensions
    html = run.html.read_text()
    assert "<table>" in html and 'src="data:image/png;base64,' in html and "originality" in html


def test_failing_data_gate_fails_the_run_and_stops_downstream(synthetic_dir, tiny_project, tmp_path):
    """A unit bug in the feature source (newer rows scaled by 1000) passes the contract but not the data gate."""
    from cpfd.errors import CpfdError
    from cpfd.pipelines.cpfd_pipeline import PipelineOptions
    from cpfd.pipelines.runner import pipeline_arguments, run_local

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "frames").symlink_to(synthetic_dir / "frames")
    (broken / "videos.parquet").symlink_to(synthetic_dir / "videos.parquet")
    features = pd.read_parquet(synthetic_dir / "features.parquet")
    newer = features["event_timestamp"] > features["event_timestamp"].quantile(0.7)
    dense = [c for c in features.columns if c.startswith("dense_")]
    features.loc[newer, dense] = features.loc[newer, dense] * 1000
    features.to_parquet(broken / "features.parquet", index=False)

    args = pipeline_arguments(broken / "videos.parquet", broken / "features.parquet", tiny_project, ["clickbait"])
    with pytest.raises(CpfdError) as err:
        run_local(args, tmp_path / "pipeline", PipelineOptions(parallelism=1), echo=None)
    message = str(err.value)
    assert "failed in step validate-data" in message
    assert (
        "data gate failed for scenario 'clickbait'" in message
        and "expect_column_values_to_be_between(dense_" in message
    )
    run_dir = next((tmp_path / "pipeline").glob("cpfd-pipeline-*"))
    ran = {p.name for p in run_dir.rglob("*") if p.is_dir()}
    assert {"build-dataset", "validate-data"} <= ran
    assert not ran & {
        "train-teacher",
        "train-student",
        "estimate-gain",
        "fold-plan",
        "train-fold-teacher",
        "teacher-outputs",
        "distill",
        "evaluate",
        "package",
        "make-reference",
        "not-packaged",
        "scenario-result",
        "report",
    }


def test_every_step_reports_where_its_wall_time_went(local_run):
    """Each step's process wrote its timing record (cpfd.components.timing), read back as ``run.steps`` and summarised:
    the phases add up to the step's wall time, training steps separate imports, data loading and training."""
    from cpfd.components.timing import OVERHEAD
    from cpfd.pipelines.runner import step_times

    run, _, _ = local_run
    kinds: dict[str, list[dict]] = {}
    for s in run.steps:
        kinds.setdefault(s["step"], []).append(s)
        assert s["wall"] > 0 and sum(s["phases"].values()) == pytest.approx(s["wall"], abs=1e-6), s
        assert set(OVERHEAD) <= set(s["phases"]) and s["phases"]["startup"] >= 0, s
    # 2 scenarios: clickbait with 3 fold teachers, originality in-sample (one no-op fold step); one packaged
    counts = {"build_dataset": 2, "validate_data": 2, "train_teacher": 2, "train_student": 2, "train_fold_teacher": 4}
    counts |= {"teacher_outputs": 2, "distill": 2, "evaluate": 2, "package": 1, "make_reference": 1}
    counts |= {"not_packaged": 1, "scenario_result": 2, "report": 1, "fold_plan": 2, "estimate_gain": 2}
    assert {k: len(v) for k, v in kinds.items()} == counts
    for s in kinds["train_teacher"] + kinds["distill"]:
        assert {"load", "train", "write"} <= set(s["phases"]) and s["phases"]["train"] > 0, s
        assert s["labels"]["scenario"] in ("clickbait", "originality")
    assert {s["labels"]["fold"] for s in kinds["train_fold_teacher"] if s["labels"]["scenario"] == "clickbait"} == {
        0,
        1,
        2,
    }
    table = step_times(run.steps, run.seconds)
    assert table.startswith(f"steps:     {len(run.steps)} steps in a ") and "start-up, imports and finish" in table
    assert all(f"  {name} " in table for name in counts)
