"""The prediction log's one schema (cpfd.predlog_schema): typed columns on SQLite, and the migration of logs the
earlier text schemas wrote (version 1 without http_request_id, version 2 with it) with every row kept. The same
migration on PostgreSQL: tests/integration/test_postgres.py."""

from __future__ import annotations

import json
import sqlite3
import threading

import pandas as pd
import pytest

pytestmark = pytest.mark.unit

# what cpfd.predlog created before the typed schema (version 2); version 1 is the same without http_request_id
TEXT_SCHEMA_DDL = (
    """CREATE TABLE predictions (
        request_id TEXT PRIMARY KEY, ts TEXT NOT NULL, experiment TEXT NOT NULL, scenario TEXT NOT NULL,
        arm TEXT NOT NULL, model_tag TEXT NOT NULL, video_id BIGINT NOT NULL, label INTEGER NOT NULL,
        probabilities TEXT NOT NULL, confidence DOUBLE PRECISION NOT NULL, latency_ms DOUBLE PRECISION NOT NULL,
        http_request_id TEXT)""",
    "CREATE INDEX predictions_scenario_ts ON predictions (scenario, ts)",
    "CREATE INDEX predictions_ts ON predictions (ts)",
    """CREATE TABLE labels (
        video_id BIGINT NOT NULL, scenario TEXT NOT NULL, label INTEGER NOT NULL, labelled_at TEXT NOT NULL,
        PRIMARY KEY (video_id, scenario))""",
)


def text_schema_rows(n: int, with_request_ids: bool = True) -> tuple[list[dict], list[dict]]:
    """Rows as the text-schema writer stored them: ISO-8601 UTC text times, JSON text probabilities."""
    start = pd.Timestamp("2026-03-01T00:00:00Z")
    preds = [
        {
            "request_id": f"r{i:05d}",
            "ts": (start + pd.Timedelta(seconds=7 * i)).isoformat(timespec="microseconds"),
            "experiment": "ab",
            "scenario": ("bin", "three")[i % 2],
            "arm": ("control", "treatment")[i % 3 % 2],
            "model_tag": "m:1",
            "video_id": 10**9 + i,
            "label": i % 2,
            "probabilities": json.dumps([0.25, 0.75] if i % 2 else [0.9, 0.1]),
            "confidence": 0.75 if i % 2 else 0.9,
            "latency_ms": 1.5,
            **({"http_request_id": f"h{i // 4}" if i % 5 else None} if with_request_ids else {}),
        }
        for i in range(n)
    ]
    labels = [
        {"video_id": p["video_id"], "scenario": p["scenario"], "label": 1, "labelled_at": "2026-03-02T00:00:00+00:00"}
        for p in preds[::3]
    ]
    return preds, labels


def write_text_schema(conn, preds: list[dict], labels: list[dict], with_request_ids: bool = True) -> None:
    """A log of the text schema through a DB-API connection (sqlite3 or psycopg; named parameters)."""
    cur = conn.cursor()
    for stmt in TEXT_SCHEMA_DDL:
        cur.execute(stmt if with_request_ids else stmt.replace(",\n        http_request_id TEXT", ""))
    mark = ":{}" if isinstance(conn, sqlite3.Connection) else "%({})s"
    for table, rows in (("predictions", preds), ("labels", labels)):
        cols = list(rows[0])
        sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(mark.format(c) for c in cols)})"
        cur.executemany(sql, rows)
    conn.commit()


