"""The published pipeline YAMLs (pipelines/compiled/) are what the code compiles to now: a change to a step, to the
DAG or to a default comes with the regenerated files (``make compile``)."""

from __future__ import annotations

import difflib

import pytest
import yaml

pytestmark = pytest.mark.unit


def test_published_yamls_match_a_fresh_compile(tmp_path, monkeypatch):
    from cpfd.pipelines.published import COMPILED_DIR, MONITORING_YAML, REFRESH_COMMAND, TRAINING_YAML, publish

    monkeypatch.setenv("CPFD_IMAGE", "registry.example/someone-elses:dev")  # must not reach the published files
    fresh = {p.name: p.read_text() for p in publish(tmp_path)}
    assert set(fresh) == {TRAINING_YAML, MONITORING_YAML}
    for name, text in fresh.items():
        published = COMPILED_DIR / name
        assert published.is_file(), f"{published} is missing: run `{REFRESH_COMMAND}` (cpfd pipeline publish)"
        old = published.read_text()
        if old != text:
            diff = "".join(
                list(difflib.unified_diff(old.splitlines(True), text.splitlines(True), str(published), "fresh"))[:40]
            )
            pytest.fail(
                f"{published} differs from a fresh compile of the pipeline: regenerate it with `{REFRESH_COMMAND}` "
                f"(= cpfd pipeline publish) and commit it. First lines of the difference:\n{diff}"
            )
        assert "registry.example" not in text


def test_the_published_training_pipeline_takes_its_tables_through_importers():
    from cpfd.components.image import DEFAULT_IMAGE
    from cpfd.pipelines.published import COMPILED_DIR, MONITORING_YAML, TRAINING_YAML

    spec = next(yaml.safe_load_all((COMPILED_DIR / TRAINING_YAML).read_text()))
    importers = [e["importer"] for e in spec["deploymentSpec"]["executors"].values() if "importer" in e]
    assert sorted(i["metadata"]["role"] for i in importers) == ["features", "videos"]
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values() if "container" in e}
    assert images == {DEFAULT_IMAGE}
    monitoring = yaml.safe_load((COMPILED_DIR / MONITORING_YAML).read_text())
    assert monitoring["deploymentSpec"]["executors"]["exec-monitor"]["container"]["image"] == DEFAULT_IMAGE
