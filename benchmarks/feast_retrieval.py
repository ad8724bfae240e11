"""Point-in-time retrieval speed: Feast (DuckDB offline store) vs pandas.merge_asof, same Parquet, same run.

Entity rows are videos with a label time; each has at most one feature row before it (1 h to
2 days earlier) and maybe a later, leaking row. Both paths read the Parquet file, join, and
return the rows in entity order; their values are compared before the timings are reported.
"""

from __future__ import annotations

import json
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

N_FEATURES = 32
START = datetime(2026, 1, 1, tzinfo=UTC)


def make_data(n_rows: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Entity rows (video_id, event_timestamp) and a feature table with the repo's dense_00..31."""
    rng = np.random.default_rng(seed)
    ids = np.arange(n_rows, dtype=np.int64)
    ts = pd.to_datetime(START) + pd.to_timedelta(rng.integers(0, 90 * 86400 * 10**6, n_rows), unit="us")
    entities = pd.DataFrame({"video_id": ids, "event_timestamp": ts})
    has = rng.random(n_rows) < 0.9
    leak = rng.random(n_rows) < 0.5
    before = ts[has] - pd.to_timedelta(rng.integers(3600, 2 * 86400, has.sum()), unit="s")
    after = ts[leak] + pd.to_timedelta(rng.integers(3600, 5 * 86400, leak.sum()), unit="s")
    parts = []
    for vid, t in ((ids[has], before), (ids[leak], after)):
        x = rng.normal(0, 1, (len(vid), N_FEATURES)).astype(np.float32)
        df = pd.DataFrame(x, columns=[f"dense_{i:02d}" for i in range(N_FEATURES)])
        df.insert(0, "video_id", vid)
        df.insert(1, "event_timestamp", t)
        df.insert(2, "created", t + pd.Timedelta(minutes=5))
        parts.append(df)
    return entities, pd.concat(parts, ignore_index=True)


def _timed(fn, repeats: int) -> tuple[list[float], pd.DataFrame]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return times, out


def run_feature_retrieval(out: str | Path, rows: int = 100_000, repeats: int = 3, log=print) -> dict:
    from cpfd.data.build import point_in_time_join
    from featurestore import apply_repo, historical_features, service_features

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    entities, features = make_data(rows)
    source = out / "features.parquet"
    features.to_parquet(source, index=False)

    import feast  # noqa: F401  (imported before timing: the import alone takes seconds)

    t0 = time.perf_counter()
    store = apply_repo(source, out / "feature_store")
    apply_s = time.perf_counter() - t0
    names = service_features(store, "teacher_dense_v1")
    ttl = store.get_feature_view("video_dense_features").ttl

    feast_times, via_feast = _timed(lambda: historical_features(store, entities, "teacher_dense_v1"), repeats)
    pandas_times, via_pandas = _timed(
        lambda: point_in_time_join(entities, pd.read_parquet(source), names, ttl), repeats
    )

    a, b = via_feast[names].to_numpy(), via_pandas[names].to_numpy()
    if not (
        len(via_feast) == len(entities)
        and np.array_equal(np.isnan(a), np.isnan(b))
        and np.allclose(np.nan_to_num(a), np.nan_to_num(b))
    ):
        raise AssertionError("Feast and merge_asof disagree on the joined values")
    feast_s, pandas_s = statistics.median(feast_times), statistics.median(pandas_times)
    result = {
        "entity_rows": rows,
        "features": len(names),
        "feature_rows": len(features),
        "repeats": repeats,
        "feast_apply_s": round(apply_s, 3),
        "feast_median_s": round(feast_s, 3),
        "merge_asof_median_s": round(pandas_s, 3),
        "feast_times_s": [round(t, 3) for t in feast_times],
        "merge_asof_times_s": [round(t, 3) for t in pandas_times],
        "ratio": round(feast_s / pandas_s, 2),
        "null_rows": int(np.isnan(a).all(axis=1).sum()),
        "values_match": True,
    }
    (out / "feast_retrieval.json").write_text(json.dumps(result, indent=2))
    log(f"| {rows} entity rows x {len(names)} features | median of {repeats} |")
    log("|---|---|")
    log(f"| Feast get_historical_features (DuckDB) | {feast_s:.3f} s |")
    log(f"| pandas.merge_asof (read Parquet + join) | {pandas_s:.3f} s |")
    log(f"| ratio Feast / merge_asof | {result['ratio']:.2f}x (target <= 2x) |")
    log(f"values match: yes; rows without features (null): {result['null_rows']}; feast apply {apply_s:.2f} s")
    return result
