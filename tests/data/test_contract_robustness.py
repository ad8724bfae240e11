"""Real-world table faults: each gets a clear message naming the file and column, or a documented behaviour."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cpfd.config import load_config
from cpfd.data.build import build_scenario_dataset
from cpfd.data.contract import check_features, load_videos
from cpfd.errors import ConfigError, DataContractError
from tests.byo_data import write_byo_tables


@pytest.fixture(scope="module")
def byo(tmp_path_factory):
    root = tmp_path_factory.mktemp("byo_contract")
    paths = write_byo_tables(root, n=120)
    return root, paths, load_config(paths["config"])


def _features(**columns) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    ts = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(np.arange(n), unit="h")
    return pd.DataFrame({"video_id": np.arange(n, dtype=np.int64), "event_timestamp": ts, "created": ts, **columns})


def test_identical_repeated_video_rows_are_dropped_conflicting_ones_named(byo, tmp_path):
    root, paths, project = byo
    videos = pd.read_parquet(paths["videos"])
    pd.concat([videos, videos.iloc[:5]]).to_parquet(tmp_path / "dup.parquet")
    assert len(load_videos(tmp_path / "dup.parquet", project)) == len(videos)
    clash = videos.iloc[:1].assign(label=1 - videos["label"].iloc[0])
    pd.concat([videos, clash]).to_parquet(tmp_path / "clash.parquet")
    with pytest.raises(DataContractError, match=r"clash.parquet: 2 video rows share \(scenario, video_id\) but differ"):
        load_videos(tmp_path / "clash.parquet", project)


def test_feature_rows_at_one_timestamp():
    df = _features(f=np.arange(4, dtype=np.float32))
    assert len(check_features(pd.concat([df, df.iloc[:2]]), "f.parquet", ["f"])) == 4  # identical: dropped
    later = df.iloc[:1].assign(created=df["created"].iloc[0] + pd.Timedelta(minutes=1), f=9.0)
    assert len(check_features(pd.concat([df, later]), "f.parquet", ["f"])) == 5  # later `created` wins at the join
    clash = df.iloc[:1].assign(f=9.0)
    with pytest.raises(
        DataContractError, match=r"f.parquet: 2 feature rows share \(video_id, event_timestamp, created\)"
    ):
        check_features(pd.concat([df, clash]), "f.parquet", ["f"])


@pytest.mark.parametrize(
    "column, declared, message",
    [
        (
            np.array(["a", "b", "c"], dtype=object),
            "float32",
            r"feature column 'x' must be numeric \(float32\), found object",
        ),
        (np.array([True, False, True]), "float32", r"feature column 'x' must be numeric"),
        (np.array([0.5, 1.0, 2.0]), "int64", r"feature column 'x' is declared int64, found float64"),
        (np.array([np.nan] * 3), "float32", r"feature column 'x' has no value in any of its 3 rows"),
    ],
)
def test_bad_feature_columns_are_named(column, declared, message):
    with pytest.raises(DataContractError, match=r"src.parquet: " + message):
        check_features(_features(x=column), "src.parquet", ["x"], {"x": declared})


def test_undeclared_columns_are_ignored_whatever_their_type():
    df = _features(x=np.ones(3), notes=np.array(["free", "text", "here"], dtype=object))
    assert list(check_features(df, "src.parquet", ["x"]).columns) == ["video_id", "event_timestamp", "created", "x"]


def test_a_feature_table_that_matches_no_video_is_an_error(byo, tmp_path):
    root, paths, project = byo
    mod = pd.read_parquet(paths["mod_signals"])
    (tmp_path / "frames").symlink_to(root / "frames")
    pd.read_parquet(paths["videos"]).to_parquet(tmp_path / "videos.parquet")
    mod.assign(video_id=mod["video_id"] + 10**9).to_parquet(tmp_path / "mod_signals.parquet")
    with pytest.raises(DataContractError, match=r"none of its 120 videos has a feature row .*mod_signals.parquet"):
        build_scenario_dataset(tmp_path / "videos.parquet", tmp_path, "moderation", project, tmp_path / "ds")


def test_a_feature_missing_for_every_video_of_the_scenario_is_listed(byo, tmp_path):
    root, paths, project = byo
    mod = pd.read_parquet(paths["mod_signals"])
    (tmp_path / "frames").symlink_to(root / "frames")
    pd.read_parquet(paths["videos"]).to_parquet(tmp_path / "videos.parquet")
    extra = mod.iloc[:3].assign(video_id=[7, 8, 9], m_reports=1, m_watch_ratio=np.nan)  # values for other videos only
    pd.concat([mod.assign(m_watch_ratio=np.nan), extra.assign(m_watch_ratio=0.5)]).to_parquet(
        tmp_path / "mod_signals.parquet"
    )
    manifest = build_scenario_dataset(tmp_path / "videos.parquet", tmp_path, "moderation", project, tmp_path / "ds")
    assert manifest["features_without_values"] == ["m_watch_ratio"]
    assert manifest["feature_coverage"]["m_reports"] > 0.8


def test_a_single_file_for_a_service_of_several_sources_names_them(byo):
    root, paths, project = byo
    decl = project.feature_store.model_dump()
    decl["services"]["both"] = {"features": ["mod_view", "topic_view"]}
    from cpfd.features import FeatureDeclarations

    both = FeatureDeclarations.model_validate(decl)
    assert both.service_features("both") == ["m_reports", "m_watch_ratio", "t_channel_score", "t_click_rate"]
    with pytest.raises(DataContractError, match=r"2 sources are read \(mod_signals, topic_signals\).*folder"):
        both.source_paths(paths["mod_signals"], "both")
    assert both.source_paths(root, "both")["topic_signals"] == paths["topic_signals"].resolve()


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c["scenarios"][0].update(feature_service="nope"), r"scenarios.0.feature_service: 'nope'"),
        (lambda c: c["feature_store"]["services"]["topic_teacher_v1"].update(features=["ghost"]), r"view 'ghost'"),
        (
            lambda c: c["feature_store"]["services"]["topic_teacher_v1"].update(features=[{"topic_view": ["zz"]}]),
            r"column\(s\) \['zz'\] are not features of view 'topic_view'",
        ),
        (lambda c: c["feature_store"]["views"]["mod_view"].update(source="nowhere"), r"views.mod_view.source"),
        (
            lambda c: c["feature_store"]["services"]["topic_teacher_v1"].update(features=["topic_view", "topic_view"]),
            r"read twice",
        ),
        (lambda c: c["scenarios"][1].update(modalities=["audio"]), r"modalities"),
    ],
)
def test_bad_declarations_are_config_errors(byo, tmp_path, edit, message):
    import yaml

    from tests.byo_data import CONFIG

    config = yaml.safe_load(yaml.safe_dump(CONFIG))
    edit(config)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path / "c.yaml")


def test_a_users_feature_store_replaces_the_default_whole(byo):
    _, _, project = byo
    assert set(project.feature_store.services) == {"moderation_teacher_v1", "topic_teacher_v1"}
    assert load_config().feature_store.service_features("teacher_dense_v1")[:2] == ["dense_00", "dense_01"]
