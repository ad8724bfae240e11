"""Feast's PostgreSQL offline store for the retrieval benchmark: a throwaway PostgreSQL server on loopback, the
feature table loaded into it, and a Feast repository over it read the way a team's own deployment is
(``cpfd.featurestore.reference``: their registry, their offline store, a feature service by name, nothing applied by the
build).

The server is PostgreSQL's own binaries (Debian's package), a fresh data folder, ``fsync=off`` (a benchmark's
scratch database), trust authentication on 127.0.0.1 only; as root it runs as the ``postgres`` user. The repository
is applied once with Feast (the team's step, outside the timings)."""

from __future__ import annotations

import glob
import io
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import timedelta
from pathlib import Path

import pandas as pd
import yaml

from cpfd.errors import CpfdError

USER, DATABASE, TABLE = "cpfd", "postgres", "video_dense_features"
ENTITY, VIEW, SERVICE = "video", "video_dense_pg", "teacher_dense_pg"


def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    initdb = Path(found[-1]) if found else (Path(w) if (w := shutil.which("initdb")) else None)
    if initdb is None:
        raise CpfdError(
            "--engine postgres needs PostgreSQL's server binaries (initdb, pg_ctl): apt-get install postgresql"
        )
    return initdb.parent


def _free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def local_postgres() -> Iterator[int]:
    """A PostgreSQL server on 127.0.0.1:<free port> for the duration; yields the port."""
    bin_dir = _pg_bin()
    root = Path(tempfile.mkdtemp(prefix="cpfd-bench-pg-"))
    data, port = root / "data", _free_port()
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb and postgres refuse root
        as_user = ["runuser", "-u", "postgres", "--"]
        os.chmod(root, 0o777)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*as_user, *args], capture_output=True, text=True, timeout=120)

    try:
        init = run(str(bin_dir / "initdb"), "-D", str(data), "-U", USER, "--auth=trust", "-E", "UTF8")
        if init.returncode != 0:
            raise CpfdError(f"initdb failed: {init.stderr.strip()[-300:]}")
        options = f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off"
        start = run(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "pg.log"), "-w", "start")
        if start.returncode != 0:
            raise CpfdError(f"PostgreSQL did not start: {start.stderr.strip()[-300:]}")
        try:
            yield port
        finally:
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def load_table(port: int, features: pd.DataFrame, names: list[str]) -> None:
    """The feature table into PostgreSQL with COPY (replacing the last size's), indexed on (video_id, time)."""
    import psycopg

    columns = ", ".join(f"{n} real" for n in names)
    with psycopg.connect(f"host=127.0.0.1 port={port} user={USER} dbname={DATABASE}", autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        conn.execute(
            f"CREATE TABLE {TABLE} (video_id bigint, event_timestamp timestamptz, created timestamptz, {columns})"
        )
        step = 200_000
        with conn.cursor() as cur:
            for a in range(0, len(features), step):
                buf = io.StringIO()
                features.iloc[a : a + step].to_csv(buf, index=False, header=False, date_format="%Y-%m-%d %H:%M:%S.%f%z")
                with cur.copy(f"COPY {TABLE} FROM STDIN WITH (FORMAT csv)") as copy:
                    copy.write(buf.getvalue())
        conn.execute(f"CREATE INDEX ON {TABLE} (video_id, event_timestamp)")
        conn.execute(f"ANALYZE {TABLE}")


def write_repo(repo: Path, port: int, names: list[str], ttl: timedelta) -> Path:
    """A Feast repository over the table (SQL registry on SQLite next to it, PostgreSQL offline store), applied with
    Feast; returns its feature_store.yaml."""
    from feast import Entity, FeatureService, FeatureStore, FeatureView, Field, ValueType
    from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import PostgreSQLSource
    from feast.types import Float32

    repo = repo.resolve()  # Feast resolves a relative path against the repo folder: give it absolute ones
    repo.mkdir(parents=True, exist_ok=True)
    config = {
        "project": "bench_pg",
        "provider": "local",
        "registry": {"registry_type": "sql", "path": f"sqlite:///{repo / 'registry.db'}", "cache_ttl_seconds": 600},
        "offline_store": {
            "type": "postgres",
            "host": "127.0.0.1",
            "port": port,
            "database": DATABASE,
            "db_schema": "public",
            "user": USER,
            "password": "",
            "sslmode": "disable",
        },  # fmt: skip
        "online_store": {"type": "sqlite", "path": str(repo / "online.db")},
        "entity_key_serialization_version": 3,
    }
    (repo / "feature_store.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    video = Entity(name=ENTITY, join_keys=["video_id"], value_type=ValueType.INT64)
    source = PostgreSQLSource(
        name=f"{TABLE}_src", table=TABLE, timestamp_field="event_timestamp", created_timestamp_column="created"
    )
    view = FeatureView(
        name=VIEW,
        entities=[video],
        ttl=ttl,
        schema=[Field(name=n, dtype=Float32) for n in names],
        source=source,
        online=False,
    )
    FeatureStore(repo_path=str(repo)).apply([video, source, view, FeatureService(name=SERVICE, features=[view])])
    return repo / "feature_store.yaml"
