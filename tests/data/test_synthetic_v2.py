"""Generator v2: slices in the stated proportions, ground truth kept out of the datasets."""

import numpy as np
import pandas as pd
import pytest

from cpfd.data.synthetic import N_SCENES, SCENARIOS, generate


@pytest.fixture(scope="module")
def v2(tmp_path_factory):
    out = tmp_path_factory.mktemp("v2")
    return generate(out, videos_per_scenario=4000, seed=3)


def test_slices_appear_in_the_stated_proportions(v2):
    oracle = pd.read_parquet(v2["oracle"])
    for spec in SCENARIOS:
        sl = oracle.loc[oracle["scenario"] == spec.name, "feature_slice"].value_counts(normalize=True)
        expected = {
            "missing": spec.missing,
            "stale": spec.stale,
            "misleading": (1 - spec.missing - spec.stale) * spec.misread_scenes / N_SCENES,
        }
        for kind, share in expected.items():
            # binomial standard error on 4,000 videos is under 0.8 points
            assert sl.get(kind, 0.0) == pytest.approx(share, abs=0.025), (spec.name, kind)


def test_label_noise_and_feature_rows_follow_the_slices(v2):
    videos = pd.read_parquet(v2["videos"])
    oracle = pd.read_parquet(v2["oracle"]).set_index("video_id")
    feats = pd.read_parquet(v2["features"])
    for spec in SCENARIOS:
        v = videos[videos["scenario"] == spec.name]
        assert (v["label"] != v["true_label"]).mean() == pytest.approx(spec.label_noise, abs=0.02)
    missing = oracle.index[oracle["feature_slice"] == "missing"]
    before = feats.merge(videos[["video_id", "event_timestamp"]], on="video_id", suffixes=("", "_label"))
    before = before[before["event_timestamp"] <= before["event_timestamp_label"]]
    assert not set(before["video_id"]) & set(missing)  # a missing video has no row before its label
    present = oracle.index[oracle["feature_slice"] != "missing"]
    assert set(present) <= set(before["video_id"])


def test_bayes_references_beat_chance_and_privileged_is_not_worse(v2):
    oracle = pd.read_parquet(v2["oracle"])
    acc_c = (oracle["bayes_content"] == oracle["true_label"]).mean()
    acc_p = (oracle["bayes_privileged"] == oracle["true_label"]).mean()
    assert acc_c > 0.8 and acc_p >= acc_c - 0.005


def test_true_label_never_reaches_a_dataset(v2, tmp_path):
    from cpfd.config import load_config
    from cpfd.data.build import build_scenario_dataset

    assert "true_label" in pd.read_parquet(v2["videos"]).columns
    cfg = load_config(v2["config"])
    build_scenario_dataset(v2["videos"], v2["features"], "clickbait", cfg, tmp_path / "ds")
    assert "true_label" not in pd.read_parquet(tmp_path / "ds" / "train.parquet").columns


def test_v1_stays_reachable(tmp_path):
    paths = generate(tmp_path, videos_per_scenario=100, seed=0, scenarios=["clickbait"], version=1)
    assert "oracle" not in paths and "true_label" not in pd.read_parquet(paths["videos"]).columns
    assert np.isin(pd.read_parquet(paths["videos"])["label"], [0, 1]).all()
