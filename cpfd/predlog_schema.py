"""The prediction log's schema, one for the writer (cpfd.predlog, used by serving) and the reader
(cpfd.monitoring.logread): SQLAlchemy Core tables with typed columns, and the migrations from the logs the
earlier schemas wrote.

Schema versions (kept in the ``cpfd_schema`` table from version 3 on):

1. ``predictions`` with ISO-8601 text timestamps and JSON text probabilities, no ``http_request_id``;
2. version 1 plus ``http_request_id`` (a log written before this module existed is version 1 or 2);
3. typed: ``ts`` and ``labelled_at`` are timestamps (UTC), ``probabilities`` a JSON column.

``migrate(engine)`` brings any earlier log to the current version in one transaction (SQLite: ``BEGIN
IMMEDIATE``; PostgreSQL: an advisory lock), so two service workers starting at once migrate it once. A
version-1 or -2 table is renamed, the typed one created, the rows copied over in key order, chunk by chunk,
and the old table dropped.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Double,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    TypeDecorator,
    inspect,
    select,
    text,
    tuple_,
)
from sqlalchemy.engine import Connection, Engine

SCHEMA_VERSION = 3
COPY_CHUNK = 20_000
_PG_LOCK_KEY = 0x63706664  # "cpfd": the advisory lock key that serialises migrations on PostgreSQL


class UTCDateTime(TypeDecorator):
    """A UTC timestamp. Binds a datetime or an ISO-8601 string (naive means UTC); PostgreSQL stores a
    ``timestamptz``, SQLite SQLAlchemy's sortable text form of the UTC time. Read back: aware on PostgreSQL,
    naive UTC on SQLite (readers normalise with ``pandas.to_datetime(..., utc=True)``)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        return to_utc(value).replace(tzinfo=None) if dialect.name == "sqlite" else to_utc(value)


def to_utc(value: datetime | str) -> datetime:
    """A datetime or an ISO-8601 string as an aware UTC datetime (naive times are UTC)."""
    ts = datetime.fromisoformat(value) if isinstance(value, str) else value
    if not isinstance(ts, datetime):
        ts = ts.to_pydatetime()  # a pandas Timestamp
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


metadata = MetaData()

predictions = Table(
    "predictions",
    metadata,
    Column("request_id", String, primary_key=True),  # the row's own key
    Column("ts", UTCDateTime, nullable=False),
    Column("experiment", String, nullable=False),
    Column("scenario", String, nullable=False),
    Column("arm", String, nullable=False),
    Column("model_tag", String, nullable=False),
    Column("video_id", BigInteger, nullable=False),
    Column("label", Integer, nullable=False),
    Column("probabilities", JSON, nullable=False),
    Column("confidence", Double, nullable=False),
    Column("latency_ms", Double, nullable=False),
    Column("http_request_id", String, nullable=True),  # the HTTP request's X-Request-ID (a batch: several rows)
    # the monitor's and the pruner's time-window queries: per scenario, and over every scenario
    Index("predictions_scenario_ts", "scenario", "ts"),
    Index("predictions_ts", "ts"),
)

labels = Table(
    "labels",
    metadata,
    Column("video_id", BigInteger, primary_key=True),
    Column("scenario", String, primary_key=True),
    Column("label", Integer, nullable=False),
    Column("labelled_at", UTCDateTime, nullable=False),
)

schema_version = Table(
    "cpfd_schema",
    metadata,
    Column("name", String, primary_key=True),
    Column("version", Integer, nullable=False),
)

PREDICTION_COLUMNS = tuple(c.name for c in predictions.columns)
LABEL_COLUMNS = tuple(c.name for c in labels.columns)
_OLD_INDEXES = ("predictions_scenario_ts", "predictions_ts")


