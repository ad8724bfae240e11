"""The prediction log on a real PostgreSQL server (Debian's package, started here on loopback in a temporary data
directory): the service under 32 clients writes exactly one row per answer, `cpfd monitor` reads the same verdict
from PostgreSQL as from SQLite for the same traffic, and `cpfd log prune` keeps the table bounded.

Skipped, saying why, only where no PostgreSQL server binaries are found or the server cannot start (`.ci/run`
installs the package when it is missing)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from cpfd.predlog import PredictionLog

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pg_url():
    """A PostgreSQL server on 127.0.0.1:<free port>, data in a temporary folder; yields a SQLAlchemy URL."""
    from tests.servers import free_port, pg_bin

    bin_dir = pg_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binaries (initdb) found: install Debian's postgresql package")
    # directly under the system temp folder: pytest's own folders are private to this user, and as root the server
    # runs as the `postgres` user (initdb and postgres refuse root), which must reach its data folder
    root = Path(tempfile.mkdtemp(prefix="cpfd-pg-"))
    data, port = root / "data", free_port()
    as_user: list[str] = []
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        os.chmod(root, 0o777)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*as_user, *args], capture_output=True, text=True, timeout=120)

    init = run(str(bin_dir / "initdb"), "-D", str(data), "-U", "cpfd", "--auth=trust", "-E", "UTF8")
    if init.returncode != 0:
        pytest.skip(f"initdb failed: {init.stderr.strip()[-300:]}")
    options = f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off"
    start = run(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "pg.log"), "-w", "start")
    if start.returncode != 0:
        pytest.skip(f"PostgreSQL did not start: {start.stderr.strip()[-300:]} {(root / 'pg.log').read_text()[-300:]}")
    try:
        yield f"postgresql+psycopg://cpfd@127.0.0.1:{port}/postgres"
    finally:
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def test_monitor_reads_the_same_verdict_from_postgresql_as_from_sqlite(pg_url, tmp_path):
    from cpfd.benchmarks.monitoring import START, make_traffic, write_traffic
    from cpfd.monitoring.analysis import run_monitor

    preds, labels, ref = make_traffic({"bin": 2, "three": 3}, 400, seed=4, drift={"three": 0.5})
    ref.to_parquet(tmp_path / "reference.parquet")
    since, until = START.isoformat(), (START.replace(year=START.year + 1)).isoformat()
    summaries = {}
    for name, target in (("sqlite", tmp_path / "log.db"), ("postgresql", pg_url)):
        log = PredictionLog(target)
        write_traffic(log, preds, labels)
        summaries[name] = run_monitor(
            target, tmp_path / "reference.parquet", since, until, tmp_path / name, evidently=False
        )
    a, b = summaries["sqlite"], summaries["postgresql"]
    assert a["n_predictions"] == b["n_predictions"] == len(preds)
    assert a["status"] == b["status"] and a["failed_checks"] == b["failed_checks"]
    assert "three/control/confidence_psi" in a["failed_checks"] or any("three" in c for c in a["failed_checks"])
    for scenario, result in a["scenarios"].items():
        _assert_same(result, b["scenarios"][scenario], scenario)


def _assert_same(a, b, where: str) -> None:
    """Equal structures; floats equal up to summation order (the two databases return rows in different orders)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and not isinstance(b, str):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-12, nan_ok=True), where
    else:
        assert a == b, where


