"""The data contract: read and check the videos table and the privileged feature source.

Every problem is a ``DataContractError`` whose message names the file and the column.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cpfd.config import ProjectConfig
from cpfd.errors import DataContractError

VIDEO_COLUMNS = ("video_id", "scenario", "event_timestamp", "label", "title", "frames")
FEATURE_KEYS = ("video_id", "event_timestamp", "created")


def read_parquet(path: str | Path, what: str) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise DataContractError(f"{what} not found: {path}")
    try:
        return pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several kinds for a bad file
        raise DataContractError(f"{path}: cannot read {what} as Parquet ({type(e).__name__}: {e})") from None


def _require_columns(df: pd.DataFrame, columns: tuple[str, ...], path: Path | str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataContractError(
            f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(map(str, df.columns))}"
        )


def _require_int(df: pd.DataFrame, column: str, path: Path | str) -> None:
    if not pd.api.types.is_integer_dtype(df[column]):
        nulls = int(df[column].isna().sum())
        hint = f" ({nulls} null value(s))" if nulls else ""
        raise DataContractError(f"{path}: column {column!r} must be integer, found {df[column].dtype}{hint}")


def _require_timestamp(df: pd.DataFrame, column: str, path: Path | str) -> pd.Series:
    col = df[column]
    if not pd.api.types.is_datetime64_any_dtype(col):
        raise DataContractError(f"{path}: column {column!r} must be a timestamp, found {col.dtype}")
    if col.isna().any():
        raise DataContractError(f"{path}: column {column!r} has {int(col.isna().sum())} null value(s)")
    col = col.dt.tz_localize("UTC") if col.dt.tz is None else col.dt.tz_convert("UTC")
    # the DuckDB offline store rejects nanosecond precision
    return col.dt.floor("us")


def check_videos(df: pd.DataFrame, config: ProjectConfig, path: Path | str = "videos table") -> pd.DataFrame:
    """Validate a videos table against the contract and the scenario configs.

    Returns a normalised copy with the contract's columns only: extra columns (e.g. the
    generator's ``true_label``) never reach a dataset.
    """
    _require_columns(df, VIDEO_COLUMNS, path)
    df = df.copy()
    if df.empty:
        raise DataContractError(f"{path}: the videos table is empty")
    if df["label"].isna().any():
        rows = df.index[df["label"].isna()][:5].tolist()
        raise DataContractError(
            f"{path}: column 'label' has {int(df['label'].isna().sum())} null value(s), e.g. rows {rows}"
        )
    for column in ("video_id", "label"):
        _require_int(df, column, path)
    for column in ("scenario", "title", "frames"):
        if not (pd.api.types.is_string_dtype(df[column]) or pd.api.types.is_object_dtype(df[column])):
            raise DataContractError(f"{path}: column {column!r} must be string, found {df[column].dtype}")
        if df[column].isna().any():
            raise DataContractError(f"{path}: column {column!r} has {int(df[column].isna().sum())} null value(s)")
    df["event_timestamp"] = _require_timestamp(df, "event_timestamp", path)
    known = {s.name: s for s in config.scenarios}
    unknown = sorted(set(df["scenario"]) - set(known))
    if unknown:
        raise DataContractError(
            f"{path}: column 'scenario' has unknown scenario(s) {unknown}; configured: {sorted(known)}"
        )
    for name, group in df.groupby("scenario"):
        k = known[name].num_classes
        bad = group["label"][(group["label"] < 0) | (group["label"] >= k)]
        if len(bad):
            raise DataContractError(
                f"{path}: column 'label' of scenario {name!r} has value(s) {sorted(set(bad.tolist()))[:5]} "
                f"outside 0..{k - 1} ({', '.join(known[name].label_names)})"
            )
    dup = df.duplicated(["scenario", "video_id"])
    if dup.any():
        raise DataContractError(
            f"{path}: column 'video_id' repeats within a scenario, e.g. {df.loc[dup, 'video_id'].iloc[0]}"
        )
    return df[list(VIDEO_COLUMNS)]


def check_features(df: pd.DataFrame, path: Path | str = "feature source") -> tuple[pd.DataFrame, list[str]]:
    """Validate the privileged feature source; returns (normalised copy, feature names)."""
    _require_columns(df, FEATURE_KEYS, path)
    df = df.copy()
    _require_int(df, "video_id", path)
    for column in ("event_timestamp", "created"):
        df[column] = _require_timestamp(df, column, path)
    names = [c for c in df.columns if c not in FEATURE_KEYS]
    if not names:
        raise DataContractError(f"{path}: no feature columns besides {', '.join(FEATURE_KEYS)}")
    for c in names:
        if not pd.api.types.is_numeric_dtype(df[c]):
            raise DataContractError(f"{path}: feature column {c!r} must be numeric, found {df[c].dtype}")
    return df, names


def load_videos(path: str | Path, config: ProjectConfig) -> pd.DataFrame:
    return check_videos(read_parquet(path, "videos table"), config, path)


def load_features(path: str | Path) -> tuple[pd.DataFrame, list[str]]:
    return check_features(read_parquet(path, "feature source"), path)