def current_version(conn: Connection) -> int:
    """The log's schema version: 0 for an empty database, 1 or 2 for a log of the text schemas."""
    names = set(inspect(conn).get_table_names())
    if schema_version.name in names:
        found = conn.execute(select(schema_version.c.version).where(schema_version.c.name == "predlog")).scalar()
        if found is not None:
            return int(found)
    if "predictions" not in names:
        return 0
    columns = {c["name"] for c in inspect(conn).get_columns("predictions")}
    return 2 if "http_request_id" in columns else 1


def migrate(engine: Engine) -> int:
    """Create or upgrade the log's tables to ``SCHEMA_VERSION``; returns the version found (0: a new log). A log
    already at the current version is only read (no lock, no write: a read-only copy opens)."""
    with engine.connect() as conn:
        if current_version(conn) == SCHEMA_VERSION:
            return SCHEMA_VERSION
    with engine.connect() as conn:
        _lock(conn)
        found = current_version(conn)
        if found > SCHEMA_VERSION:
            conn.rollback()
            raise RuntimeError(
                f"the prediction log has schema version {found}, newer than this cpfd's {SCHEMA_VERSION}: upgrade cpfd"
            )
        if found in (1, 2):
            _from_text_schema(conn)
        metadata.create_all(conn, checkfirst=True)
        if found != SCHEMA_VERSION:
            conn.execute(schema_version.delete().where(schema_version.c.name == "predlog"))
            conn.execute(schema_version.insert().values(name="predlog", version=SCHEMA_VERSION))
        conn.commit()
    return found


def _lock(conn: Connection) -> None:
    """Serialise concurrent migrations: the rest of the transaction runs under the lock."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock now, not at the first write
    elif conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})


def _from_text_schema(conn: Connection) -> None:
    """Versions 1 and 2 to 3: rename the old tables, create the typed ones, copy the rows, drop the old ones."""
    for name in _OLD_INDEXES:  # index names are per database: the typed table's indexes take them
        conn.execute(text(f"DROP INDEX IF EXISTS {name}"))
    names = set(inspect(conn).get_table_names())
    for table in ("predictions", "labels"):
        if table not in names:
            continue
        pkey = inspect(conn).get_pk_constraint(table).get("name")
        conn.execute(text(f"ALTER TABLE {table} RENAME TO {table}_text"))
        if pkey and conn.dialect.name == "postgresql":  # its primary key's index keeps a name the new table needs
            conn.execute(text(f'ALTER INDEX "{pkey}" RENAME TO "{table}_text_pkey"'))
    metadata.create_all(conn, tables=[predictions, labels], checkfirst=False)
    old = MetaData()
    _copy(conn, Table("predictions_text", old, autoload_with=conn), predictions, _typed_prediction)
    if "labels" in names:
        _copy(conn, Table("labels_text", old, autoload_with=conn), labels, _typed_label)
    for table in ("predictions_text", "labels_text"):
        if table in old.tables:
            old.tables[table].drop(conn)


def _copy(conn: Connection, source: Table, dest: Table, convert: Callable[[dict], dict]) -> None:
    """Every row of ``source`` into ``dest``, in primary-key order, ``COPY_CHUNK`` rows at a time."""
    key = [source.c[c.name] for c in dest.primary_key.columns]
    last: tuple | None = None
    while True:
        query = select(source).order_by(*key).limit(COPY_CHUNK)
        if last is not None:
            query = query.where(tuple_(*key) > tuple_(*last))
        rows = [dict(r) for r in conn.execute(query).mappings()]
        if not rows:
            return
        conn.execute(dest.insert(), [convert(r) for r in rows])
        last = tuple(rows[-1][c.name] for c in key)


def _typed_prediction(row: dict) -> dict:
    out = {c: row.get(c) for c in PREDICTION_COLUMNS}  # a version-1 row has no http_request_id: None
    out["ts"] = to_utc(row["ts"])
    out["probabilities"] = json.loads(row["probabilities"])
    return out


def _typed_label(row: dict) -> dict:
    return {**{c: row[c] for c in LABEL_COLUMNS}, "labelled_at": to_utc(row["labelled_at"])}
