"""The distillation decision's pieces on real tiny models: the hint term's wiring, the gain estimate's probe, the
two-stage run's stage folders (a setting that matters changes what runs, one that does not reuses it), the
skip of the fold teachers, and the Optuna search."""

import json

import pytest
import torch


def test_the_hint_term_adds_beta_times_the_weighted_hint_to_the_distillation_loss(clickbait_data):
    """The cached loss with hints is the logit loss plus hint_weight x the weighted hint of the projected fused
    representation, computed here by hand from the model's own pieces."""
    from cpfd.config import DistillConfig, ModelConfig
    from cpfd.distill import distillation_loss, hint_loss
    from cpfd.models import fused_batch
    from cpfd.training.objectives import HINT_KEY, cached_distill_loss
    from cpfd.training.recipes import new_model

    data = clickbait_data
    n, k = len(data.splits["train"]), len(data.label_names)
    torch.manual_seed(0)
    logits, weights = torch.randn(n, k), torch.rand(n) + 0.5
    student = new_model(data, ModelConfig(), "student", 0).eval()
    proj = torch.nn.Linear(student.fused_size, 7)
    hints = torch.randn(n, 7)
    cfg = DistillConfig(method="cpfd", hint="fused", hint_weight=0.3)
    batch = data.splits["train"].batch(torch.arange(8))
    models = {"student": student, HINT_KEY: proj}
    with torch.no_grad():
        got = cached_distill_loss(logits, weights, cfg, hints)(models, batch, 0)
        h = fused_batch(student, batch)
        idx = batch["index"]
        kd = distillation_loss(student.head(h), batch["labels"], logits[idx], weights[idx], 0.7, 2.0, "decoupled")
        want = kd + 0.3 * hint_loss(proj(h), hints[idx], weights[idx])
        plain = cached_distill_loss(logits, weights, cfg.model_copy(update={"hint": "none"}))(models, batch, 0)
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
    assert plain.item() == pytest.approx(kd.item(), rel=1e-5) and got.item() > plain.item()


def _tiny(project, **distill):
    return project.model_copy(
        update={
            "train": project.train.model_copy(update={"epochs": 1}),
            "distill": project.distill.model_copy(update={"folds": 2, **distill}),
        }
    )


def test_the_estimate_trains_two_probes_on_the_validation_split_and_scores_rows_they_never_saw(
    clickbait_data, tiny_project, tmp_path
):
    from cpfd.training.estimate import estimate_gain, probe_data
    from cpfd.training.recipes import train_classifier

    data, project = clickbait_data, _tiny(tiny_project)
    train_classifier(data, "teacher", project, tmp_path / "teacher", progress=False)
    from cpfd.models import load_model

    est = estimate_gain(data, load_model(tmp_path / "teacher"), project, tmp_path / "estimate")
    probe = probe_data(data, project.train.seed)
    ids = {k: set(v.video_ids.tolist()) for k, v in probe.splits.items()}
    assert ids["train"] == set(data.splits["val"].video_ids.tolist())
    assert not (ids["test"] & ids["val"]) and ids["test"] | ids["val"] == set(data.splits["train"].video_ids.tolist())
    assert (est.n_probe, est.n_eval) == (len(probe.splits["train"]), len(probe.splits["test"]))
    assert est.scale == pytest.approx((est.n_probe / est.n_train) ** 0.5)
    assert est.predicted == pytest.approx(est.scale * est.probe_gain)
    assert est.probe_gain == pytest.approx(est.f1_distilled - est.f1_hard)
    assert est.low <= est.predicted <= est.high and est.verdict in ("gain", "no gain", "uncertain")
    # the distilled probe learnt from the teacher's validation outputs with the configured loss
    info = json.loads((tmp_path / "estimate" / "distilled" / "cpfd_model.json").read_text())
    assert info["method"] == "cpfd" and info["teacher_outputs"] == "validation"


def _folders(work):
    return {p.name for p in work.iterdir()}


