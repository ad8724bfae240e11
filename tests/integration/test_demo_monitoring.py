"""The end of `make run`: the pipeline's make_reference step, its handover as the demo reads it from the run's
outputs, a generated serving config, a real `bentoml serve`, traffic, the monitor."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from types import SimpleNamespace

import pytest

from tests.servers import accepts


def test_pick_drift_scenario_falls_back_to_a_packaged_one():
    from cpfd.pipelines.demo_monitoring import pick_drift_scenario

    assert pick_drift_scenario("ad_content", ["ad_content", "clickbait"]) == ("ad_content", None)
    picked, note = pick_drift_scenario("ad_content", ["clickbait", "originality"])
    assert picked == "clickbait" and "ad_content was not packaged" in note and "drifting clickbait instead" in note
    assert pick_drift_scenario(None, ["clickbait"]) == (None, None)
    assert pick_drift_scenario("ad_content", []) == (None, None)


@pytest.mark.integration
@pytest.mark.slow
def test_monitor_demo_on_the_pipelines_handover(clickbait_dataset, synthetic_dir, tiny_project, tmp_path):
    from cpfd.components.common import resolve_scenario_config, write_scenario_config
    from cpfd.components.make_reference import make_reference
    from cpfd.config import TrainConfig
    from cpfd.data.tensors import prepare_data
    from cpfd.monitoring.reference import reference_from_model
    from cpfd.pipelines.demo_monitoring import monitor_demo
    from cpfd.training.recipes import train_classifier

    student, distilled = tmp_path / "student", tmp_path / "distilled"
    train_classifier(
        prepare_data(clickbait_dataset, tiny_project.model),
        "student",
        tiny_project,
        student,
        progress=False,
        train_cfg=TrainConfig(epochs=1, batch_size=32, threads=1),
    )
    shutil.copytree(student, distilled)
    home = tmp_path / "bentoml"
    code = (
        "import sys, json; from cpfd.conventions import arm_tags; from cpfd.components.packaging import package_model; "
        "print(json.dumps({arm: package_model(sys.argv[1], name) "
        "for arm, name in arm_tags('clickbait', 'cpfd').items()}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(distilled)],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True"},
    )
    assert out.returncode == 0, out.stderr
    packaged = tmp_path / "packaged"  # the package step's folder: handover.json (the exported models beside it)
    packaged.mkdir()
    (packaged / "handover.json").write_text(
        json.dumps(
            {
                "scenario": "clickbait",
                "method": "cpfd",
                "gate": "passed",
                "tags": json.loads(out.stdout.strip().splitlines()[-1]),
                "bentoml_home": str(home),
            }
        )
    )
    config = SimpleNamespace(path=str(tmp_path / "config"), metadata={})
    write_scenario_config(resolve_scenario_config(tiny_project, "clickbait"), config)

    # the evaluate step's predictions of both arms (the reference format), then the pipeline step's own code, on plain
    # stand-ins for its artifacts
    predictions = tmp_path / "predictions"
    for arm, model in (("treatment", distilled), ("control", student)):
        reference_from_model(model, clickbait_dataset, predictions / f"clickbait-{arm}.parquet", arm=arm)
    reference = SimpleNamespace(path=str(tmp_path / "reference"), uri=str(tmp_path / "reference"), metadata={})
    handover = json.loads(
        make_reference.python_func(
            config=config,
            predictions=SimpleNamespace(path=str(predictions)),
            packaged=SimpleNamespace(path=str(packaged), uri=str(packaged)),
            reference=reference,
        )
    )
    assert handover["reference"] == reference.path and handover["tags"]["control"].startswith("clickbait-student:")
    assert reference.metadata["scenario"] == "clickbait" and reference.metadata["split"] == "test"

    lines: list[str] = []
    summary = monitor_demo(
        [handover],
        synthetic_dir / "videos.parquet",
        tmp_path / "demo",
        drift_scenario="ad_content",
        drift=0.8,
        per_scenario=40,
        echo=lines.append,
    )

    assert (
        "monitor:   drift scenario ad_content was not packaged (served: ['clickbait']); drifting clickbait instead"
        in lines
    )
    assert "simulate:  clickbait: sent 40 videos (drift 0.8)" in lines
    assert summary["n_predictions"] == 40 and set(summary["scenarios"]) == {"clickbait"}
    assert set(summary["scenarios"]["clickbait"]["arms"]) == {"control", "treatment"}
    assert sorted(p.name for p in (tmp_path / "demo" / "reference").iterdir()) == [
        "clickbait-control.parquet",
        "clickbait-treatment.parquet",
    ]
    assert (tmp_path / "demo" / "monitoring" / "index.html").is_file()
    assert any(line.startswith("alert:") for line in lines) and any("index.html" in line for line in lines)
    url = next(line.split(" on ")[1].split()[0] for line in lines if line.startswith("serving:"))
    assert not accepts(int(url.rsplit(":", 1)[1]))  # the server was stopped
