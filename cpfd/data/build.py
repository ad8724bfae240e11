"""Build a scenario's training set: point-in-time join of the privileged features, time splits.

The join here is pandas ``merge_asof`` (the core needs no Feast); the feature store module offers
Feast's ``get_historical_features`` as the same step for the platform. Both read exactly the columns
of the scenario's feature service (``cpfd.features``). Output: a folder with
``train|val|test.parquet``, their shards under ``stream/`` and ``manifest.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from cpfd.config import ALL_MODALITIES
from cpfd.conventions import FEATURE_TTL
from cpfd.data.contract import UNLABELLED
from cpfd.data.shards import DEFAULT_SHARD_ROWS, STREAM_DIR, write_split_stream
from cpfd.errors import DataContractError
from cpfd.features import FeatureDeclarations

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")
POOL_SPLIT = "pool"  # the unlabelled videos: streamed shards only, read by distillation alone


def point_in_time_join(
    entities: pd.DataFrame, features: pd.DataFrame, names: list[str], ttl: timedelta = FEATURE_TTL
) -> pd.DataFrame:
    """For each entity row, the latest feature row with ts in [event_timestamp - ttl, event_timestamp].

    Rows without one keep null features (never dropped); row order is preserved.
    """
    left = entities.reset_index(drop=True).assign(_row=lambda d: np.arange(len(d))).sort_values("event_timestamp")
    right = features.sort_values(["event_timestamp", "created"])[["video_id", "event_timestamp", *names]]
    right = right.rename(columns={"event_timestamp": "_feature_ts"})
    joined = pd.merge_asof(
        left,
        right,
        left_on="event_timestamp",
        right_on="_feature_ts",
        by="video_id",
        direction="backward",
        tolerance=pd.Timedelta(ttl),
    )
    return joined.sort_values("_row").drop(columns=["_row", "_feature_ts"]).reset_index(drop=True)


def time_splits(df: pd.DataFrame, fractions: tuple[float, float, float] = (0.6, 0.15, 0.25)) -> dict[str, pd.DataFrame]:
    """Split by event time: train is the oldest part, test the newest."""
    if abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"split fractions must sum to 1, got {fractions}")
    ordered = df.sort_values(["event_timestamp", "video_id"]).reset_index(drop=True)
    n = len(ordered)
    a = int(round(n * fractions[0]))
    b = int(round(n * (fractions[0] + fractions[1])))
    return {"train": ordered.iloc[:a], "val": ordered.iloc[a:b], "test": ordered.iloc[b:]}


def fingerprint(*paths: str | Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        p = Path(p)
        h.update(p.name.encode())
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def feature_coverage(joined: pd.DataFrame, names: list[str], scenario: str, sources: dict[str, Path]) -> dict:
    """Share of the scenario's videos with a value, per feature; no value at all in any feature is an error."""
    if names and joined[names].isna().all(axis=None):
        raise DataContractError(
            f"scenario {scenario!r}: none of its {len(joined)} videos has a feature row within the views' freshness "
            f"window in {', '.join(map(str, sources.values()))} (check that video_id values and event timestamps "
            "match the videos table)"
        )
    return {n: round(float(joined[n].notna().mean()), 4) for n in names}


def selected_sources(declarations: FeatureDeclarations, service: str, paths: dict[str, Path]) -> dict[str, Path]:
    return {s: paths[s] for s in declarations.service_sources(service)}


