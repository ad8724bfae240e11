"""Out-of-fold teacher outputs and temperature scaling."""

import numpy as np
import pytest
import torch

from cpfd.errors import DataContractError
from cpfd.teacher_outputs import TeacherOutputs, fit_temperature, fold_assignment, nll


def test_fold_assignment_is_stratified_complete_and_deterministic():
    labels = np.array([0] * 30 + [1] * 9 + [2] * 3)
    folds = fold_assignment(labels, 3, seed=4)
    assert set(folds.tolist()) == {0, 1, 2}
    for c in (0, 1, 2):  # every class spread evenly over the folds
        counts = np.bincount(folds[labels == c], minlength=3)
        assert counts.max() - counts.min() <= 1
    assert np.array_equal(folds, fold_assignment(labels, 3, seed=4))
    assert not np.array_equal(folds, fold_assignment(labels, 3, seed=5))
    with pytest.raises(DataContractError, match="fewer than distill.folds"):
        fold_assignment(labels[:2], 3, 0)


def test_temperature_scaling_lowers_nll_of_overconfident_logits():
    g = torch.Generator().manual_seed(0)
    n, k = 2000, 3
    labels = torch.randint(0, k, (n,), generator=g)
    # a model right 60 % of the time but with logits scaled as if it were always sure
    correct = torch.rand(n, generator=g) < 0.6
    pred = torch.where(correct, labels, (labels + 1) % k)
    logits = 8.0 * torch.nn.functional.one_hot(pred, k).float() + 0.1 * torch.randn(n, k, generator=g)
    t = fit_temperature(logits, labels)
    assert t > 2.0  # it softens
    assert nll(logits, labels, t) < 0.5 * nll(logits, labels)
    # at the optimum: neither a bit hotter nor a bit colder is better
    assert nll(logits, labels, t) <= min(nll(logits, labels, 0.9 * t), nll(logits, labels, 1.1 * t)) + 1e-6


def test_recalibrated_records_before_and_after_and_round_trips(tmp_path):
    g = torch.Generator().manual_seed(1)
    val_labels = torch.randint(0, 2, (400,), generator=g)
    val_logits = 6.0 * torch.nn.functional.one_hot(val_labels, 2).float()
    flip = torch.rand(400, generator=g) < 0.3
    val_logits[flip] = val_logits[flip].flip(1)
    out = TeacherOutputs(
        torch.randn(10, 2), torch.arange(10), torch.zeros(10, dtype=torch.int64), "oof", val_logits, val_labels
    ).recalibrated(True)
    cal = out.calibration
    assert cal["nll_after"] < cal["nll_before"] and cal["ece_after"] < cal["ece_before"]
    assert torch.allclose(out.calibrated, out.logits / out.temperature)
    assert out.recalibrated(False).temperature == 1.0
    out.save(tmp_path / "t.safetensors")
    back = TeacherOutputs.load(tmp_path / "t.safetensors", torch.arange(10))
    assert back.temperature == pytest.approx(out.temperature) and back.source == "oof"
    assert torch.equal(back.logits, out.logits) and back.calibration == cal
    with pytest.raises(DataContractError, match="another training split"):
        TeacherOutputs.load(tmp_path / "t.safetensors", torch.arange(1, 11))
    (tmp_path / "bad.safetensors").write_bytes(b"garbage")
    with pytest.raises(DataContractError, match="bad.safetensors"):
        TeacherOutputs.load(tmp_path / "bad.safetensors")


def test_every_out_of_fold_output_comes_from_a_teacher_that_did_not_train_on_it(clickbait_data, tiny_project, tmp_path):
    from safetensors.torch import load_file

    from cpfd.teacher_outputs import FOLD_OUTPUTS_FILE
    from cpfd.training.recipes import combine_fold_outputs, fold_rows, train_fold_teacher

    cfg = tiny_project.train.model_copy(update={"epochs": 1})
    dirs = []
    for fold in range(3):
        train_fold_teacher(clickbait_data, tiny_project, fold, 3, tmp_path / f"f{fold}", progress=False, train_cfg=cfg)
        dirs.append(tmp_path / f"f{fold}")
    out = combine_fold_outputs(clickbait_data, dirs)
    train_ids = clickbait_data.splits["train"].video_ids
    assert out.source == "oof" and torch.equal(out.video_ids, train_ids)
    assert torch.equal(out.folds, torch.from_numpy(fold_rows(clickbait_data, 3, cfg.seed)))
    for fold, d in enumerate(dirs):
        t = load_file(str(d / FOLD_OUTPUTS_FILE))
        scored = set(t["video_id"].tolist())
        trained = set(t["trained_on"].tolist())
        assert scored == set(train_ids[out.folds == fold].tolist())
        assert not scored & trained and scored | trained == set(train_ids.tolist())
    assert torch.isfinite(out.logits).all() and out.calibration["n"] == 3 * len(clickbait_data.splits["val"])
    with pytest.raises(DataContractError, match="a fold is missing"):
        combine_fold_outputs(clickbait_data, dirs[:2])