def test_the_run_reuses_what_still_holds_and_retrains_what_a_setting_changes(clickbait_data, tiny_project, tmp_path):
    from cpfd.training.run import run_two_stage

    data, work = clickbait_data, tmp_path / "work"
    first = run_two_stage(data, _tiny(tiny_project), work, progress=False, say=lambda _m: None)
    kinds = sorted(name.split("-")[0] for name in _folders(work))
    assert kinds == ["baseline", "distilled", "estimate", "folds", "outputs", "teacher"]
    assert first.outputs.source == "oof" and first.estimate is not None and not first.skipped_folds
    stamp = (first.student / "model.safetensors").stat().st_mtime_ns
    again = run_two_stage(data, _tiny(tiny_project), work, progress=False, say=lambda _m: None)
    assert again.student == first.student and (first.student / "model.safetensors").stat().st_mtime_ns == stamp

    before = _folders(work)
    folds3 = run_two_stage(data, _tiny(tiny_project, folds=3), work, progress=False, say=lambda _m: None)
    new = _folders(work) - before
    assert sorted(n.split("-")[0] for n in new) == ["distilled", "folds", "outputs"]  # teacher and baseline reused
    assert folds3.teacher == first.teacher and folds3.baseline == first.baseline
    assert int(folds3.outputs.folds.max()) == 2

    before = _folders(work)
    pfd = run_two_stage(data, _tiny(tiny_project, method="pfd"), work, progress=False, say=lambda _m: None)
    assert sorted(n.split("-")[0] for n in _folders(work) - before) == ["distilled", "estimate"]
    assert json.loads((pfd.student / "cpfd_model.json").read_text())["method"] == "pfd"

    no_estimate = run_two_stage(
        data, _tiny(tiny_project, estimate_gain=False), work, progress=False, say=lambda _m: None
    )
    assert no_estimate.estimate is None and no_estimate.student == first.student


def test_no_gain_with_the_switch_on_skips_the_fold_teachers_and_says_so(
    clickbait_data, tiny_project, tmp_path, monkeypatch
):
    from cpfd.training import run
    from cpfd.training.estimate import GainEstimate

    hopeless = GainEstimate(-0.05, -0.08, -0.02, -0.1, 0.01, 0.5, 0.6, 0.5, 36, 108, 144, 60, 1.0, {})
    monkeypatch.setattr(run.Stages, "estimate", lambda self, teacher, dcfg: hopeless)
    said: list[str] = []
    work = tmp_path / "work"
    off = run.run_two_stage(clickbait_data, _tiny(tiny_project), work, progress=False, say=said.append)
    assert off.outputs.source == "oof" and not off.skipped_folds  # default: the estimate only informs
    assert any("no gain" in m for m in said)

    said.clear()
    skip = _tiny(tiny_project, skip_folds_when_no_gain=True)
    on = run.run_two_stage(clickbait_data, skip, tmp_path / "work2", progress=False, say=said.append)
    assert on.skipped_folds and on.outputs.source == "insample"
    assert not any(p.name.startswith("folds-") for p in (tmp_path / "work2").iterdir())
    assert any("fold teachers are skipped" in m for m in said)


def test_the_search_starts_from_the_default_and_keeps_the_best_validation_trial(clickbait_data, tiny_project, tmp_path):
    from cpfd.benchmarks.tuning import tune_student
    from cpfd.search import SEARCH_SPACE
    from cpfd.training.run import Stages

    project = _tiny(tiny_project)
    stages = Stages(clickbait_data, project, tmp_path, project.train, progress=False)
    teacher = stages.classifier("teacher")
    outputs, outputs_dir = stages.outputs(teacher, project.distill)
    student_dir, info, best = tune_student(stages, outputs, outputs_dir, project.distill, trials=3, seed=0)
    trials = [p for p in tmp_path.iterdir() if p.name.startswith("distilled-")]
    assert len(trials) == 3  # one student per trial, each in its own keyed folder
    default_dir, default_info = stages.student(outputs, outputs_dir, project.distill)
    assert default_dir in trials  # trial 0 is the default setting
    assert best["val_macro_f1"] == info["best_val_macro_f1"] >= default_info["best_val_macro_f1"]
    for d in SEARCH_SPACE:
        assert d.low <= best[d.field] <= d.high
