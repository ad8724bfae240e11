"""The prediction log and the delayed-labels table: written by serving, read by monitoring.

SQLite (WAL) by default; any SQLAlchemy URL (PostgreSQL at scale). The tables, their typed columns
(UTC timestamps, JSON probabilities) and the migrations from earlier logs are in cpfd.predlog_schema,
shared with the reader (cpfd.monitoring.logread); every statement here is SQLAlchemy Core on those tables.
Rows come in with ``ts`` as a datetime or an ISO-8601 string (naive: UTC). ``http_request_id`` is the
HTTP request's X-Request-ID (one request of a batch gives several rows); ``request_id`` is the row's own key.

Durability (SQLite): ``synchronous="NORMAL"`` (default) keeps every committed row through a crash
of the process; ``"FULL"`` also through a power loss or OS crash, at the cost of an fsync per
commit. ``backup()`` copies a live log consistently (the WAL is checkpointed first).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from cpfd.errors import CpfdError
from cpfd.predlog_schema import LABEL_COLUMNS, PREDICTION_COLUMNS, labels, migrate, predictions

__all__ = ["LABEL_COLUMNS", "PREDICTION_COLUMNS", "PredictionLog", "open_log", "to_url", "utcnow_iso"]


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
    """The log on one SQLAlchemy engine; opening it creates the tables or migrates an earlier schema's log
    (cpfd.predlog_schema.migrate). ``migrated_from``: the schema version found (0: a new log)."""

    def __init__(self, target: str | Path, synchronous: str = "NORMAL"):
        from sqlalchemy import create_engine, event

        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
        self.url = to_url(target)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.engine = create_engine(self.url)
        if self.engine.dialect.name == "sqlite":

            @event.listens_for(self.engine, "connect")
            def _pragmas(conn, _record):
                cur = conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute(f"PRAGMA synchronous={synchronous}")
                cur.execute("PRAGMA busy_timeout=10000")
                cur.close()

        self.migrated_from = migrate(self.engine)

    @property
    def path(self) -> Path | None:
        """The SQLite file, or None for a server database."""
        return Path(self.url[len("sqlite:///") :]) if self.url.startswith("sqlite:///") else None

    def check_writable(self) -> None:
        """Raise when the log cannot take a write. For SQLite, the file and its folder must be writable; then a
        row is inserted and rolled back on the log's own engine. (No separate connection: SQLite can crash a
        process that holds the file open when a second connection meets it turned read-only.)"""
        if self.path is not None:
            for p in (self.path.parent, self.path):
                if p.exists() and not os.access(p, os.W_OK):
                    raise PermissionError(f"{p} is not writable")
        row: dict[str, object] = {c: "" for c in PREDICTION_COLUMNS}
        row |= {"video_id": 0, "label": 0, "confidence": 0.0, "latency_ms": 0.0}
        row |= {"request_id": "__cpfd_write_probe__", "ts": datetime.now(UTC), "probabilities": []}
        with self.engine.connect() as conn:
            trans = conn.begin()
            conn.execute(predictions.insert(), row)
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
        """Insert prediction rows (dicts with PREDICTION_COLUMNS; ``http_request_id`` optional); one transaction."""
        rows = [{"http_request_id": None, **r, "probabilities": [float(p) for p in r["probabilities"]]} for r in rows]
        if not rows:
            return 0
        with self.engine.begin() as conn:
            conn.execute(predictions.insert(), rows)
        return len(rows)

    def write_labels(self, rows: Iterable[dict]) -> int:
        """Upsert delayed labels (video_id, scenario, label[, labelled_at]); one transaction."""
        from sqlalchemy import and_, bindparam

        now = datetime.now(UTC)
        rows = [{"labelled_at": now, **r} for r in rows]
        if not rows:
            return 0
        same = and_(labels.c.video_id == bindparam("b_video_id"), labels.c.scenario == bindparam("b_scenario"))
        keys = [{"b_video_id": r["video_id"], "b_scenario": r["scenario"]} for r in rows]
        with self.engine.begin() as conn:
            conn.execute(labels.delete().where(same), keys)
            conn.execute(labels.insert(), [{c: r[c] for c in LABEL_COLUMNS} for r in rows])
        return len(rows)

    def read_predictions(
        self, since: str | datetime | None = None, until: str | datetime | None = None, scenario: str | None = None
    ) -> pd.DataFrame:
        """Predictions with since <= ts < until (datetimes or ISO strings), ``ts`` as UTC timestamps and
        ``probabilities`` as lists."""
        from sqlalchemy import select

        query = select(predictions).order_by(predictions.c.ts)
        if since is not None:
            query = query.where(predictions.c.ts >= since)
        if until is not None:
            query = query.where(predictions.c.ts < until)
        if scenario is not None:
            query = query.where(predictions.c.scenario == scenario)
        df = self._query(query)
        df["ts"] = pd.to_datetime(df["ts"], utc=True).astype("datetime64[ns, UTC]")  # one unit on pandas 2 and 3
        return df

    def prune(self, before: str | datetime) -> tuple[int, int]:
        """Delete predictions with ts < ``before`` (ISO-8601 or a datetime; naive: UTC) and labels written before
        it, in one transaction; returns (predictions, labels) deleted. Retention for a log that would otherwise grow
        without bound."""
        with self.engine.begin() as conn:
            deleted = conn.execute(predictions.delete().where(predictions.c.ts < before))
            deleted_labels = conn.execute(labels.delete().where(labels.c.labelled_at < before))
        return int(deleted.rowcount), int(deleted_labels.rowcount)

    def read_labels(self) -> pd.DataFrame:
        from sqlalchemy import select

        df = self._query(select(labels))
        df["labelled_at"] = pd.to_datetime(df["labelled_at"], utc=True).astype("datetime64[ns, UTC]")
        return df

    def count(self) -> int:
        from sqlalchemy import func, select

        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(predictions)).scalar_one())

    def _query(self, query) -> pd.DataFrame:
        with self.engine.connect() as conn:
            result = conn.execute(query)
            return pd.DataFrame(result.fetchall(), columns=list(result.keys()))
