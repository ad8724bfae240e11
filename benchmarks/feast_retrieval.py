"""Point-in-time retrieval speed: Feast's DuckDB, Spark and PostgreSQL offline stores vs pandas.merge_asof, one run.

Entity rows are videos with a label time; each has at most one feature row before it (1 h to
2 days earlier) and maybe a later, leaking row. Every engine reads the Parquet file, joins, and
returns the rows in entity order; each Feast engine's values are compared with merge_asof's before
the timings are reported. Per engine and size: the first call (Spark: with its JVM's start) is
reported apart, then the median of ``repeats`` calls; ratios are against merge_asof in the same run.

PostgreSQL (``cpfd.benchmarks.feast_postgres``): the same feature rows loaded into a throwaway server on loopback (COPY,
an index on (video_id, event_timestamp); outside the timings, reported as ``load_s``), read through a Feast repo the
way a team's own deployment is (``cpfd.featurestore.reference``: the service by name, nothing applied by the build). Its
calls include Feast uploading the entity rows into a temporary table.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

N_FEATURES = 32
START = datetime(2026, 1, 1, tzinfo=UTC)
FEAST_ENGINES = ("duckdb", "spark", "postgres")
SERVICE = "teacher_dense_v1"
LABELS = {
    "duckdb": "Feast get_historical_features, DuckDB",
    "spark": "Feast get_historical_features, Spark local[2]",
    "postgres": "Feast get_historical_features, PostgreSQL (loopback, by reference)",
    "merge_asof": "pandas.merge_asof (read Parquet + join)",
}


def make_data(n_rows: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Entity rows (video_id, event_timestamp) and a feature table with the repo's dense_00..31, in microseconds."""
    rng = np.random.default_rng(seed)
    ids = np.arange(n_rows, dtype=np.int64)
    ts = pd.to_datetime(START) + pd.to_timedelta(rng.integers(0, 90 * 86400 * 10**6, n_rows), unit="us")
    entities = pd.DataFrame({"video_id": ids, "event_timestamp": ts.astype("datetime64[us, UTC]")})
    has = rng.random(n_rows) < 0.9
    leak = rng.random(n_rows) < 0.5
    before = ts[has] - pd.to_timedelta(rng.integers(3600, 2 * 86400, has.sum()), unit="s")
    after = ts[leak] + pd.to_timedelta(rng.integers(3600, 5 * 86400, leak.sum()), unit="s")
    parts = []
    for vid, t in ((ids[has], before), (ids[leak], after)):
        x = rng.normal(0, 1, (len(vid), N_FEATURES)).astype(np.float32)
        df = pd.DataFrame(x, columns=[f"dense_{i:02d}" for i in range(N_FEATURES)])
        df.insert(0, "video_id", vid)
        df.insert(1, "event_timestamp", t.astype("datetime64[us, UTC]"))
        df.insert(2, "created", (t + pd.Timedelta(minutes=5)).astype("datetime64[us, UTC]"))
        parts.append(df)
    return entities, pd.concat(parts, ignore_index=True)


def _timed(fn, repeats: int) -> tuple[float, list[float], pd.DataFrame]:
    """The first call's seconds, then ``repeats`` more calls' seconds, and the last result."""
    t0 = time.perf_counter()
    out = fn()
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return first, times, out


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _same_values(a: pd.DataFrame, b: pd.DataFrame, names: list[str]) -> bool:
    x, y = a[names].to_numpy(), b[names].to_numpy()
    return (
        len(a) == len(b)
        and np.array_equal(np.isnan(x), np.isnan(y))
        and np.allclose(np.nan_to_num(x), np.nan_to_num(y))
    )


