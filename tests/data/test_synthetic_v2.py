"""Generator v2: slices in the stated proportions, ground truth kept out of the datasets."""

import pandas as pd
import pytest

from cpfd.benchmarks.synthetic import N_SCENES, SCENARIOS, generate


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


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    names = ["title_interaction", "engagement_only", "mixed_reliability"]
    return generate(out, videos_per_scenario=3000, seed=1, scenarios=names)


@pytest.mark.slow  # 3 x 3,000 videos: make test, not make test-fast
def test_title_interaction_no_single_marker_word_tells_the_class_and_the_pair_does(bench):
    videos = pd.read_parquet(bench["videos"])
    v = videos[videos["scenario"] == "title_interaction"]
    words = v["title"].str.split()
    counts = pd.Series([w for ws in words for w in set(ws)]).value_counts()
    markers = counts[counts > 0.1 * len(v)].index  # the 16 markers: each in about 1/8 of the titles
    assert len(markers) == 16
    z = v["true_label"].to_numpy()
    for m in markers:
        has = words.apply(lambda ws, m=m: m in ws).to_numpy()
        assert abs(z[has].mean() - z.mean()) < 0.05, m  # one word alone: no information about the class
    oracle = pd.read_parquet(bench["oracle"])
    o = oracle[oracle["scenario"] == "title_interaction"]
    assert (o["bayes_content"] == o["true_label"]).all()  # the pair decides the class exactly


@pytest.mark.slow  # 3 x 3,000 videos: make test, not make test-fast
def test_mixed_reliability_is_clean_where_the_features_are_missing_and_noisy_elsewhere(bench):
    videos = pd.read_parquet(bench["videos"]).set_index("video_id")
    oracle = pd.read_parquet(bench["oracle"]).set_index("video_id")
    o = oracle[oracle["scenario"] == "mixed_reliability"]
    wrong = videos.loc[o.index, "label"] != videos.loc[o.index, "true_label"]
    missing = o["feature_slice"] == "missing"
    assert missing.mean() == pytest.approx(0.35, abs=0.03)
    assert wrong[missing].mean() == 0.0 and wrong[~missing].mean() == pytest.approx(0.30, abs=0.03)


@pytest.mark.slow  # 3 x 3,000 videos: make test, not make test-fast
def test_engagement_only_gives_the_teacher_an_edge_the_content_does_not_carry(bench):
    o = pd.read_parquet(bench["oracle"])
    o = o[o["scenario"] == "engagement_only"]
    content = (o["bayes_content"] == o["true_label"]).mean()
    privileged = (o["bayes_privileged"] == o["true_label"]).mean()
    assert privileged > content + 0.03  # engagement adds what no content model can learn


@pytest.mark.slow  # 3 x 3,000 videos: make test, not make test-fast
def test_bench_scenarios_get_their_config_and_unknown_names_are_refused(bench, tmp_path):
    import yaml

    from cpfd.errors import DataContractError

    cfg = yaml.safe_load(bench["config"].read_text())
    assert [c["name"] for c in cfg["scenarios"]] == ["title_interaction", "engagement_only", "mixed_reliability"]
    assert all(c["label_names"] and c["description"] for c in cfg["scenarios"])
    with pytest.raises(DataContractError, match="unknown synthetic scenario"):
        generate(tmp_path, videos_per_scenario=30, scenarios=["nope"])
