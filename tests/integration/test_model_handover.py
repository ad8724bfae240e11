"""Models that leave the pod: packaged in one BentoML home, exported to files, imported into another home by
`cpfd models import`, identical there; clear errors for a wrong source."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def _in_home(home, code: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True"}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=300)


def _cpfd(home, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True"}
    return subprocess.run(
        [sys.executable, "-m", "cpfd.cli", *args], capture_output=True, text=True, env=env, timeout=300
    )


@pytest.fixture(scope="module")
def exported(clickbait_data, tiny_project, tmp_path_factory):
    """A tiny student packaged into the "pod" home and exported into an artifact folder."""
    from cpfd.models import save_model
    from cpfd.training.recipes import new_model

    root = tmp_path_factory.mktemp("handover")
    student = new_model(clickbait_data, tiny_project.model, "student", 0)
    save_model(student, root / "m", clickbait_data.tokenizer, {"scenario": "clickbait", "role": "student"})
    code = (
        "import sys, json; from cpfd.components.packaging import package_model, export_model; "
        "tag = package_model(sys.argv[1], 'clickbait-cpfd'); "
        "print(json.dumps([tag, str(export_model(tag, sys.argv[2]))]))"
    )
    done = _in_home(root / "pod_home", code, str(root / "m"), str(root / "artifact" / "packaged"))
    assert done.returncode == 0, done.stderr
    tag, path = json.loads(done.stdout.splitlines()[-1])
    return root, tag, path


def test_a_model_packaged_in_one_home_is_imported_into_another(exported):
    root, tag, path = exported
    assert path.endswith(".bentomodel") and os.path.exists(path)
    serving_home = root / "serving_home"
    first = _cpfd(serving_home, "models", "import", "--from", str(root / "artifact"))
    assert first.returncode == 0, first.stderr
    assert f"{tag}: imported" in first.stdout
    name, version = tag.split(":")
    pod_copy, served = root / "pod_home" / "models" / name / version, serving_home / "models" / name / version
    for f in ("model.safetensors", "cpfd_model.json"):
        assert (served / f).read_bytes() == (pod_copy / f).read_bytes()
    again = _cpfd(serving_home, "models", "import", "--from", path)
    assert again.returncode == 0 and f"{tag}: already in the store" in again.stdout


def test_a_wrong_source_is_a_clear_error(exported, tmp_path):
    root, _, _ = exported
    missing = _cpfd(root / "serving_home", "models", "import", "--from", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "no such file or folder" in missing.stderr and "Traceback" not in missing.stderr
    empty = _cpfd(root / "serving_home", "models", "import", "--from", str(tmp_path))
    assert empty.returncode == 2 and "holds no exported model" in empty.stderr
