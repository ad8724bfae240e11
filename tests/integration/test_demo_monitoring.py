"""The end of `make run`: references, a generated serving config, a real `bentoml serve`, traffic, the monitor."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest


@pytest.mark.integration
@pytest.mark.slow
def test_monitor_demo_on_a_pipeline_run_layout(clickbait_dataset, synthetic_dir, tiny_project, tmp_path):
    from cpfd.config import TrainConfig
    from cpfd.data.tensors import prepare_data
    from cpfd.training.recipes import train_classifier
    from pipelines.demo_monitoring import monitor_demo
    from pipelines.runner import _packages

    steps = tmp_path / "run" / "for-loop-1-iteration-0"  # the kfp.local layout the demo reads
    shutil.copytree(clickbait_dataset, steps / "build-dataset" / "dataset")
    train_classifier(prepare_data(clickbait_dataset, tiny_project.model), "student", tiny_project,
                     steps / "train-student" / "model", progress=False, train_cfg=TrainConfig(epochs=1, batch_size=32, threads=1))
    shutil.copytree(steps / "train-student" / "model", steps / "distill" / "model")
    home = tmp_path / "bentoml"
    code = ("import sys, json; from cpfd.packaging import package_model; "
            "print(json.dumps({a: package_model(sys.argv[1], 'clickbait-' + n) for a, n in "
            "(('treatment', 'cpfd'), ('control', 'student'))}))")
    out = subprocess.run([sys.executable, "-c", code, str(steps / "distill" / "model")], capture_output=True, text=True,
                         timeout=180, env={**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True"})
    assert out.returncode == 0, out.stderr
    (steps / "package").mkdir()
    (steps / "package" / "packaged").write_text(json.dumps({
        "scenario": "clickbait", "tags": json.loads(out.stdout.strip().splitlines()[-1]), "bentoml_home": str(home)}))

    lines: list[str] = []
    summary = monitor_demo(_packages(tmp_path / "run"), synthetic_dir / "videos.parquet", tmp_path / "demo",
                           drift_scenario="clickbait", drift=0.8, per_scenario=40, echo=lines.append)

    assert summary["n_predictions"] == 40 and set(summary["scenarios"]) == {"clickbait"}
    assert set(summary["scenarios"]["clickbait"]["arms"]) == {"control", "treatment"}
    assert sorted(p.name for p in (tmp_path / "demo" / "reference").iterdir()) == \
        ["clickbait-control.parquet", "clickbait-treatment.parquet"]
    assert (tmp_path / "demo" / "monitoring" / "index.html").is_file()
    assert any(line.startswith("alert:") for line in lines) and any("index.html" in line for line in lines)
    url = next(line.split(" on ")[1].split()[0] for line in lines if line.startswith("serving:"))
    with pytest.raises(OSError):  # the server was stopped
        socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=2).close()
