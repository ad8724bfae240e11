"""The prediction log and the delayed-labels table: written by serving, read by monitoring.

SQLite (WAL) by default; any SQLAlchemy URL (PostgreSQL at scale). Timestamps are ISO-8601 UTC
strings, probabilities a JSON list. ``http_request_id`` is the HTTP request's X-Request-ID (one
request of a batch gives several rows); ``request_id`` is the row's own key.

Durability (SQLite): ``synchronous="NORMAL"`` (default) keeps every committed row through a crash
of the process; ``"FULL"`` also through a power loss or OS crash, at the cost of an fsync per
commit. ``backup()`` copies a live log consistently (the WAL is checkpointed first).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from cpfd.errors import CpfdError

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
    "http_request_id",
)
LABEL_COLUMNS = ("video_id", "scenario", "label", "labelled_at")

_DDL = (
    """CREATE TABLE IF NOT EXISTS predictions (
        request_id TEXT PRIMARY KEY, ts TEXT NOT NULL, experiment TEXT NOT NULL, scenario TEXT NOT NULL,
        arm TEXT NOT NULL, model_tag TEXT NOT NULL, video_id BIGINT NOT NULL, label INTEGER NOT NULL,
        probabilities TEXT NOT NULL, confidence DOUBLE PRECISION NOT NULL, latency_ms DOUBLE PRECISION NOT NULL,
        http_request_id TEXT)""",
    # the monitor's and the pruner's time-window queries: per scenario, and over every scenario
    "CREATE INDEX IF NOT EXISTS predictions_scenario_ts ON predictions (scenario, ts)",
    "CREATE INDEX IF NOT EXISTS predictions_ts ON predictions (ts)",
    """CREATE TABLE IF NOT EXISTS labels (
        video_id BIGINT NOT NULL, scenario TEXT NOT NULL, label INTEGER NOT NULL, labelled_at TEXT NOT NULL,
        PRIMARY KEY (video_id, scenario))""",
)


def to_url(target: str | Path) -> str:
    """A path becomes a SQLite URL; a URL is kept."""
    text = str(target)
    return text if "://" in text else f"sqlite:///{Path(text).resolve()}"


def open_log(target: str | Path, synchronous: str = "NORMAL") -> PredictionLog:
    """The prediction log, proven writable; a failure is a CpfdError naming the file (or the URL, no password)."""
    from sqlalchemy.engine import make_url

    url = to_url(target)
    where = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else make_url(url).render_as_string()
    try:
        log = PredictionLog(target, synchronous)
        log.check_writable()
    except Exception as e:
        cause = getattr(e, "orig", None) or e  # the driver's own message, without SQLAlchemy's wrapping
        reason = " ".join(str(cause).split())[:160] or type(cause).__name__
        raise CpfdError(f"prediction log {where} is not writable ({reason})") from None
    return log


def utcnow_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


class PredictionLog:
    def __init__(self, target: str | Path, synchronous: str = "NORMAL"):
        from sqlalchemy import create_engine, event, inspect, text

        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
        self.url = to_url(target)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.engine = create_engine(self.url, future=True)
        if self.engine.dialect.name == "sqlite":

            @event.listens_for(self.engine, "connect")
            def _pragmas(conn, _record):
                cur = conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute(f"PRAGMA synchronous={synchronous}")
                cur.execute("PRAGMA busy_timeout=10000")
                cur.close()

        with self.engine.begin() as conn:
            for stmt in _DDL:
                conn.execute(text(stmt))
        if "http_request_id" not in {c["name"] for c in inspect(self.engine).get_columns("predictions")}:
            with self.engine.begin() as conn:  # a log written before the column existed
                conn.execute(text("ALTER TABLE predictions ADD COLUMN http_request_id TEXT"))

    @property
    def path(self) -> Path | None:
        """The SQLite file, or None for a server database."""
        return Path(self.url[len("sqlite:///") :]) if self.url.startswith("sqlite:///") else None

    def check_writable(self) -> None:
        """Raise when the log cannot take a write. For SQLite, the file and its folder must be writable; then a
        row is inserted and rolled back on the log's own engine. (No separate connection: SQLite can crash a
        process that holds the file open when a second connection meets it turned read-only.)"""
        from sqlalchemy import text

        if self.path is not None:
            for p in (self.path.parent, self.path):
                if p.exists() and not os.access(p, os.W_OK):
                    raise PermissionError(f"{p} is not writable")
        row = {c: "" for c in PREDICTION_COLUMNS} | {"video_id": 0, "label": 0, "confidence": 0.0, "latency_ms": 0.0}
        row["request_id"] = "__cpfd_write_probe__"
        with self.engine.connect() as conn:
            trans = conn.begin()
            conn.execute(
                text(f"INSERT INTO predictions ({', '.join(row)}) VALUES ({', '.join(':' + c for c in row)})"), row
            )
            trans.rollback()

    def backup(self, dest: str | Path) -> Path:
        """A consistent copy of a live SQLite log (WAL checkpointed, then SQLite's online backup)."""
        import sqlite3

        if self.path is None:
            raise ValueError("backup() copies a SQLite log; back up a server database with its own tools")
        dest = Path(dest)
        with closing(sqlite3.connect(self.path)) as src, closing(sqlite3.connect(dest)) as out:
            src.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            src.backup(out)
        return dest

    def append(self, rows: Iterable[dict]) -> int:
        """Insert prediction rows (dicts with PREDICTION_COLUMNS); one transaction."""
        from sqlalchemy import text

        rows = [
            {"http_request_id": None, **r, "probabilities": json.dumps([float(p) for p in r["probabilities"]])}
            for r in rows
        ]
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

    def prune(self, before: str) -> tuple[int, int]:
        """Delete predictions with ts < ``before`` (ISO-8601 UTC) and labels written before it, in one transaction;
        returns (predictions, labels) deleted. Retention for a log that would otherwise grow without bound."""
        from sqlalchemy import text

        with self.engine.begin() as conn:
            predictions = conn.execute(text("DELETE FROM predictions WHERE ts < :before"), {"before": before})
            labels = conn.execute(text("DELETE FROM labels WHERE labelled_at < :before"), {"before": before})
        return int(predictions.rowcount), int(labels.rowcount)

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
