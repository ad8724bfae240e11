"""Pool rows through Feast: the unlabelled videos are joined point-in-time like labelled ones, and both join
backends build the same dataset, pool included, row for row."""

from __future__ import annotations

import pandas as pd
import pytest

pytest.importorskip("feast")

from cpfd.config import load_config  # noqa: E402
from cpfd.data.build import build_scenario_dataset  # noqa: E402
from cpfd.featurestore import build_dataset_feast  # noqa: E402
from tests.conftest import TINY  # noqa: E402

SPLITS = ("train", "val", "test", "pool")


def test_feast_and_pandas_build_the_same_pool_and_keep_it_out_of_validation_and_test(pool_dir, tmp_path):
    project = load_config(pool_dir / "scenarios.yaml", TINY)
    args = (pool_dir / "videos.parquet", pool_dir / "features.parquet", "clickbait", project)
    feast = build_dataset_feast(*args, tmp_path / "feast", store_dir=tmp_path / "store")
    pandas = build_scenario_dataset(*args, tmp_path / "pandas")
    assert feast["join_backend"] == "feast" and pandas["join_backend"] == "pandas.merge_asof"
    assert feast["pool"] == pandas["pool"] and feast["pool"]["rows"] == 400
    for split in SPLITS:
        a = pd.read_parquet(tmp_path / "feast" / f"{split}.parquet")
        b = pd.read_parquet(tmp_path / "pandas" / f"{split}.parquet")
        pd.testing.assert_frame_equal(a, b, check_dtype=False)  # row for row, value for value
    pool_ids = set(pd.read_parquet(tmp_path / "feast" / "pool.parquet")["video_id"])
    for split in ("val", "test"):
        assert not pool_ids & set(pd.read_parquet(tmp_path / "feast" / f"{split}.parquet")["video_id"])
    meta = [pd.read_parquet(tmp_path / b / "stream" / "pool" / "meta.parquet") for b in ("feast", "pandas")]
    pd.testing.assert_frame_equal(*meta)