def write_dataset(
    out_dir: str | Path,
    scenario: str,
    label_names: list[str],
    joined: pd.DataFrame,
    feature_names: list[str],
    feature_service: str,
    source_fingerprint: str,
    backend: str,
    sources: dict[str, Path] | None = None,
    shard_rows: int = DEFAULT_SHARD_ROWS,
    stream_root: str | None = None,
) -> dict:
    """Time splits (each also as shards for streamed training, ``cpfd.data.shards``: under ``out_dir/stream``, or
    ``stream_root``, a folder or URL such as ``gs://bucket/streams/run-1``) and the manifest. Features without any
    value for this scenario are listed, not dropped."""
    from cpfd.preprocess import title_word_stats  # imports torch: not at the top of the (pandas-only) build

    joined = joined.astype({n: np.float32 for n in feature_names})  # the models' dtype, whichever backend joined
    is_pool = (joined["label"] == UNLABELLED).to_numpy()
    pool, joined = joined[is_pool].reset_index(drop=True), joined[~is_pool].reset_index(drop=True)
    if joined.empty:
        raise DataContractError(
            f"scenario {scenario!r}: column 'label' is null in all of its {len(pool)} videos; "
            "a scenario needs labelled videos (the unlabelled ones only add to distillation)"
        )
    coverage = feature_coverage(joined, feature_names, scenario, sources or {})
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    splits = time_splits(joined)
    stream_shapes = {}
    for name, part in splits.items():
        if part.empty:
            raise DataContractError(f"scenario {scenario!r}: the {name} split is empty ({len(joined)} videos in all)")
        part.to_parquet(out / f"{name}.parquet", index=False)
        where = str(out / f"{name}.parquet")
        target = f"{stream_root.rstrip('/')}/{name}" if stream_root else out / STREAM_DIR / name
        index = write_split_stream(part, target, feature_names, shard_rows, where)
        stream_shapes[name] = index["frame_shape"]
    pool_info = _write_pool(out, pool, splits["train"], feature_names, scenario, sources or {}, shard_rows, stream_root)
    if pool_info["rows"]:
        stream_shapes["pool"] = pool_info.pop("frame_shape")
    if len({str(v) for v in stream_shapes.values()}) > 1:
        raise DataContractError(f"scenario {scenario!r}: the splits have different frame shapes {stream_shapes}")
    manifest = {
        "scenario": scenario,
        "label_names": label_names,
        "feature_names": feature_names,
        "feature_service": feature_service,
        "modalities": [c for c in ALL_MODALITIES if c in joined.columns],
        "rows": {k: len(v) for k, v in splits.items()},
        "time_range": {
            k: [str(v["event_timestamp"].min()), str(v["event_timestamp"].max())] for k, v in splits.items()
        },
        "pool": pool_info,
        "dense_null_rate": float(joined[feature_names].isna().all(axis=1).mean()),
        "feature_coverage": coverage,
        "features_without_values": [n for n, c in coverage.items() if c == 0],
        "feature_sources": {k: str(v) for k, v in (sources or {}).items()},
        "title_words": title_word_stats(splits["train"]["title"].tolist()) if "title" in joined else None,
        "source_fingerprint": source_fingerprint,
        "join_backend": backend,
        "stream": {"root": stream_root or STREAM_DIR, "shard_rows": shard_rows, "frame_shape": stream_shapes["train"]},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def _write_pool(
    out: Path,
    pool: pd.DataFrame,
    train: pd.DataFrame,
    feature_names: list[str],
    scenario: str,
    sources: dict[str, Path],
    shard_rows: int,
    stream_root: str | None,
) -> dict:
    """The unlabelled videos (null label) as the ``pool`` split: never in validation or test, only streamed (a pool is
    often 10-100x the labelled set), with its size and feature coverage for the manifest."""
    info: dict = {"rows": len(pool)}
    if pool.empty:
        return info
    if feature_names and pool[feature_names].isna().all(axis=None):
        raise DataContractError(
            f"scenario {scenario!r}: none of its {len(pool)} unlabelled videos (null 'label') has a privileged feature "
            f"within the views' freshness window in {', '.join(map(str, sources.values())) or 'the feature sources'}; "
            "the teacher would score them without the features it is for (check their video_id and event_timestamp)"
        )
    pool.to_parquet(out / f"{POOL_SPLIT}.parquet", index=False)
    target = f"{stream_root.rstrip('/')}/{POOL_SPLIT}" if stream_root else out / STREAM_DIR / POOL_SPLIT
    index = write_split_stream(pool, target, feature_names, shard_rows, str(out / f"{POOL_SPLIT}.parquet"))
    train_end = train["event_timestamp"].max()
    return {
        **info,
        "time_range": [str(pool["event_timestamp"].min()), str(pool["event_timestamp"].max())],
        "rows_after_train": int((pool["event_timestamp"] > train_end).sum()),
        "rows_without_features": int(pool[feature_names].isna().all(axis=1).sum()) if feature_names else len(pool),
        "feature_coverage": {n: round(float(pool[n].notna().mean()), 4) for n in feature_names},
        "frame_shape": index["frame_shape"],
    }


def absolute_frame_refs(videos: pd.DataFrame, base_dir: Path) -> pd.Series:
    """Resolve relative frame references against the videos table's folder."""

    def resolve(ref: str) -> str:
        path, sep, row = ref.rpartition("#") if "#" in ref else (ref, "", "")
        p = Path(path)
        return str(p if p.is_absolute() else (base_dir / p).resolve()) + (sep + row)

    return videos["frames"].map(resolve)


def join_service(
    videos: pd.DataFrame, declarations: FeatureDeclarations, paths: dict[str, Path], service: str
) -> pd.DataFrame:
    """pandas point-in-time join of each view of ``service`` in turn, each with its own TTL."""
    from cpfd.data.contract import load_sources

    views = declarations.service_views(service)
    tables = load_sources(declarations, paths, views)
    joined = videos
    for view, columns in views:
        decl = declarations.views[view]
        joined = point_in_time_join(joined, tables[decl.source], columns, timedelta(days=decl.ttl_days))
    return joined


def scenario_videos(videos_path: str | Path, scenario: str, config) -> pd.DataFrame:
    """The checked videos of one scenario with the columns of its modalities, frame references made absolute."""
    from cpfd.data.contract import MODALITY_COLUMNS, load_videos

    modalities = config.scenario(scenario).modalities  # an unknown scenario names the config read
    videos = load_videos(videos_path, config)
    pool_elsewhere = bool((videos["label"] == UNLABELLED).any())
    videos = videos[videos["scenario"] == scenario]
    if videos.empty:
        raise DataContractError(f"{videos_path}: no videos of scenario {scenario!r}")
    if pool_elsewhere and not (videos["label"] == UNLABELLED).any():
        log.warning(
            "%s: column 'label' is null for other scenarios' videos but for none of scenario %r: "
            "it has no unlabelled pool, its student distils from labelled videos only",
            videos_path,
            scenario,
        )
    videos = videos.drop(columns=[c for c in MODALITY_COLUMNS if c in videos and c not in modalities])
    if "frames" in videos:
        videos = videos.assign(frames=absolute_frame_refs(videos, Path(videos_path).resolve().parent))
    return videos


def build_scenario_dataset(
    videos_path: str | Path,
    features: str | Path,
    scenario: str,
    config,
    out_dir: str | Path,
    stream_root: str | None = None,
) -> dict:
    """The core path (pandas join): contract checks, join, splits, manifest.

    ``features`` is the folder holding the declared sources, or the file of the one source the scenario reads.
    """
    scen = config.scenario(scenario)
    videos = scenario_videos(videos_path, scenario, config)
    declarations = config.feature_store
    paths = selected_sources(
        declarations, scen.feature_service, declarations.source_paths(features, scen.feature_service)
    )
    joined = join_service(videos, declarations, paths, scen.feature_service)
    return write_dataset(
        out_dir,
        scenario,
        scen.label_names,
        joined,
        declarations.service_features(scen.feature_service),
        scen.feature_service,
        fingerprint(videos_path, *paths.values()),
        "pandas.merge_asof",
        paths,
        stream_root=stream_root,
    )
