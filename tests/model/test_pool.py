"""The unlabelled pool in training: scored by the full teacher, drawn into the student's epochs, read only through
the distillation term."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from cpfd.config import load_config
from cpfd.conventions import WEIGHTS_FILE
from cpfd.data.build import build_scenario_dataset
from cpfd.data.tensors import prepare_data
from cpfd.training.run import run_two_stage
from tests.conftest import TINY

FAST = [*TINY, "distill.estimate_gain=false", "distill.teacher_outputs=insample", "train.patience=5"]


@pytest.fixture(scope="module")
def datasets(pool_dir, tmp_path_factory):
    """The pool table built as it is, and with its unlabelled rows left out."""
    project = load_config(pool_dir / "scenarios.yaml", FAST)
    root = tmp_path_factory.mktemp("pool_model")
    videos = pd.read_parquet(pool_dir / "videos.parquet")
    videos[videos["label"].notna()].to_parquet(pool_dir / "labelled.parquet")
    for name, table in (("pool", "videos.parquet"), ("none", "labelled.parquet")):
        build_scenario_dataset(pool_dir / table, pool_dir / "features.parquet", "clickbait", project, root / name)
    return root, project


def test_pool_weight_zero_trains_bit_for_bit_the_student_of_no_pool(datasets, tmp_path):
    root, project = datasets
    off = project.model_copy(update={"distill": project.distill.model_copy(update={"pool_weight": 0.0})})
    with_pool = run_two_stage(prepare_data(root / "pool", off.model), off, tmp_path / "a", progress=False)
    without = run_two_stage(prepare_data(root / "none", project.model), project, tmp_path / "b", progress=False)
    a, b = load_file(with_pool.student / WEIGHTS_FILE), load_file(without.student / WEIGHTS_FILE)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert with_pool.student_info["pool"]["rows"] == 0 and with_pool.outputs.pool_logits is None
    on = run_two_stage(prepare_data(root / "pool", project.model), project, tmp_path / "a", progress=False)
    c = load_file(on.student / WEIGHTS_FILE)
    assert not all(torch.equal(a[k], c[k]) for k in a)  # with pool_weight > 0 the pool does change the student


def test_the_full_teacher_scores_the_pool_with_the_same_temperature(datasets, tmp_path):
    root, project = datasets
    data = prepare_data(root / "pool", project.model)
    result = run_two_stage(data, project, tmp_path, progress=False)
    out = result.outputs
    assert data.pool is not None and len(data.pool) == 400
    assert torch.equal(out.pool_video_ids, data.pool.video_ids)
    from cpfd.evaluate import predict_logits
    from cpfd.models import load_model

    assert torch.allclose(out.pool_logits, predict_logits(load_model(result.teacher), data.pool), atol=1e-5)
    assert torch.equal(out.calibrated_pool, out.pool_logits / out.temperature)
    info = result.student_info["pool"]
    assert info == {"rows": 400, "per_epoch": 400}  # pool_ratio null (the default): the whole pool every epoch
    capped = project.model_copy(update={"distill": project.distill.model_copy(update={"pool_ratio": 0.5})})
    again = run_two_stage(data, capped, tmp_path, progress=False)
    assert again.student_info["pool"] == {"rows": 400, "per_epoch": 60}  # half a pool video per labelled one
    assert again.teacher == result.teacher and again.student != result.student
    from cpfd.teacher_outputs import TeacherOutputs

    reloaded = TeacherOutputs.load(next(tmp_path.glob("outputs-*")) / "teacher_outputs.safetensors")
    assert torch.equal(reloaded.pool_logits, out.pool_logits)


def test_teacher_and_baseline_never_see_the_pool(datasets, tmp_path):
    """The classifiers' keys read the labelled rows only: with and without a pool they are the same models."""
    root, project = datasets
    a = run_two_stage(prepare_data(root / "pool", project.model), project, tmp_path, progress=False)
    b = run_two_stage(prepare_data(root / "none", project.model), project, tmp_path, progress=False)
    assert a.teacher == b.teacher and a.baseline == b.baseline and a.student != b.student


def test_the_streamed_path_reads_the_pool_too(datasets, tmp_path):
    root, project = datasets
    streamed = project.model_copy(update={"train": project.train.model_copy(update={"data": "stream"})})
    data = prepare_data(root / "pool", streamed.model, streamed.train)
    assert data.splits["train"].streamed and data.pool is not None
    result = run_two_stage(data, streamed, tmp_path, progress=False)
    assert result.student_info["pool"]["rows"] == 400
