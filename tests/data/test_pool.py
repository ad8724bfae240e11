"""The unlabelled pool in the data contract: null labels form a pool split that never meets validation or test."""

from __future__ import annotations

import logging

import pandas as pd
import pytest

from cpfd.config import load_config
from cpfd.data.build import build_scenario_dataset
from cpfd.errors import DataContractError
from tests.conftest import TINY


@pytest.fixture(scope="module")
def project(pool_dir):
    return load_config(pool_dir / "scenarios.yaml", TINY)


@pytest.fixture(scope="module")
def built(pool_dir, project, tmp_path_factory):
    out = tmp_path_factory.mktemp("pool_ds") / "clickbait"
    manifest = build_scenario_dataset(
        pool_dir / "videos.parquet", pool_dir / "features.parquet", "clickbait", project, out
    )
    return out, manifest


def _splits(folder) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(folder / f"{s}.parquet") for s in ("train", "val", "test")], ignore_index=True)


def test_null_labels_become_the_pool_and_never_enter_validation_or_test(pool_dir, built):
    out, manifest = built
    videos = pd.read_parquet(pool_dir / "videos.parquet")
    unlabelled = set(videos.loc[videos["label"].isna(), "video_id"])
    assert len(unlabelled) == 400
    pool = pd.read_parquet(out / "pool.parquet")
    assert set(pool["video_id"]) == unlabelled and (pool["label"] == -1).all()
    labelled = _splits(out)
    assert not set(labelled["video_id"]) & unlabelled
    assert (labelled["label"] >= 0).all() and manifest["rows"] == {"train": 120, "val": 30, "test": 50}
    info = manifest["pool"]
    assert info["rows"] == 400 and set(info["feature_coverage"]) == set(manifest["feature_names"])
    assert 0.8 < min(info["feature_coverage"].values()) < 1.0  # clickbait: 5 % of videos have no feature row
    assert (out / "stream" / "pool" / "index.json").exists()


def test_a_pool_leaves_the_labelled_splits_as_they_were(pool_dir, built, project, tmp_path):
    out, _ = built
    videos = pd.read_parquet(pool_dir / "videos.parquet")
    videos[videos["label"].notna()].to_parquet(pool_dir / "labelled_only.parquet")
    manifest = build_scenario_dataset(
        pool_dir / "labelled_only.parquet", pool_dir / "features.parquet", "clickbait", project, tmp_path / "no_pool"
    )
    assert manifest["pool"] == {"rows": 0} and not (tmp_path / "no_pool" / "pool.parquet").exists()
    pd.testing.assert_frame_equal(_splits(out), _splits(tmp_path / "no_pool"))


def test_a_pool_without_any_feature_is_an_error_naming_the_column(pool_dir, project, tmp_path):
    videos = pd.read_parquet(pool_dir / "videos.parquet")
    features = pd.read_parquet(pool_dir / "features.parquet")
    pool_ids = set(videos.loc[videos["label"].isna(), "video_id"])
    features[~features["video_id"].isin(pool_ids)].to_parquet(tmp_path / "features.parquet")
    with pytest.raises(
        DataContractError, match=r"none of its 400 unlabelled videos \(null 'label'\).*features.parquet"
    ):
        build_scenario_dataset(
            pool_dir / "videos.parquet", tmp_path / "features.parquet", "clickbait", project, tmp_path / "x"
        )


def test_a_scenario_without_a_pool_beside_one_with_is_a_warning(synthetic_dir, tiny_project, tmp_path, caplog):
    videos = pd.read_parquet(synthetic_dir / "videos.parquet")
    videos["label"] = (
        videos["label"].astype("Int64").mask((videos["scenario"] == "originality") & (videos.index % 3 == 0))
    )
    videos.to_parquet(tmp_path / "videos.parquet")
    (tmp_path / "frames").symlink_to(synthetic_dir / "frames")
    with caplog.at_level(logging.WARNING, logger="cpfd.data.build"):
        manifest = build_scenario_dataset(
            tmp_path / "videos.parquet", synthetic_dir / "features.parquet", "clickbait", tiny_project, tmp_path / "c"
        )
    assert manifest["pool"]["rows"] == 0
    assert "column 'label' is null for other scenarios' videos but for none of scenario 'clickbait'" in caplog.text
    assert str(tmp_path / "videos.parquet") in caplog.text
    other = build_scenario_dataset(
        tmp_path / "videos.parquet", synthetic_dir / "features.parquet", "originality", tiny_project, tmp_path / "o"
    )
    assert other["pool"]["rows"] == int((videos["scenario"] == "originality").sum() + 2) // 3


def test_a_scenario_with_only_unlabelled_videos_is_an_error(pool_dir, project, tmp_path):
    videos = pd.read_parquet(pool_dir / "videos.parquet").assign(label=pd.NA).astype({"label": "Int64"})
    videos.to_parquet(tmp_path / "videos.parquet")
    (tmp_path / "frames").symlink_to(pool_dir / "frames")
    with pytest.raises(DataContractError, match=r"column 'label' is null in all of its 600 videos"):
        build_scenario_dataset(
            tmp_path / "videos.parquet", pool_dir / "features.parquet", "clickbait", project, tmp_path / "x"
        )


def test_the_gate_checks_pool_rows_for_everything_but_labels(built, project, tmp_path):
    pytest.importorskip("great_expectations")
    import shutil

    from cpfd.components.validation import validate_dataset

    out, _ = built
    ok = validate_dataset(out, project, out_dir=tmp_path / "ok")
    assert ok["success"], ok["failed"]
    assert ok["rows"] == 600  # the pool's 400 rows are checked with the 200 labelled ones
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    pool = pd.read_parquet(bad / "pool.parquet")
    pool.loc[:9, "label"] = 1  # a pool row with a label
    pool["dense_00"] = float("nan")  # and a feature the pool lacks
    pool.to_parquet(bad / "pool.parquet")
    failed = validate_dataset(bad, project, out_dir=tmp_path / "bad_gx")["failed"]
    assert any("pool rows unlabelled" in f for f in failed), failed
    assert any("dense_00 null rate" in f for f in failed), failed
    assert not any("labels in 0..1" in f for f in failed)  # the labelled splits are still fine
