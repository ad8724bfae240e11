"""Bring-your-own data through both join backends: per-scenario feature services over separate feature tables,
timestamps of any resolution, declarations checked against the Parquet schemas."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

pytest.importorskip("feast")

from cpfd.config import load_config  # noqa: E402
from cpfd.data.build import build_scenario_dataset  # noqa: E402
from cpfd.errors import DataContractError  # noqa: E402
from cpfd.featurestore import build_dataset_feast  # noqa: E402
from tests.byo_data import write_byo_tables  # noqa: E402

OWN_COLUMNS = {"moderation": ["m_reports", "m_watch_ratio"], "topic": ["t_channel_score", "t_click_rate"]}


@pytest.fixture(scope="module")
def byo(tmp_path_factory):
    root = tmp_path_factory.mktemp("byo")
    paths = write_byo_tables(root)
    return root, paths, load_config(paths["config"])


def _splits(folder) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(folder / f"{s}.parquet") for s in ("train", "val", "test")], ignore_index=True)


@pytest.mark.parametrize("scenario", ["moderation", "topic"])
def test_each_teacher_reads_only_its_service_and_both_backends_agree(byo, tmp_path, scenario):
    root, paths, project = byo
    feast = build_dataset_feast(paths["videos"], root, scenario, project, tmp_path / "feast")
    pandas = build_scenario_dataset(paths["videos"], root, scenario, project, tmp_path / "pandas")
    assert feast["feature_names"] == pandas["feature_names"] == OWN_COLUMNS[scenario]
    a, b = _splits(tmp_path / "feast"), _splits(tmp_path / "pandas")
    other = OWN_COLUMNS["topic" if scenario == "moderation" else "moderation"]
    assert not set(other) & set(a.columns) and not set(other) & set(b.columns)
    pd.testing.assert_frame_equal(a, b, check_dtype=False)  # row for row, value for value
    assert 0.8 < feast["feature_coverage"][OWN_COLUMNS[scenario][0]] < 1.0  # a tenth of the videos have no row
    assert set(feast["feature_sources"]) == {"mod_signals" if scenario == "moderation" else "topic_signals"}


def test_topic_is_text_only_without_a_frames_column(byo, tmp_path):
    root, paths, project = byo
    manifest = build_scenario_dataset(paths["videos"], root, "topic", project, tmp_path / "topic")
    assert manifest["modalities"] == ["title"]
    assert "frames" not in _splits(tmp_path / "topic").columns
    videos = pd.read_parquet(paths["videos"])
    only_topic = videos[videos["scenario"] == "topic"].drop(columns=["frames"])
    only_topic.to_parquet(tmp_path / "topic_videos.parquet")
    build_scenario_dataset(tmp_path / "topic_videos.parquet", root, "topic", project, tmp_path / "again")
    moderation = videos[videos["scenario"] == "moderation"].drop(columns=["frames"])
    moderation.to_parquet(tmp_path / "mod_videos.parquet")
    with pytest.raises(DataContractError, match=r"mod_videos.parquet: missing column 'frames', needed by .*moderation"):
        build_scenario_dataset(tmp_path / "mod_videos.parquet", root, "moderation", project, tmp_path / "x")


@pytest.mark.parametrize("videos_unit, features_unit", [("us", "ns"), ("ns", "us"), ("ms", "s")])
def test_timestamp_resolutions_build_the_same_dataset(byo, tmp_path, videos_unit, features_unit):
    root, paths, project = byo
    reference = _splits_of(build_scenario_dataset, paths["videos"], root, project, tmp_path / "ref")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    _resave(paths["videos"], mixed / "videos.parquet", videos_unit)
    _resave(paths["mod_signals"], mixed / "mod_signals.parquet", features_unit)
    (mixed / "frames").symlink_to(root / "frames")
    for backend in (build_scenario_dataset, build_dataset_feast):
        got = _splits_of(backend, mixed / "videos.parquet", mixed, project, tmp_path / backend.__name__)
        if videos_unit in ("us", "ns") and features_unit in ("us", "ns"):
            pd.testing.assert_frame_equal(got, reference, check_dtype=False)
        else:  # coarser clocks: the same videos, rows and columns; feature rows 2 h earlier still join
            assert got["video_id"].tolist() == reference["video_id"].tolist()
            assert got["m_reports"].notna().sum() == reference["m_reports"].notna().sum()


def _resave(src, dst, unit: str) -> None:
    df = pd.read_parquet(src)
    for c in ("event_timestamp", "created"):
        if c in df:
            df[c] = df[c].dt.floor({"s": "s", "ms": "ms"}.get(unit, "us")).astype(f"datetime64[{unit}, UTC]")
    df.to_parquet(dst, index=False)


def _splits_of(build, videos, features, project, out) -> pd.DataFrame:
    build(videos, features, "moderation", project, out)
    return _splits(out)


def test_naive_timestamps_are_read_as_utc(byo, tmp_path):
    root, paths, project = byo
    reference = _splits_of(build_scenario_dataset, paths["videos"], root, project, tmp_path / "ref")
    naive = tmp_path / "naive"
    naive.mkdir()
    for name in ("videos", "mod_signals"):
        df = pd.read_parquet(paths[name])
        for c in ("event_timestamp", "created"):
            if c in df:
                df[c] = df[c].dt.tz_localize(None)
        df.to_parquet(naive / f"{name}.parquet", index=False)
    (naive / "frames").symlink_to(root / "frames")
    for backend in (build_scenario_dataset, build_dataset_feast):
        got = _splits_of(backend, naive / "videos.parquet", naive, project, tmp_path / backend.__name__)
        pd.testing.assert_frame_equal(got, reference, check_dtype=False)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cpfd.cli", *args], capture_output=True, text=True, timeout=300)


def test_features_apply_checks_declarations_against_the_parquet_schemas(byo, tmp_path):
    root, paths, _ = byo
    ok = _cli(
        "features", "apply", "--data", str(root), "--store", str(tmp_path / "store"), "--config", str(paths["config"])
    )
    assert ok.returncode == 0, ok.stderr
    assert "feature service moderation_teacher_v1: mod_view" in ok.stdout
    assert "feature service topic_teacher_v1: topic_view" in ok.stdout
    broken = tmp_path / "broken"
    broken.mkdir()
    pd.read_parquet(paths["mod_signals"]).drop(columns=["m_watch_ratio"]).to_parquet(broken / "mod_signals.parquet")
    topic = pd.read_parquet(paths["topic_signals"])
    topic.assign(t_click_rate=topic["t_click_rate"].astype(str)).to_parquet(broken / "topic_signals.parquet")
    missing = _cli("features", "apply", "--data", str(broken), "--config", str(paths["config"]))
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert "mod_signals.parquet: declared feature column(s) m_watch_ratio are missing" in missing.stderr
    pd.read_parquet(paths["mod_signals"]).to_parquet(broken / "mod_signals.parquet")
    wrong = _cli("features", "apply", "--data", str(broken), "--config", str(paths["config"]))
    assert wrong.returncode != 0 and "Traceback" not in wrong.stderr
    assert (
        "topic_signals.parquet: feature column 't_click_rate' must be numeric (float32), found object" in wrong.stderr
    )
