"""The Great Expectations data gate: passes clean data, fails naming the expectation on each defect."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("great_expectations")

from cpfd.components.validation import validate_dataset  # noqa: E402

pytestmark = pytest.mark.integration
SPLITS = ("train", "val", "test")


def _corrupt(clean: Path, out: Path, edit) -> Path:
    """Copy a built dataset, applying edit(split_name, frame) -> frame to each split."""
    out.mkdir(parents=True)
    shutil.copy(clean / "manifest.json", out / "manifest.json")
    for split in SPLITS:
        edit(split, pd.read_parquet(clean / f"{split}.parquet")).to_parquet(out / f"{split}.parquet", index=False)
    return out


def _half_null(split, df):
    df = df.copy()
    df.loc[df.index[::2], "dense_05"] = float("nan")
    return df


def _leak_video(split, df, clean):
    if split != "test":
        return df
    return pd.concat([df, pd.read_parquet(clean / "train.parquet").head(1)], ignore_index=True)


def _label_outside(split, df):
    return df.assign(label=df["label"].where(df.index % 5 != 0, 7))


CASES = {
    "half_null_dense": (_half_null, "expect_column_values_to_not_be_null(dense_05)"),
    "renamed_column": (lambda s, df: df.rename(columns={"dense_07": "dense_7"}), "expect_table_columns_to_match_set"),
    "labels_outside_set": (_label_outside, "expect_column_values_to_be_in_set(label)"),
    "shifted_range": (
        lambda s, df: df.assign(dense_03=df["dense_03"] + 10 * df["dense_03"].std() + 50),
        "expect_column_values_to_be_between(dense_03)",
    ),
    "video_id_leaked_across_splits": (None, "expect_column_values_to_be_unique(video_id)"),
    "empty_table": (lambda s, df: df.iloc[:0], "expect_table_row_count_to_be_between"),
}
# defects that must fail only the expectation that names them (the others also break column-level checks)
SPECIFIC = {"half_null_dense", "labels_outside_set", "shifted_range", "video_id_leaked_across_splits"}


def test_gate_passes_clean_data(clickbait_dataset, tiny_project, tmp_path):
    summary = validate_dataset(clickbait_dataset, tiny_project, out_dir=tmp_path / "v")
    assert summary["success"], summary["failed"]
    assert summary["failed"] == [] and summary["expectations"] > 3 * 32
    assert Path(summary["data_docs"]).exists() and "<html" in Path(summary["data_docs"]).read_text().lower()
    stored = json.loads(Path(summary["result_json"]).read_text())
    assert stored["summary"]["success"] is True and stored["result"]["success"] is True


@pytest.mark.parametrize("case", list(CASES))
def test_gate_fails_naming_the_expectation(case, clickbait_dataset, tiny_project, tmp_path):
    edit, expected = CASES[case]
    if edit is None:

        def edit(split, df):
            return _leak_video(split, df, clickbait_dataset)

    bad = _corrupt(clickbait_dataset, tmp_path / case, edit)
    summary = validate_dataset(bad, tiny_project, reference_dir=clickbait_dataset, out_dir=tmp_path / "v")
    assert not summary["success"]
    names = [f.split(":")[0] for f in summary["failed"]]
    assert expected in names, summary["failed"]
    if case in SPECIFIC:
        assert names == [expected], summary["failed"]
    if case == "renamed_column":
        assert any("missing: dense_07" in f and "unexpected: dense_7" in f for f in summary["failed"])
    assert json.loads(Path(summary["result_json"]).read_text())["summary"]["failed"] == summary["failed"]


def test_cli_exits_nonzero_with_the_summary(clickbait_dataset, synthetic_dir, tmp_path):
    from typer.testing import CliRunner

    from cpfd.cli.main import app

    bad = _corrupt(clickbait_dataset, tmp_path / "bad", _label_outside)
    result = CliRunner().invoke(
        app,
        [
            "dataset",
            "validate",
            "--dataset",
            str(bad),
            "--reference",
            str(clickbait_dataset),
            "--config",
            str(synthetic_dir / "scenarios.yaml"),
            "--out",
            str(tmp_path / "v"),
        ],
    )
    assert result.exit_code == 1, result.output
    assert "FAILED expect_column_values_to_be_in_set(label)" in result.output
    assert "data gate FAILED" in result.output
