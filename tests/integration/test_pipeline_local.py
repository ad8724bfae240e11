"""The whole Kubeflow pipeline on the kfp.local SubprocessRunner: tiny model, two scenarios, real
Feast join, Great Expectations gate, BentoML model store; the packaging gate's both paths; a
failing data gate that stops its branch."""

from __future__ import annotations

import json

import pandas as pd
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def local_run(synthetic_dir, tiny_project, tmp_path_factory):
    """clickbait with a gate it passes, originality with an impossible margin."""
    from pipelines.cpfd_pipeline import PipelineOptions
    from pipelines.runner import pipeline_arguments, run_local

    project = tiny_project.model_copy(deep=True)
    project.scenario("clickbait").gate = project.scenario("clickbait").gate.model_copy(
        update={"min_gain_over_baseline": -1.0, "max_gap_to_teacher": 1.0})
    project.scenario("originality").gate = project.scenario("originality").gate.model_copy(
        update={"min_gain_over_baseline": 1.0})
    root = tmp_path_factory.mktemp("kfp")
    args = pipeline_arguments(synthetic_dir / "videos.parquet", synthetic_dir / "features.parquet", project,
                              ["clickbait", "originality"], bentoml_home=root / "bentoml")
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
    for tag in tags.values():
        name, version = tag.split(":")
        stored = root / "bentoml" / "models" / name / version
        assert (stored / "model.safetensors").exists() and (stored / "cpfd_model.json").exists()
        assert json.loads((stored / "cpfd_model.json").read_text())["spec"]["dense_features"] == []

    iteration = next(p.parent.parent for p in run.run_dir.glob("*/package/packaged"))
    model_meta = json.loads((iteration / "distill" / "executor_output.json").read_text())["artifacts"]["model"]["artifacts"][0]["metadata"]
    assert model_meta["method"] == "cpfd" and model_meta["scenario"] == "clickbait" and model_meta["framework"] == "pytorch"
    gate_out = json.loads((iteration / "evaluate" / "executor_output.json").read_text())
    cls = gate_out["artifacts"]["classification"]["artifacts"][0]["metadata"]
    assert cls["confusionMatrix"]["annotationSpecs"] == [{"displayName": "ok"}, {"displayName": "clickbait"}]
    assert sum(sum(r["row"]) for r in cls["confusionMatrix"]["rows"]) > 0
    assert cls["confidenceMetrics"][0] == {"falsePositiveRate": 0.0, "recall": 0.0, "confidenceThreshold": 1.0}


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
    assert "| scenario | X-VLM (student) | DF-X-VLM (teacher) | CPFD (distilled) | gain over X-VLM (F1 pts) | gap closed (%) | gate |" in md
    assert "| clickbait |" in md and "| originality |" in md and "1/2 passed" in md
    assert "originality: not packaged: F1 gain over the baseline student" in md
    html = run.html.read_text()
    assert "<table>" in html and 'src="data:image/png;base64,' in html and "originality" in html


def test_failing_data_gate_fails_the_run_and_stops_downstream(synthetic_dir, tiny_project, tmp_path):
    """A unit bug in the feature source (newer rows scaled by 1000) passes the contract but not the data gate."""
    from cpfd.errors import CpfdError
    from pipelines.cpfd_pipeline import PipelineOptions
    from pipelines.runner import pipeline_arguments, run_local

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
    assert "data gate failed for scenario 'clickbait'" in message and "expect_column_values_to_be_between(dense_" in message
    run_dir = next((tmp_path / "pipeline").glob("cpfd-pipeline-*"))
    ran = {p.name for p in run_dir.glob("*/*") if p.is_dir()}
    assert {"build-dataset", "validate-data"} <= ran
    assert not ran & {"train-teacher", "train-student", "distill", "evaluate", "package", "report"}
