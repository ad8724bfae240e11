"""The prediction-log reader: one window of predictions joined with their delayed labels."""

from __future__ import annotations

import pandas as pd

from cpfd.errors import CpfdError

WINDOW_SQL = """
SELECT p.ts, p.experiment, p.scenario, p.arm, p.model_tag, p.video_id, p.label AS predicted, p.confidence,
       l.label AS true_label
FROM predictions p LEFT JOIN labels l ON l.video_id = p.video_id AND l.scenario = p.scenario
WHERE p.ts >= :since AND p.ts < :until
"""


def iso_utc(value: str, name: str) -> str:
    """An ISO-8601 time as the log writes it (UTC, microseconds, +00:00); naive times are UTC."""
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as e:
        raise CpfdError(f"{name} {value!r} is not an ISO-8601 time (e.g. 2026-03-01T00:00:00Z)") from e
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.isoformat(timespec="microseconds")


def read_window(log, since: str, until: str) -> pd.DataFrame:
    """Predictions with since <= ts < until and their label (NaN when not labelled yet)."""
    from sqlalchemy import text

    since, until = iso_utc(since, "--since"), iso_utc(until, "--until")
    if since >= until:
        raise CpfdError(f"empty time range: --since {since} is not before --until {until}")
    with log.engine.connect() as conn:
        df = pd.read_sql_query(text(WINDOW_SQL), conn, params={"since": since, "until": until})
    df["predicted"] = df["predicted"].astype("int64")
    df["confidence"] = df["confidence"].astype("float64")
    df["true_label"] = df["true_label"].astype("float64")
    return df


def safe_url(log) -> str:
    return log.engine.url.render_as_string(hide_password=True)
