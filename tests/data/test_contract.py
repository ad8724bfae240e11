"""Bad input gets a clear error naming the file and the column, from the library and the CLI."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from cpfd.data.build import build_scenario_dataset
from cpfd.data.contract import load_videos
from cpfd.errors import DataContractError


@pytest.fixture()
def videos(synthetic_dir):
    return pd.read_parquet(synthetic_dir / "videos.parquet")


def _write(df, tmp_path, synthetic_dir):
    path = tmp_path / "videos.parquet"
    df.to_parquet(path)
    (tmp_path / "frames").symlink_to(synthetic_dir / "frames")
    return path


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.drop(columns=["title"]), r"missing column 'title', needed by scenario\(s\) clickbait"),
        (lambda d: d.drop(columns=["label"]), r"missing column\(s\) label"),
        (lambda d: d.assign(label=d["label"].astype(str)), r"column 'label' must be integer"),
        (lambda d: d.assign(label=d["label"].astype("float").where(d.index != 3, 0.5)), r"'label' must hold whole"),
        (lambda d: d.assign(label=d["label"].where(d.index != 3, -1)), r"'label' has negative value\(s\) \[-1\]"),
        (lambda d: d.assign(event_timestamp="yesterday"), r"column 'event_timestamp' must be a timestamp"),
        (
            lambda d: d.assign(scenario=d["scenario"].where(d.index != 0, "cooking")),
            r"unknown scenario\(s\) \['cooking'\]",
        ),
        (
            lambda d: d.assign(label=d["label"].where(d.index != 0, 7)),
            r"column 'label' of scenario '\w+' has value\(s\) \[7\]",
        ),
        (lambda d: d.iloc[:0], r"empty"),
    ],
)
def test_contract_errors_name_file_and_column(videos, tmp_path, synthetic_dir, tiny_project, mutate, message):
    path = _write(mutate(videos), tmp_path, synthetic_dir)
    with pytest.raises(DataContractError, match=message) as err:
        load_videos(path, tiny_project)
    assert str(path) in str(err.value)


def test_unreadable_frames_name_the_frame_file(videos, tmp_path, synthetic_dir, tiny_project):
    bad = tmp_path / "frames_bad"
    bad.mkdir()
    (bad / "clickbait.npy").write_bytes(b"not a numpy file")
    df = videos.assign(frames=videos["frames"].str.replace("frames/", "frames_bad/"))
    path = _write(df, tmp_path, synthetic_dir)
    # the build writes the training shards, so it reads every frame and stops there, before any training
    with pytest.raises(DataContractError, match=r"column 'frames' -> .*frames_bad/clickbait.npy: unreadable frames"):
        build_scenario_dataset(path, synthetic_dir / "features.parquet", "clickbait", tiny_project, tmp_path / "ds")


def test_wrong_frame_shape_is_named(tmp_path):
    from cpfd.data.frames import load_frames

    np.save(tmp_path / "v.npy", np.zeros((4, 8, 8), np.uint8))
    with pytest.raises(DataContractError, match=r"v.npy.*must be \[T, H, W, 3\], found shape \(4, 8, 8\)"):
        load_frames(["v.npy"], tmp_path)
    np.save(tmp_path / "f.npy", np.zeros((4, 8, 8, 3), np.float32))
    with pytest.raises(DataContractError, match="must be uint8"):
        load_frames(["f.npy"], tmp_path)


def test_frame_folder_of_pngs_loads(tmp_path):
    from PIL import Image

    from cpfd.data.frames import load_frames

    clip = tmp_path / "clip"
    clip.mkdir()
    for i in range(3):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(clip / f"{i:03d}.png")
    frames = load_frames(["clip"], tmp_path, num_frames=2)
    assert frames.shape == (1, 2, 8, 8, 3)
    assert frames[0, 1, 0, 0, 0] == 80  # last frame of three


def test_cli_reports_error_without_traceback(videos, tmp_path, synthetic_dir):
    path = _write(videos.drop(columns=["frames"]), tmp_path, synthetic_dir)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cpfd.cli.main",
            "dataset",
            "build",
            "--videos",
            str(path),
            "--features",
            str(synthetic_dir / "features.parquet"),
            "--scenario",
            "clickbait",
            "--out",
            str(tmp_path / "o"),
            "--config",
            str(synthetic_dir / "scenarios.yaml"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "missing column 'frames', needed by scenario(s) clickbait" in proc.stderr
    assert "modalities: [title]" in proc.stderr
    assert "Traceback" not in proc.stderr
