"""The shard format: frames from .npy files and from PNG/JPEG folders (kept encoded, decoded by the reader), across
shard boundaries, written to a URL, and the errors a bad frame reference gets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cpfd.data.frames import load_frames
from cpfd.data.shards import IMAGES, RAW, ShardReader, write_split_stream
from cpfd.errors import DataContractError

SHAPE = (3, 8, 10, 3)  # frames, height, width, channels


def _videos(tmp_path, n: int = 7) -> pd.DataFrame:
    """Videos 0, 3, 6 as PNG folders, 1 and 4 as JPEG folders, the rest rows of a stacked .npy."""
    rng = np.random.default_rng(0)
    stacked = rng.integers(0, 256, (n, *SHAPE), dtype=np.uint8)
    np.save(tmp_path / "frames.npy", stacked)
    refs = []
    for i in range(n):
        if i % 3 == 2:
            refs.append(f"{tmp_path / 'frames.npy'}#{i}")
            continue
        folder = tmp_path / f"video{i}"
        folder.mkdir()
        for t in range(SHAPE[0]):
            suffix = "png" if i % 3 == 0 else "jpg"
            Image.fromarray(stacked[i, t]).save(folder / f"{t:03d}.{suffix}")
        refs.append(str(folder))
    return pd.DataFrame(
        {
            "video_id": np.arange(100, 100 + n),
            "label": np.arange(n) % 2,
            "title": [f"title {i}" for i in range(n)],
            "frames": refs,
            "f0": np.where(np.arange(n) == 2, np.nan, np.arange(n, dtype=np.float32)),
        }
    )


def test_frames_round_trip_across_shards_and_encodings(tmp_path):
    videos = _videos(tmp_path)
    index = write_split_stream(videos, tmp_path / "stream", ["f0"], shard_rows=3, source="videos.parquet")
    assert [s["rows"] for s in index["shards"]] == [3, 3, 1] and index["frame_shape"] == list(SHAPE)
    reader = ShardReader(tmp_path / "stream")
    kinds = pd.read_parquet(tmp_path / "stream" / "shard-00000.parquet")["frames_kind"].tolist()
    assert kinds == [IMAGES, IMAGES, RAW]  # folders stay encoded in the shard
    rows = np.array([6, 0, 4, 2, 1])
    frames, titles, dense = reader.read(rows, frames=True)
    expected = load_frames(videos["frames"].iloc[rows].tolist(), ".")
    assert np.array_equal(frames, expected)  # PNG and JPEG decoded as PIL decodes the folder itself
    assert list(titles) == [f"title {i}" for i in rows]
    assert np.array_equal(dense[:, 0], videos["f0"].to_numpy(np.float32)[rows], equal_nan=True)
    assert reader.meta()["video_id"].tolist() == videos["video_id"].tolist()


def test_split_written_to_a_url_reads_back(tmp_path):
    videos = _videos(tmp_path, n=4)
    url = (tmp_path / "bucket" / "train").as_uri()
    write_split_stream(videos, url, ["f0"], shard_rows=2, source="videos.parquet")
    assert sorted(p.name for p in (tmp_path / "bucket" / "train").iterdir())[:2] == ["index.json", "meta.parquet"]
    frames, _, _ = ShardReader(url).read(np.array([3, 0]), frames=True)
    assert np.array_equal(frames, load_frames(videos["frames"].iloc[[3, 0]].tolist(), "."))


def test_a_folder_of_another_frame_shape_names_its_row(tmp_path):
    videos = _videos(tmp_path, n=4)
    odd = tmp_path / "odd"
    odd.mkdir()
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(odd / "000.png")
    videos.loc[3, "frames"] = str(odd)
    with pytest.raises(DataContractError, match=r"videos.parquet: column 'frames', row 3: .*odd has frames of shape"):
        write_split_stream(videos, tmp_path / "stream", ["f0"], shard_rows=8, source="videos.parquet")


def test_a_missing_stream_is_a_clear_error(tmp_path):
    with pytest.raises(DataContractError, match="no streamed split here"):
        ShardReader(tmp_path / "nothing")
