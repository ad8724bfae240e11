"""Variant names, paired bootstrap intervals, gap closed and the benchmark's smoke run."""

import json

import numpy as np
import pytest
from sklearn.metrics import f1_score

from cpfd.benchmarks.stats import summarise
from cpfd.benchmarks.variants import canonical_variant, contrasts, parse_variant
from cpfd.evaluate import macro_f1_batch


def test_variant_names_spell_out_everything_and_ignore_config_defaults():
    from cpfd.config import DistillConfig

    assert canonical_variant("pfd") == "pfd:targets=oof:folds=3:cal=on"
    assert canonical_variant("cpfd:true_class") == "cpfd:true_class:norm=mean:loss=decoupled:targets=oof:folds=3:cal=on"
    assert (
        canonical_variant("cpfd:max_prob:norm=mean_clip:loss=coupled:targets=insample:g=2")
        == "cpfd:max_prob:norm=mean_clip:loss=coupled:targets=insample:cal=on:g=2"
    )
    # a base config with other defaults changes neither the parsed variant nor its name
    odd = DistillConfig(weighting="correct", normalize="none", loss="coupled", teacher_outputs="insample", folds=5)
    cfg = parse_variant("cpfd:entropy", odd.model_copy(update={"temperature": 4.0}))
    assert (cfg.weighting, cfg.normalize, cfg.loss, cfg.teacher_outputs, cfg.folds) == (
        "entropy",
        "mean",
        "decoupled",
        "oof",
        3,
    )
    assert cfg.temperature == 4.0  # temperature and lambda do come from the config (printed with the results)


@pytest.mark.parametrize(
    "bad, fragment",
    [
        ("kd", "must start"),
        ("cpfd", "needs a weighting"),
        ("cpfd:max_prob:norm=median", "normalize"),
        ("pfd:loss=coupled", "unknown part"),
        ("pfd:cal=maybe", "cal must be"),
    ],
)
def test_bad_variant_names_say_what_is_wrong(bad, fragment):
    with pytest.raises(ValueError, match=fragment):
        parse_variant(bad)


def test_batched_macro_f1_matches_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, size=(6, 50))
    p = rng.integers(0, 4, size=(6, 50))
    p[0] = y[0]
    y[1] = 0  # classes absent from labels: counted when predicted, as sklearn does with labels=present
    ours = macro_f1_batch(y, p, 4)
    for i in range(6):
        present = sorted(set(y[i]) | set(p[i]))
        assert ours[i] == pytest.approx(f1_score(y[i], p[i], labels=present, average="macro", zero_division=0))


def _runs(gain_correct: float, seeds=3, n=400, seed=0):
    rng = np.random.default_rng(seed)
    runs = []
    for s in ("a", "b"):
        for sd in range(seeds):
            y = rng.integers(0, 2, n)

            def noisy(acc, y=y):
                return np.where(rng.random(n) < acc, y, 1 - y).tolist()

            preds = {"baseline": noisy(0.7), "teacher": noisy(0.85), "pfd:targets=oof:folds=3:cal=on": noisy(0.75)}
            preds["cpfd:max_prob:norm=mean:loss=decoupled:targets=oof:folds=3:cal=on"] = noisy(0.75 + gain_correct)
            diag = {
                "split_f1": {"train": {"teacher": 0.9, "baseline": 0.8}, "val": {"teacher": 0.85, "baseline": 0.7}},
                "calibration": {"oof3": {"ece_before": 0.1, "ece_after": 0.05, "temperature": 1.5}},
                "confidence_hist": {"oof3": [1] * 20},
                "weight_share": {},
                "teacher_train_f1": {"oof3": 0.8},
            }
            runs.append(
                {
                    "scenario": s,
                    "seed": sd,
                    "label_names": ["n", "p"],
                    "labels": y.tolist(),
                    "preds": preds,
                    "epochs": {m: [3, 6] for m in preds},
                    "diagnostics": diag,
                }
            )
    return runs


def test_paired_intervals_find_a_real_gain_and_not_a_null_one():
    variants = ["pfd:targets=oof:folds=3:cal=on", "cpfd:max_prob:norm=mean:loss=decoupled:targets=oof:folds=3:cal=on"]
    win = summarise(_runs(0.10), variants, reps=400)
    d = win["gain_over_pfd"][variants[1]]["pooled"]
    assert d["significant"] and d["lo"] > 0 and 0.05 < d["mean"] < 0.15
    tie = summarise(_runs(0.0, seed=1), variants, reps=400)
    t = tie["gain_over_pfd"][variants[1]]["pooled"]
    assert t["lo"] < 0 < t["hi"] and not t["significant"]
    # the teacher is 15 accuracy points better: its gap is not noise, and gap closed is in a sane range
    gc = win["gap_closed"][variants[0]]["pooled"]
    assert not gc["gap_within_noise"] and 0.1 < gc["vs_teacher"] < 0.6 and gc["vs_ceiling"] is None


