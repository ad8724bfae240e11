import numpy as np
import pandas as pd

from cpfd.benchmarks.synthetic import generate
from cpfd.data.build import point_in_time_join, time_splits


def test_generator_is_deterministic_by_seed(tmp_path):
    a = generate(tmp_path / "a", 40, seed=3, scenarios=["clickbait"])
    b = generate(tmp_path / "b", 40, seed=3, scenarios=["clickbait"])
    c = generate(tmp_path / "c", 40, seed=4, scenarios=["clickbait"])
    pd.testing.assert_frame_equal(pd.read_parquet(a["features"]), pd.read_parquet(b["features"]))
    assert np.array_equal(np.load(tmp_path / "a/frames/clickbait.npy"), np.load(tmp_path / "b/frames/clickbait.npy"))
    assert not pd.read_parquet(a["videos"])["title"].equals(pd.read_parquet(c["videos"])["title"])


def test_scenarios_differ_as_specified(synthetic_dir):
    v = pd.read_parquet(synthetic_dir / "videos.parquet")
    assert v.groupby("scenario")["label"].nunique().to_dict() == {"clickbait": 2, "originality": 4}
    assert v[v.scenario == "clickbait"]["label"].mean() < 0.45  # imbalanced


def _frames(rows):
    df = pd.DataFrame(rows, columns=["video_id", "event_timestamp", "created", "f"])
    for c in ("event_timestamp", "created"):
        df[c] = pd.to_datetime(df[c], utc=True)
    return df


def test_point_in_time_join_never_reads_the_future_and_keeps_stale_rows():
    entities = pd.DataFrame({"video_id": [1, 2, 3], "event_timestamp": pd.to_datetime(["2026-01-10"] * 3, utc=True)})
    features = _frames(
        [
            (1, "2026-01-09", "2026-01-09", 1.0),
            (1, "2026-01-11", "2026-01-11", 99.0),  # after the label: must not be joined
            (2, "2026-01-01", "2026-01-01", 2.0),  # older than the 7-day TTL: null, row kept
            (3, "2026-01-08", "2026-01-08", 3.0),
            (3, "2026-01-08", "2026-01-09", 4.0),  # same time, created later: wins
        ]
    )
    out = point_in_time_join(entities, features, ["f"])
    assert len(out) == 3 and out["video_id"].tolist() == [1, 2, 3]
    assert out["f"].iloc[0] == 1.0 and np.isnan(out["f"].iloc[1]) and out["f"].iloc[2] == 4.0


def test_time_splits_put_the_newest_videos_in_test(synthetic_dir):
    v = pd.read_parquet(synthetic_dir / "videos.parquet")
    s = time_splits(v[v.scenario == "clickbait"])
    assert s["train"]["event_timestamp"].max() <= s["val"]["event_timestamp"].min()
    assert s["val"]["event_timestamp"].max() <= s["test"]["event_timestamp"].min()
    assert sum(len(p) for p in s.values()) == (v.scenario == "clickbait").sum()


def test_built_dataset_has_no_leaked_feature_values(clickbait_dataset, synthetic_dir):
    """The synthetic source holds later rows that leak the label; the joined set must equal the earlier rows."""
    feats = pd.read_parquet(synthetic_dir / "features.parquet")
    train = pd.read_parquet(clickbait_dataset / "train.parquet")
    merged = train[["video_id", "event_timestamp", "dense_00"]].merge(
        feats[["video_id", "event_timestamp", "dense_00"]], on="video_id", suffixes=("", "_src")
    )
    used = merged[merged["dense_00"] == merged["dense_00_src"]]
    assert (used["event_timestamp_src"] <= used["event_timestamp"]).all()
