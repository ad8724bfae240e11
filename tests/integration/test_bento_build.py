"""`bentoml build -f serving/bentofile.yaml .` makes the serving bento: a real build into a temporary BentoML home
holding the students a serving config names; the bento bundles them, the service code and the pinned packages."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from tests.integration.serving_support import package_students, write_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


def test_bentoml_build_bundles_the_configured_students_and_the_service(clickbait_data, tiny_project, tmp_path):
    home = tmp_path / "bentoml"
    tags = package_students(
        clickbait_data, tiny_project.model, tmp_path / "m", home, {"clickbait": "clickbait-student"}
    )
    config = write_config(tmp_path / "serving.yaml", {"clickbait": tags["clickbait-student"]})
    env = {
        **os.environ,
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "True",
        "CPFD_SERVING_CONFIG": str(config),
    }
    done = subprocess.run(
        [sys.executable, "-m", "bentoml", "build", "-f", "serving/bentofile.yaml", "."],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    (bento,) = [p for p in (home / "bentos" / "cpfd_students").iterdir() if p.name != "latest"]
    spec = yaml.safe_load((bento / "bento.yaml").read_text())
    assert spec["service"] == "serving.service:CpfdService" and spec["labels"]["role"] == "student-serving"
    (service,) = spec["services"]
    assert [m["tag"] for m in service["models"]] == [tags["clickbait-student"]]
    exported = subprocess.run(
        [sys.executable, "-m", "bentoml", "export", f"cpfd_students:{spec['version']}", str(tmp_path / "s.bento")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert exported.returncode == 0, exported.stderr[-2000:]
    name, version = tags["clickbait-student"].split(":")
    with tarfile.open(tmp_path / "s.bento") as archive:  # the student travels with the bento
        assert f"./models/{name}/{version}/model.safetensors" in archive.getnames()
    src = bento / "src"
    for f in ("serving/service.py", "serving/gate.py", "serving/config.yaml", "cpfd/defaults/project.yaml"):
        assert (src / f).exists(), f
    assert not list(src.rglob("feature_repo*")) and not (src / "featurestore").exists()  # no dense-feature code
    requirements = (bento / "env" / "python" / "requirements.txt").read_text()
    assert "torch==2.13.0" in requirements and "bentoml==1.4.39" in requirements