def check_migrated(log, preds: list[dict], labels: list[dict], found: int) -> None:
    """Every row kept with its values, typed now; the log takes new rows and the monitor's window query reads it."""
    from cpfd.monitoring.logread import read_window

    assert log.migrated_from == found
    got = log.read_predictions().set_index("request_id")
    assert len(got) == len(preds) and str(got["ts"].dtype) == "datetime64[ns, UTC]"
    for p in preds[:: max(len(preds) // 50, 1)]:
        row = got.loc[p["request_id"]]
        assert row["ts"] == pd.Timestamp(p["ts"]) and row["probabilities"] == json.loads(p["probabilities"])
        assert (row["video_id"], row["label"], row["confidence"]) == (p["video_id"], p["label"], p["confidence"])
        expected = p.get("http_request_id")
        assert row["http_request_id"] == expected or (expected is None and pd.isna(row["http_request_id"]))
    lab = log.read_labels()
    assert len(lab) == len(labels) and (lab["labelled_at"] == pd.Timestamp("2026-03-02T00:00:00Z")).all()
    window = read_window(log, preds[10]["ts"], preds[20]["ts"])
    assert sorted(window["video_id"]) == [p["video_id"] for p in preds[10:20]]
    assert window["true_label"].notna().sum() == sum(1 for p in preds[10:20] if int(p["request_id"][1:]) % 3 == 0)
    new = {**preds[0], "request_id": "new", "probabilities": [0.5, 0.5], "ts": pd.Timestamp("2026-04-01", tz="UTC")}
    assert log.append([new]) == 1 and log.count() == len(preds) + 1
    assert log.prune("2026-03-01T00:00:07Z") == (1, 0)  # only r00000 is older


@pytest.mark.parametrize("version", [1, 2])
def test_a_text_schema_log_is_migrated_with_every_row(tmp_path, version, monkeypatch):
    import cpfd.predlog_schema as schema
    from cpfd.predlog import PredictionLog

    monkeypatch.setattr(schema, "COPY_CHUNK", 64)  # several chunks of the key-ordered copy
    preds, labels = text_schema_rows(500, with_request_ids=version == 2)
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:
        write_text_schema(conn, preds, labels, with_request_ids=version == 2)
    check_migrated(PredictionLog(db), preds, labels, found=version)
    assert PredictionLog(db).migrated_from == schema.SCHEMA_VERSION  # once only
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        ts_type = {r[1]: r[2] for r in conn.execute("PRAGMA table_info(predictions)")}["ts"]
    assert tables == {"predictions", "labels", "cpfd_schema"}  # the text tables are gone
    assert {"predictions_ts", "predictions_scenario_ts"} <= indexes and ts_type == "DATETIME"


def test_writer_and_reader_share_the_typed_tables(tmp_path):
    from cpfd.monitoring.logread import window_query
    from cpfd.predlog import PREDICTION_COLUMNS, PredictionLog
    from cpfd.predlog_schema import SCHEMA_VERSION, labels, predictions

    log = PredictionLog(tmp_path / "new.db")
    assert log.migrated_from == 0 and PredictionLog(tmp_path / "new.db").migrated_from == SCHEMA_VERSION
    assert tuple(predictions.columns.keys()) == PREDICTION_COLUMNS
    (join,) = window_query("2026-01-01", "2026-01-02").get_final_froms()
    assert join.left is predictions and join.right is labels  # the reader queries the writer's Table objects
    row = {
        "request_id": "a",
        "ts": "2026-01-01T02:00:00+02:00",  # an ISO string with an offset: stored as the UTC time
        "experiment": "e",
        "scenario": "s",
        "arm": "control",
        "model_tag": "m:1",
        "video_id": 1,
        "label": 1,
        "probabilities": [0.2, 0.8],
        "confidence": 0.8,
        "latency_ms": 3.0,
    }
    log.append([row])
    got = log.read_predictions(since="2026-01-01T00:00:00Z", until="2026-01-01T00:00:01Z")
    assert got["ts"].tolist() == [pd.Timestamp("2026-01-01T00:00:00Z")] and got["probabilities"][0] == [0.2, 0.8]
    with sqlite3.connect(tmp_path / "new.db") as conn:  # SQLite keeps the JSON as text, the time sortable
        assert conn.execute("SELECT ts, probabilities FROM predictions").fetchone() == (
            "2026-01-01 00:00:00.000000",
            "[0.2, 0.8]",
        )
    log.write_labels([{"video_id": 1, "scenario": "s", "label": 0}])
    log.write_labels([{"video_id": 1, "scenario": "s", "label": 1}])  # an upsert
    assert log.read_labels()[["video_id", "label"]].values.tolist() == [[1, 1]]


def test_workers_opening_an_old_log_at_once_migrate_it_once(tmp_path):
    from cpfd.predlog import PredictionLog

    preds, labels = text_schema_rows(300)
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:
        write_text_schema(conn, preds, labels)
    found, errors = [], []

    def open_it():
        try:
            found.append(PredictionLog(db).migrated_from)
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and sorted(found) == [2, 3, 3, 3]
    assert PredictionLog(db).count() == len(preds)


def test_a_current_log_opens_read_only(tmp_path):
    """Opening a log at the current version only reads it: a read-only copy (e.g. a backup) can be monitored."""
    from sqlalchemy import create_engine

    from cpfd.monitoring.logread import read_window
    from cpfd.predlog import PredictionLog
    from cpfd.predlog_schema import SCHEMA_VERSION, migrate

    preds, labels = text_schema_rows(20)
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:
        write_text_schema(conn, preds, labels)
    copy = PredictionLog(db).backup(tmp_path / "copy.db")
    read_only = create_engine(f"sqlite:///file:{copy}?mode=ro&uri=true")  # SQLite refuses every write
    assert migrate(read_only) == SCHEMA_VERSION
    with sqlite3.connect(f"file:{copy}?mode=ro", uri=True) as conn:
        assert conn.execute("SELECT version FROM cpfd_schema").fetchall() == [(SCHEMA_VERSION,)]
    window = read_window(type("Log", (), {"engine": read_only})(), preds[0]["ts"], "2026-03-02")
    assert len(window) == len(preds)