@pytest.mark.slow
def test_quick_benchmark_writes_intervals_and_diagnostics(tmp_path):
    from typer.testing import CliRunner

    from cpfd.cli.main import app

    res = CliRunner().invoke(
        app,
        [
            "bench",
            "quality",
            "--quick",
            "--data",
            str(tmp_path / "data"),
            "--out",
            str(tmp_path / "out"),
            "-q",
            "--scenario",
            "clickbait",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "torch threads" in res.output
    q = json.loads((tmp_path / "out" / "quality.json").read_text())
    assert q["seeds"] == [0, 1] and q["has_truth"] and q["scenarios"] == ["clickbait"]
    cpfd = "cpfd:max_prob:norm=mean:loss=decoupled:targets=oof:folds=3:cal=on"
    hint = "pfd:targets=oof:folds=3:cal=on:hint=fused"
    assert set(q["gain_over_baseline"]) == {"pfd:targets=oof:folds=3:cal=on", cpfd, hint}
    pooled = q["gain_over_pfd"][cpfd]["pooled"]
    assert pooled["lo"] <= pooled["mean"] <= pooled["hi"]
    diag = q["diagnostics"]["clickbait"]
    assert set(diag["calibration"]) == {"oof3"}
    # the gain estimate is set against the realised gain of the config's own variant, one row per scenario
    est = json.loads((tmp_path / "out" / "estimate.json").read_text())
    (row,) = est["rows"]
    assert row["scenario"] == "clickbait" and row["variant"] == cpfd
    assert row["predicted_low"] <= row["predicted"] <= row["predicted_high"]
    assert row["realised"] == pytest.approx(q["gain_over_baseline"][cpfd]["per_scenario"]["clickbait"]["mean"])
    assert row["covered"] == (row["predicted_low"] <= row["realised"] <= row["predicted_high"])
    assert "Gain estimate" in (tmp_path / "out" / "quality.md").read_text()
    assert sum(diag["weight_share"][cpfd][k]["examples"] for k in diag["weight_share"][cpfd]) == pytest.approx(1.0)
    assert (tmp_path / "out" / "quality.png").stat().st_size > 10_000
    # data re-drawn per seed
    assert (tmp_path / "data" / "v2-600-seed0-clickbait").exists() and (
        tmp_path / "data" / "v2-600-seed1-clickbait"
    ).exists()


def test_contrasts_pair_variants_differing_in_one_setting():
    names = [
        canonical_variant(v)
        for v in (
            "pfd",
            "pfd:targets=insample",
            "pfd:cal=off",
            "pfd:folds=5",
            "cpfd:max_prob",
            "cpfd:max_prob:norm=mean_clip:loss=coupled",
            "cpfd:true_class",
        )
    ]
    got = {(a.split(":targets")[0] + a[a.index(":targets") :], b) for a, b in contrasts(names)}
    assert ("pfd:targets=oof:folds=3:cal=on", "pfd:targets=insample:cal=on") in got
    assert ("pfd:targets=oof:folds=3:cal=on", "pfd:targets=oof:folds=3:cal=off") in got
    assert ("pfd:targets=oof:folds=5:cal=on", "pfd:targets=oof:folds=3:cal=on") in got
    assert (names[4], names[5]) in got
    # different weightings, or two settings at once, are not a contrast
    assert not any({a, b} == {names[4], names[6]} or {a, b} == {names[2], names[1]} for a, b in got)


def test_hint_and_tuned_parts_are_spelled_and_paired():
    assert canonical_variant("pfd:hint=fused") == "pfd:targets=oof:folds=3:cal=on:hint=fused"
    assert canonical_variant("cpfd:max_prob:tuned").endswith(":cal=on:tuned")
    assert parse_variant("cpfd:max_prob:hint=fused:tuned").hint == "fused"
    names = [canonical_variant(v) for v in ("pfd", "pfd:hint=fused", "pfd:tuned", "pfd:hint=fused:tuned")]
    got = set(contrasts(names))
    assert (names[1], names[0]) in got  # the fused-hint side first
    assert (names[2], names[0]) in got and (names[3], names[1]) in got  # tuned against its own untuned variant
    assert (names[3], names[0]) not in got and (names[2], names[1]) not in got  # two differences: no contrast
    with pytest.raises(ValueError, match="hint"):
        parse_variant("pfd:hint=logits")
