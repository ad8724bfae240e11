"""The data contract: read and check the videos table and the privileged feature source.

Every problem is a ``DataContractError`` whose message names the file and the column.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from cpfd.config import ALL_MODALITIES, ProjectConfig
from cpfd.errors import DataContractError
from cpfd.features import FeatureDeclarations

log = logging.getLogger(__name__)

VIDEO_COLUMNS = ("video_id", "scenario", "event_timestamp", "label", "title", "frames")
MODALITY_COLUMNS = ALL_MODALITIES  # required only for the scenarios whose modalities name them
FEATURE_KEYS = ("video_id", "event_timestamp", "created")
UNLABELLED = -1  # the label of an unlabelled (pool) video once the table is checked: a null label in the table


def _labels_with_pool(labels: pd.Series, path: Path | str) -> pd.Series:
    """The label column as int64, a null label (an unlabelled pool video) as ``UNLABELLED``.

    Parquet stores an integer column with nulls as float64 (pandas) or nullable Int64: both are accepted when every
    value that is present is a whole number; a labelled table stays an integer column."""
    if pd.api.types.is_bool_dtype(labels) or not pd.api.types.is_numeric_dtype(labels):
        raise DataContractError(
            f"{path}: column 'label' must be integer (null for an unlabelled video), found {labels.dtype}"
        )
    present = labels.dropna()
    if pd.api.types.is_float_dtype(present) and not (present == present.round()).all():
        rows = present.index[present != present.round()][:5].tolist()
        raise DataContractError(f"{path}: column 'label' must hold whole numbers, found fractions in rows {rows}")
    if present.lt(0).any():  # -1 would read as the pool's marker: a negative label is never a class
        bad = sorted(set(present[present < 0].astype("int64").tolist()))[:5]
        raise DataContractError(
            f"{path}: column 'label' has negative value(s) {bad}; leave a label null for an unlabelled video"
        )
    return labels.fillna(UNLABELLED).astype("int64")


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
    # one resolution for every table (pandas writes ns, pyarrow and Spark us; the DuckDB store rejects ns)
    return col.dt.floor("us").astype("datetime64[us, UTC]")


def _drop_exact_duplicates(df: pd.DataFrame, key: list[str], path: Path | str, what: str) -> pd.DataFrame:
    """Identical repeated rows are dropped (logged); rows that share ``key`` but differ are an error."""
    exact = df.duplicated(keep="first")
    if exact.any():
        log.warning("%s: dropped %d identical repeated %s row(s)", path, int(exact.sum()), what)
        df = df[~exact]
    clash = df.duplicated(key, keep=False)
    if clash.any():
        example = df.loc[clash, key].iloc[0].to_dict()
        raise DataContractError(
            f"{path}: {int(clash.sum())} {what} rows share ({', '.join(key)}) but differ, e.g. {example}; "
            "keep one row per key"
        )
    return df


def check_videos(df: pd.DataFrame, config: ProjectConfig, path: Path | str = "videos table") -> pd.DataFrame:
    """Validate a videos table against the contract and the scenario configs.

    ``title`` and ``frames`` are required for the scenarios whose ``modalities`` name them (a
    ``[title]`` scenario needs no frames). Returns a normalised copy with the contract's columns only:
    extra columns (e.g. the generator's ``true_label``) never reach a dataset.
    """
    _require_columns(df, tuple(c for c in VIDEO_COLUMNS if c not in MODALITY_COLUMNS), path)
    df = df.copy()
    if df.empty:
        raise DataContractError(f"{path}: the videos table is empty")
    if not (pd.api.types.is_string_dtype(df["scenario"]) or pd.api.types.is_object_dtype(df["scenario"])):
        raise DataContractError(f"{path}: column 'scenario' must be string, found {df['scenario'].dtype}")
    known = {s.name: s for s in config.scenarios}
    unknown = sorted(set(df["scenario"].dropna()) - set(known))
    if unknown:
        raise DataContractError(
            f"{path}: column 'scenario' has unknown scenario(s) {unknown}; configured: {sorted(known)}"
        )
    df["label"] = _labels_with_pool(df["label"], path)
    _require_int(df, "video_id", path)
    if df["scenario"].isna().any():
        raise DataContractError(f"{path}: column 'scenario' has {int(df['scenario'].isna().sum())} null value(s)")
    for column in MODALITY_COLUMNS:
        users = sorted(n for n in set(df["scenario"]) if column in known[n].modalities)
        if not users:
            continue
        if column not in df.columns:
            other = next(c for c in MODALITY_COLUMNS if c != column)
            raise DataContractError(
                f"{path}: missing column {column!r}, needed by scenario(s) {', '.join(users)} (their modalities "
                f"read {column}; a scenario without {column} sets `modalities: [{other}]`)"
            )
        values = df.loc[df["scenario"].isin(users), column]
        if not (pd.api.types.is_string_dtype(values) or pd.api.types.is_object_dtype(values)):
            raise DataContractError(f"{path}: column {column!r} must be string, found {values.dtype}")
        if values.isna().any():
            raise DataContractError(
                f"{path}: column {column!r} has {int(values.isna().sum())} null value(s) "
                f"in scenario(s) {', '.join(users)}"
            )
    df["event_timestamp"] = _require_timestamp(df, "event_timestamp", path)
    for name, group in df.groupby("scenario"):
        k = known[name].num_classes
        labelled = group["label"][group["label"] != UNLABELLED]
        bad = labelled[(labelled < 0) | (labelled >= k)]
        if len(bad):
            raise DataContractError(
                f"{path}: column 'label' of scenario {name!r} has value(s) {sorted(set(bad.tolist()))[:5]} "
                f"outside 0..{k - 1} ({', '.join(known[name].label_names)})"
            )
    columns = [c for c in VIDEO_COLUMNS if c in df.columns]
    return _drop_exact_duplicates(df[columns], ["scenario", "video_id"], path, "video")


def check_features(
    df: pd.DataFrame, path: Path | str, columns: list[str], dtypes: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """Validate a feature source for the declared ``columns``; returns a normalised copy with the keys and them.

    ``dtypes`` maps a column to its declared type: ``int64`` columns must hold integers, every column numbers.
    Columns the declarations do not read are ignored. Identical repeated rows are dropped; rows that share
    (video_id, event_timestamp, created) but differ are an error, as is a column with no value at all.
    """
    _require_columns(df, FEATURE_KEYS, path)
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataContractError(
            f"{path}: declared feature column(s) {', '.join(missing)} are missing; "
            f"found {', '.join(c for c in df.columns if c not in FEATURE_KEYS) or 'none'}"
        )
    df = df[[*FEATURE_KEYS, *columns]].copy()
    _require_int(df, "video_id", path)
    for column in ("event_timestamp", "created"):
        df[column] = _require_timestamp(df, column, path)
    for c in columns:
        declared = (dtypes or {}).get(c, "float32")
        if not pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c]):
            raise DataContractError(f"{path}: feature column {c!r} must be numeric ({declared}), found {df[c].dtype}")
        if declared == "int64" and not pd.api.types.is_integer_dtype(df[c]):
            raise DataContractError(f"{path}: feature column {c!r} is declared int64, found {df[c].dtype}")
        if len(df) and df[c].isna().all():
            raise DataContractError(
                f"{path}: feature column {c!r} has no value in any of its {len(df)} rows; "
                "fill it or remove it from the declarations"
            )
    return _drop_exact_duplicates(df, list(FEATURE_KEYS), path, "feature")


def load_videos(path: str | Path, config: ProjectConfig) -> pd.DataFrame:
    return check_videos(read_parquet(path, "videos table"), config, path)


def load_sources(
    declarations: FeatureDeclarations, paths: dict[str, Path], views: list[tuple[str, list[str]]]
) -> dict[str, pd.DataFrame]:
    """The checked source tables behind ``views`` ((view, columns) pairs), each with the columns read from it.

    ``declarations.service_views(name)`` gives a service's views; ``declarations.all_views()`` every view.
    """
    tables = {}
    for source in dict.fromkeys(declarations.views[v].source for v, _ in views):
        picked = [(v, cols) for v, cols in views if declarations.views[v].source == source]
        columns = list(dict.fromkeys(c for _, cols in picked for c in cols))
        dtypes = {c: declarations.views[v].dtype for v, cols in picked for c in cols}
        table = read_parquet(paths[source], f"feature source {source!r}")
        tables[source] = check_features(table, paths[source], columns, dtypes)
    return tables