def test_prune_deletes_only_what_is_older(pg_url, tmp_path):
    from cpfd.benchmarks.monitoring import make_traffic, write_traffic

    url = pg_url
    log = PredictionLog(url)
    with log.engine.begin() as conn:
        from sqlalchemy import text

        conn.execute(text("DELETE FROM predictions"))
        conn.execute(text("DELETE FROM labels"))
    preds, labels, _ = make_traffic({"bin": 2}, 100, seed=9)
    write_traffic(log, preds, labels)
    cutoff = sorted(preds["ts"])[len(preds) // 2]
    done = subprocess.run(
        [sys.executable, "-m", "cpfd.cli", "log", "prune", "--log", url, "--before", cutoff],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    older = int((preds["ts"] < cutoff).sum())
    assert f"deleted {older} prediction(s)" in done.stdout
    assert log.count() == len(preds) - older and log.read_predictions()["ts"].min() >= pd.Timestamp(cutoff)


@pytest.mark.parametrize("version", [1, 2])
def test_a_text_schema_log_on_postgresql_is_migrated_with_every_row(pg_url, version, monkeypatch):
    """A log the earlier text schema wrote (its own database on the server) is migrated when opened: typed columns
    (timestamptz, json), every row kept, indexes and primary keys under their names."""
    import psycopg
    from sqlalchemy import inspect

    import cpfd.predlog_schema as schema
    from tests.unit.test_predlog_schema import check_migrated, text_schema_rows, write_text_schema

    monkeypatch.setattr(schema, "COPY_CHUNK", 64)
    server = pg_url.replace("postgresql+psycopg://", "postgresql://")
    name = f"text_schema_v{version}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.execute(f"CREATE DATABASE {name}")
    preds, labels = text_schema_rows(400, with_request_ids=version == 2)
    with psycopg.connect(server.rsplit("/", 1)[0] + f"/{name}") as conn:
        write_text_schema(conn, preds, labels, with_request_ids=version == 2)
    url = pg_url.rsplit("/", 1)[0] + f"/{name}"
    log = PredictionLog(url)
    check_migrated(log, preds, labels, found=version)
    assert PredictionLog(url).migrated_from == schema.SCHEMA_VERSION
    db = inspect(log.engine)
    assert set(db.get_table_names()) == {"predictions", "labels", "cpfd_schema"}
    types = {c["name"]: c["type"] for c in db.get_columns("predictions")}
    assert str(types["ts"]) == "TIMESTAMP" and types["ts"].timezone and str(types["probabilities"]) == "JSON"
    assert db.get_pk_constraint("predictions")["name"] == "predictions_pkey"
    assert {i["name"] for i in db.get_indexes("predictions")} == {"predictions_ts", "predictions_scenario_ts"}
    log.engine.dispose()


@pytest.mark.slow
def test_the_service_logs_one_row_per_answer_into_postgresql_under_32_clients(
    pg_url, clickbait_data, tiny_project, tmp_path
):
    from cpfd.benchmarks.serving import load_clients
    from cpfd.serving.launch import ServerProcess
    from tests.integration.serving_support import package_students, write_config

    home = tmp_path / "bentoml"
    tags = package_students(clickbait_data, tiny_project.model, tmp_path / "m", home, {"clickbait": "cb-pg"})
    config = write_config(
        tmp_path / "serving.yaml",
        {"clickbait": tags["cb-pg"]},
        prediction_log=pg_url,
        limits={"max_concurrent_requests": 64},
    )
    log = PredictionLog(pg_url)
    before = log.count()
    test = clickbait_data.splits["test"]
    from tests.integration.serving_support import png_b64

    bodies = [
        json.dumps(
            {
                "scenario": "clickbait",
                "video_id": 900_000 + i,
                "title": "a title",
                "frames": [png_b64(f) for f in test.frames[i].numpy()],
            }
        ).encode()
        for i in range(8)
    ]
    with ServerProcess(
        config, log_path=tmp_path / "server.log", env={"BENTOML_HOME": str(home)}, timeout=180
    ) as server:
        result = load_clients(
            server.url, [("/classify", b, "application/json") for b in bodies], clients=32, seconds=30
        )
    assert not any(code >= 500 for code in result["status"]), result["status"]
    assert result["ok"] > 50
    assert log.count() - before == result["ok"]  # exactly one committed row per answer
    assert log.read_predictions()["request_id"].is_unique
