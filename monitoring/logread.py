"""The prediction-log reader: one window of predictions joined with their delayed labels, a SQLAlchemy Core
query on the tables the writer uses (cpfd.predlog_schema)."""

from __future__ import annotations

import pandas as pd

from cpfd.errors import CpfdError


def iso_utc(value: str, name: str) -> str:
    """An ISO-8601 time as UTC with microseconds and +00:00; naive times are UTC."""
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as e:
        raise CpfdError(f"{name} {value!r} is not an ISO-8601 time (e.g. 2026-03-01T00:00:00Z)") from e
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.isoformat(timespec="microseconds")


def window_query(since: str, until: str):
    """Predictions with since <= ts < until, left-joined with their label (``true_label``; null: not labelled)."""
    from sqlalchemy import and_, select

    from cpfd.predlog_schema import labels, predictions

    p, lab = predictions.c, labels.c
    joined = predictions.outerjoin(labels, and_(lab.video_id == p.video_id, lab.scenario == p.scenario))
    return (
        select(
            p.ts,
            p.experiment,
            p.scenario,
            p.arm,
            p.model_tag,
            p.video_id,
            p.label.label("predicted"),
            p.confidence,
            p.latency_ms,
            lab.label.label("true_label"),
        )
        .select_from(joined)
        .where(p.ts >= since, p.ts < until)
    )


def read_window(log, since: str, until: str) -> pd.DataFrame:
    """Predictions with since <= ts < until and their label (NaN when not labelled yet); ``ts`` in UTC."""
    since, until = iso_utc(since, "--since"), iso_utc(until, "--until")
    if since >= until:
        raise CpfdError(f"empty time range: --since {since} is not before --until {until}")
    with log.engine.connect() as conn:
        result = conn.execute(window_query(since, until))
        df = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
    df["ts"] = pd.to_datetime(df["ts"], utc=True).astype("datetime64[ns, UTC]")  # one unit on pandas 2 and 3
    df["predicted"] = df["predicted"].astype("int64")
    df["confidence"] = df["confidence"].astype("float64")
    df["latency_ms"] = df["latency_ms"].astype("float64")
    df["true_label"] = df["true_label"].astype("float64")
    return df


def safe_url(log) -> str:
    return log.engine.url.render_as_string(hide_password=True)