def run_feature_retrieval(
    out: str | Path,
    sizes: tuple[int, ...] = (100_000, 1_000_000),
    engines: tuple[str, ...] = FEAST_ENGINES,
    repeats: int = 3,
    log=print,
) -> dict:
    """Every size with merge_asof and each Feast engine; writes ``out/features.json`` and logs a table."""
    from cpfd.errors import CpfdError

    unknown = sorted(set(engines) - set(FEAST_ENGINES))
    if unknown:
        raise CpfdError(f"--engine: {unknown} unknown; choose from {list(FEAST_ENGINES)} (merge_asof always runs)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    import contextlib

    import feast  # noqa: F401  (imported before timing: the import alone takes seconds)

    from cpfd.benchmarks.feast_postgres import local_postgres

    with local_postgres() if "postgres" in engines else contextlib.nullcontext() as pg_port:
        result = {
            "features": N_FEATURES,
            "repeats": repeats,
            "cpu_count": os.cpu_count(),
            "spark_master": "local[2]" if "spark" in engines else None,
            "postgres": _pg_version() if pg_port else None,
            "runs": [_one_size(out, rows, engines, repeats, pg_port) for rows in sizes],
        }
    (out / "features.json").write_text(json.dumps(result, indent=2) + "\n")
    for line in table(result):
        log(line)
    return result


def _pg_version() -> str:
    import subprocess

    from cpfd.benchmarks.feast_postgres import _pg_bin

    done = subprocess.run([str(_pg_bin() / "postgres"), "--version"], capture_output=True, text=True)
    return done.stdout.strip() + ", fsync=off, 127.0.0.1"


def _postgres(out: Path, rows: int, port: int, entities, features, names, ttl, repeats: int, pandas_s: float, ref):
    """Load the rows, apply the repo (outside the timings), then time the reference-mode retrieval."""
    from cpfd.benchmarks.feast_postgres import SERVICE as PG_SERVICE
    from cpfd.benchmarks.feast_postgres import load_table, write_repo
    from cpfd.features import default_feature_store
    from cpfd.featurestore.reference import TeamFeast

    t0 = time.perf_counter()
    load_table(port, features, names)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    fs_yaml = write_repo(out / f"store_postgres_{rows}", port, names, ttl)
    apply_s = time.perf_counter() - t0
    team = TeamFeast(default_feature_store().model_copy(update={"repo": str(fs_yaml)}))
    spec = team.service(PG_SERVICE)
    if spec.names != names:
        raise AssertionError(f"the PostgreSQL repo's service {PG_SERVICE} does not read the benchmark's features")
    first, times, joined = _timed(lambda: team.historical_features(entities, spec), repeats)
    if not _same_values(joined, ref, names):
        raise AssertionError(f"Feast (postgres) and merge_asof disagree on the joined values at {rows} rows")
    return {**_entry(first, times, pandas_s), "apply_s": round(apply_s, 3), "load_s": round(load_s, 3)}


def _one_size(out: Path, rows: int, engines: tuple[str, ...], repeats: int, pg_port: int | None = None) -> dict:
    from cpfd.data.build import point_in_time_join
    from cpfd.features import default_feature_store
    from cpfd.featurestore import apply_repo, historical_features, service_features

    load_before = _load()
    declarations = default_feature_store()
    names = declarations.service_features(SERVICE)
    ttl = pd.Timedelta(days=declarations.views["video_dense_features"].ttl_days)
    entities, features = make_data(rows)
    source = out / f"features_{rows}.parquet"
    features.to_parquet(source, index=False)
    first, times, reference = _timed(lambda: point_in_time_join(entities, pd.read_parquet(source), names, ttl), repeats)
    pandas_s = statistics.median(times)
    measured = {"merge_asof": _entry(first, times, pandas_s)}
    for engine in engines:
        if engine == "postgres":
            assert pg_port is not None
            measured[engine] = _postgres(
                out, rows, pg_port, entities, features, names, ttl, repeats, pandas_s, reference
            )
            continue
        t0 = time.perf_counter()
        store = apply_repo(source, out / f"store_{engine}_{rows}", declarations.model_copy(update={"offline": engine}))
        apply_s = time.perf_counter() - t0
        if service_features(store, SERVICE) != names:
            raise AssertionError(f"the {engine} store's service {SERVICE} does not read the declared features")
        first, times, joined = _timed(lambda s=store: historical_features(s, entities, SERVICE), repeats)
        if not _same_values(joined, reference, names):
            raise AssertionError(f"Feast ({engine}) and merge_asof disagree on the joined values at {rows} rows")
        measured[engine] = {**_entry(first, times, pandas_s), "apply_s": round(apply_s, 3)}
    return {
        "entity_rows": rows,
        "feature_rows": len(features),
        "engines": measured,
        "null_rows": int(np.isnan(reference[names].to_numpy()).all(axis=1).sum()),
        "values_match": True,
        "load_avg_1_5_15": {"before": load_before, "after": _load()},
    }


def _entry(first: float, times: list[float], pandas_s: float) -> dict:
    median = statistics.median(times)
    return {
        "first_s": round(first, 3),
        "median_s": round(median, 3),
        "times_s": [round(t, 3) for t in times],
        "ratio_to_merge_asof": round(median / pandas_s, 2),
    }


def table(result: dict) -> list[str]:
    """A Markdown table: one row per engine, one column per size (median seconds, ratio, first call)."""
    runs = result["runs"]
    head = " | ".join(f"{r['entity_rows']:,} entity rows" for r in runs)
    lines = [
        f"| {result['features']} features, median of {result['repeats']} (first call) | {head} |",
        "|---" * (len(runs) + 1) + "|",
    ]
    for engine in ("duckdb", "spark", "postgres", "merge_asof"):
        if engine not in runs[0]["engines"]:
            continue
        cells = []
        for r in runs:
            e = r["engines"][engine]
            ratio = "" if engine == "merge_asof" else f", {e['ratio_to_merge_asof']:.2f}x"
            cells.append(f"{e['median_s']:.2f} s{ratio} ({e['first_s']:.1f} s)")
        lines.append(f"| {LABELS[engine]} | {' | '.join(cells)} |")
    loads = "; ".join(
        f"{r['entity_rows']:,}: {r['load_avg_1_5_15']['before'][0]} -> {r['load_avg_1_5_15']['after'][0]}" for r in runs
    )
    lines.append(
        f"values match merge_asof: yes; 1-min load average (before -> after): {loads}; {result['cpu_count']} cores"
    )
    return lines
