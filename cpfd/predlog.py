"""The prediction log and the delayed-labels table: written by serving, read by monitoring.

SQLite (WAL) by default; any SQLAlchemy URL (PostgreSQL at scale). Timestamps are ISO-8601 UTC
strings, probabilities a JSON list.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

PREDICTION_COLUMNS = (
    "request_id",
    "ts",
    "experiment",
    "scenario",
    "arm",
    "model_tag",
    "video_id",
    "label",
    "probabilities",
    "confidence",
    "latency_ms",
)
LABEL_COLUMNS = ("video_id", "scenario", "label", "labelled_at")

_DDL = (
    """CREATE TABLE IF NOT EXISTS predictions (
        request_id TEXT PRIMARY KEY, ts TEXT NOT NULL, experiment TEXT NOT NULL, scenario TEXT NOT NULL,
        arm TEXT NOT NULL, model_tag TEXT NOT NULL, video_id BIGINT NOT NULL, label INTEGER NOT NULL,
        probabilities TEXT NOT NULL, confidence REAL NOT NULL, latency_ms REAL NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS predictions_scenario_ts ON predictions (scenario, ts)",
    """CREATE TABLE IF NOT EXISTS labels (
        video_id BIGINT NOT NULL, scenario TEXT NOT NULL, label INTEGER NOT NULL, labelled_at TEXT NOT NULL,
        PRIMARY KEY (video_id, scenario))""",
)


def to_url(target: str | Path) -> str:
    """A path becomes a SQLite URL; a URL is kept."""
    text = str(target)
    return text if "://" in text else f"sqlite:///{Path(text).resolve()}"


def utcnow_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


class PredictionLog:
    def __init__(self, target: str | Path):
        from sqlalchemy import create_engine, event

        self.url = to_url(target)
        if self.url.startswith("sqlite:///"):
            Path(self.url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        self.engine = create_engine(self.url, future=True)
        if self.engine.dialect.name == "sqlite":

            @event.listens_for(self.engine, "connect")
            def _pragmas(conn, _record):
                cur = conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.execute("PRAGMA busy_timeout=10000")
                cur.close()

        with self.engine.begin() as conn:
            from sqlalchemy import text

            for stmt in _DDL:
                conn.execute(text(stmt))

    def append(self, rows: Iterable[dict]) -> int:
        """Insert prediction rows (dicts with PREDICTION_COLUMNS); one transaction."""
        from sqlalchemy import text

        rows = [{**r, "probabilities": json.dumps([float(p) for p in r["probabilities"]])} for r in rows]
        if not rows:
            return 0
        cols = ", ".join(PREDICTION_COLUMNS)
        params = ", ".join(f":{c}" for c in PREDICTION_COLUMNS)
        with self.engine.begin() as conn:
            conn.execute(text(f"INSERT INTO predictions ({cols}) VALUES ({params})"), rows)
        return len(rows)

    def write_labels(self, rows: Iterable[dict]) -> int:
        """Upsert delayed labels (video_id, scenario, label[, labelled_at])."""
        from sqlalchemy import text

        rows = [{"labelled_at": utcnow_iso(), **r} for r in rows]
        if not rows:
            return 0
        with self.engine.begin() as conn:
            conn.execute(text("DELETE FROM labels WHERE video_id = :video_id AND scenario = :scenario"), rows)
            conn.execute(
                text(
                    "INSERT INTO labels (video_id, scenario, label, labelled_at) "
                    "VALUES (:video_id, :scenario, :label, :labelled_at)"
                ),
                rows,
            )
        return len(rows)

    def read_predictions(
        self, since: str | None = None, until: str | None = None, scenario: str | None = None
    ) -> pd.DataFrame:
        """Predictions with since <= ts < until (ISO strings), probabilities parsed into lists."""
        clauses, params = [], {}
        for name, value, op in (("since", since, ">="), ("until", until, "<")):
            if value is not None:
                clauses.append(f"ts {op} :{name}")
                params[name] = value
        if scenario is not None:
            clauses.append("scenario = :scenario")
            params["scenario"] = scenario
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        df = self._query(f"SELECT * FROM predictions{where} ORDER BY ts", params)
        df["probabilities"] = df["probabilities"].map(json.loads)
        return df

    def read_labels(self) -> pd.DataFrame:
        return self._query("SELECT * FROM labels", {})

    def count(self) -> int:
        from sqlalchemy import text

        with self.engine.connect() as conn:
            return int(conn.execute(text("SELECT COUNT(*) FROM predictions")).scalar_one())

    def _query(self, sql: str, params: dict) -> pd.DataFrame:
        from sqlalchemy import text

        with self.engine.connect() as conn:
            return pd.read_sql_query(text(sql), conn, params=params)
