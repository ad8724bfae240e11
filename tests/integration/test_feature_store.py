"""The Feast repository with a real store (SQL registry on SQLite, DuckDB offline store), no mocks."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

pytest.importorskip("feast")

from cpfd.data.build import point_in_time_join  # noqa: E402
from cpfd.featurestore import (  # noqa: E402
    apply_repo,
    build_dataset_feast,
    feature_repo_dir,
    historical_features,
    load_definitions,
    service_features,
)

pytestmark = pytest.mark.integration
NAMES = [f"dense_{i:02d}" for i in range(32)]
T = pd.Timestamp("2026-02-01 12:00:00", tz="UTC")


def _rows(spec: list[tuple[int, pd.Timestamp, float, pd.Timedelta]]) -> pd.DataFrame:
    """Feature rows (video_id, ts, value in every column, created delay)."""
    df = pd.DataFrame(np.array([[v] * 32 for _, _, v, _ in spec], dtype=np.float32), columns=NAMES)
    df.insert(0, "video_id", np.array([s[0] for s in spec], dtype=np.int64))
    df.insert(1, "event_timestamp", pd.DatetimeIndex([s[1] for s in spec]))
    df.insert(2, "created", df["event_timestamp"] + pd.TimedeltaIndex([s[3] for s in spec]))
    return df


@pytest.fixture(scope="module")
def handmade(tmp_path_factory):
    """Hand-built entity rows and feature rows around the PIT and TTL edges, applied to a real store."""
    root = tmp_path_factory.mktemp("feast_handmade")
    m5, m10 = pd.Timedelta(minutes=5), pd.Timedelta(minutes=10)
    features = _rows(
        [
            (1, T - pd.Timedelta(hours=1), 1.0, m5),  # before the label: joined
            (1, T + pd.Timedelta(hours=1), 99.0, m5),  # after the label (leaks it): never joined
            (2, T - pd.Timedelta(days=8), 2.0, m5),  # outside the 7-day TTL: null, row kept
            (4, T - pd.Timedelta(days=2), 3.0, m5),
            (4, T - pd.Timedelta(hours=2), 4.0, m5),  # the latest one before the label wins
            (5, T - pd.Timedelta(hours=1), 5.0, m5),
            (5, T - pd.Timedelta(hours=1), 6.0, m10),  # same event time: the later `created` wins
            (6, T, 7.0, m5),  # exactly at the label time: joined
        ]
    )
    features.to_parquet(root / "features.parquet", index=False)
    entities = pd.DataFrame(
        {
            "video_id": np.array([1, 2, 3, 4, 5, 6, 1], dtype=np.int64),  # video 3 has no feature row at all
            "event_timestamp": [T, T, T, T, T, T + pd.Timedelta(nanoseconds=700), T - pd.Timedelta(hours=2)],
            "label": np.arange(7, dtype=np.int64),
        }
    )
    store = apply_repo(root / "features.parquet", root / "store")
    return store, entities, features


def test_point_in_time_ttl_and_row_count(handmade):
    store, entities, features = handmade
    joined = historical_features(store, entities, "teacher_dense_v1")
    assert len(joined) == len(entities)  # entity rows in == rows out
    assert joined["label"].tolist() == list(range(7))  # input order kept, extra columns passed through
    got = joined["dense_00"].tolist()
    assert got[0] == 1.0  # the later, leaking row (99) is never joined
    assert np.isnan(got[1])  # outside the TTL: null, row kept
    assert np.isnan(got[2])  # no feature row: null, row kept
    assert got[3] == 4.0 and got[4] == 6.0 and got[5] == 7.0
    assert np.isnan(got[6])  # video 1 two hours before its only earlier row
    assert 99.0 not in joined[NAMES].to_numpy()
    reference = point_in_time_join(entities, features, NAMES, timedelta(days=7))
    np.testing.assert_array_equal(joined[NAMES].to_numpy(), reference[NAMES].to_numpy().astype(np.float32))


def test_feature_service_names_exactly_the_teacher_features(handmade):
    store, _, _ = handmade
    assert service_features(store, "teacher_dense_v1") == NAMES
    services = store.list_feature_services()
    assert [s.name for s in services] == ["teacher_dense_v1"]  # one per teacher version, none for the student
    for view in store.list_feature_views():
        assert view.online is False and view.ttl == timedelta(days=7)
    for obj in [*store.list_entities(), *store.list_data_sources(), *store.list_feature_views(), *services]:
        assert obj.owner and obj.description and obj.tags, obj.name


def test_feast_build_equals_pandas_build(synthetic_dir, tiny_project, tmp_path):
    videos, features = synthetic_dir / "videos.parquet", synthetic_dir / "features.parquet"
    manifest = build_dataset_feast(videos, features, "originality", tiny_project, tmp_path / "feast")
    from cpfd.data.build import build_scenario_dataset

    reference = build_scenario_dataset(videos, features, "originality", tiny_project, tmp_path / "pandas")
    assert manifest["join_backend"] == "feast" and manifest["feature_service"] == "teacher_dense_v1"
    lineage = manifest["feast"]  # what was read, as in a team's own Feast (reference mode)
    assert lineage["mode"] == "declarations" and lineage["feature_service"] == "teacher_dense_v1"
    assert [r.split(":")[1] for r in lineage["feature_refs"]] == manifest["feature_names"]
    assert lineage["offline_store"]["type"] and set(lineage["sources"]) and lineage["project"]
    assert json.loads((tmp_path / "feast" / "manifest.json").read_text())["feast"] == lineage
    assert manifest["feature_names"] == reference["feature_names"] and manifest["rows"] == reference["rows"]
    n_videos = int((pd.read_parquet(videos)["scenario"] == "originality").sum())
    assert sum(manifest["rows"].values()) == n_videos
    parts = []
    for split in ("train", "val", "test"):
        a = pd.read_parquet(tmp_path / "feast" / f"{split}.parquet")
        pd.testing.assert_frame_equal(a, pd.read_parquet(tmp_path / "pandas" / f"{split}.parquet"))
        parts.append(a)
    joined = pd.concat(parts)
    # no joined row carries the values of a feature row timestamped after its video's label
    later = pd.read_parquet(features).merge(
        joined[["video_id", "event_timestamp"]], on="video_id", suffixes=("", "_label")
    )
    later = later[later["event_timestamp"] > later["event_timestamp_label"]]
    assert len(later) > 20
    leaked = later[["video_id", "dense_00"]].merge(joined[["video_id", "dense_00"]], on=["video_id", "dense_00"])
    assert leaked.empty


def test_missing_feature_column_is_a_clear_error(synthetic_dir, tiny_project, tmp_path):
    from cpfd.errors import DataContractError

    broken = pd.read_parquet(synthetic_dir / "features.parquet").rename(columns={"dense_31": "dense_x"})
    broken.to_parquet(tmp_path / "features.parquet", index=False)
    with pytest.raises(DataContractError, match=r"features.parquet: declared feature column\(s\) dense_31 are missing"):
        build_dataset_feast(
            synthetic_dir / "videos.parquet", tmp_path / "features.parquet", "clickbait", tiny_project, tmp_path / "ds"
        )


def test_spark_config_is_loadable(tmp_path):
    """The Spark store config against Feast's config models (test_feast_spark.py runs it)."""
    from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource
    from feast.repo_config import OFFLINE_STORE_CLASS_FOR_TYPE, RepoConfig

    path = feature_repo_dir() / "feature_store.spark.yaml"
    raw = yaml.safe_load(os.path.expandvars(path.read_text()))
    default = yaml.safe_load((feature_repo_dir() / "feature_store.yaml").read_text())
    assert raw["project"] == default["project"] and raw["registry"]["registry_type"] == "sql"
    assert raw["offline_store"]["type"] == "spark" and raw["offline_store"]["type"] in OFFLINE_STORE_CLASS_FOR_TYPE
    assert set(raw["offline_store"]) <= {"type", "spark_conf", "staging_location", "region"}
    RepoConfig(**{**raw, "offline_store": {"type": "duckdb"}})  # everything but the Spark part validates
    from cpfd.config import default_feature_store

    decl = default_feature_store()
    objects = load_definitions(
        decl.model_copy(update={"offline": "spark"}), decl.source_paths(tmp_path / "features.parquet"), tmp_path
    )
    sources = [o for o in objects if isinstance(o, SparkSource)]
    assert len(sources) == 1 and sources[0].path == str((tmp_path / "features.parquet").resolve())


def test_spark_store_config_instantiates(tmp_path):
    pytest.importorskip("pyspark", reason="feast[spark] not installed here")
    from feast.repo_config import load_repo_config

    assert (
        load_repo_config(Path(tmp_path), feature_repo_dir() / "feature_store.spark.yaml").offline_store.type == "spark"
    )
