"""Where the versions of a serving config and their history live, and the history's record format: written by
``cpfd experiment ramp|promote|rollback`` (cpfd.serving.rollout) and by the monitoring policy, read by the monitoring
job (the time the traffic shares last changed starts a new sample-ratio phase).

For a serving config ``DIR/config.yaml``: ``DIR/config.versions/v0001.yaml, v0002.yaml, ...`` (every version
ever made live, the first one the file as it was before any command touched it) and
``DIR/config.versions/history.jsonl``, one JSON object a line::

    {"version": 2, "time": "2026-12-06T03:00:00+00:00", "who": "alice", "action": "ramp", "scenario": "clickbait",
     "why": "...", "traffic_before": {"control": 0.5, "treatment": 0.5}, "traffic_after": {...}, "verdict": {...}}
"""

from __future__ import annotations

import json
from pathlib import Path


def versions_dir(config_path: str | Path) -> Path:
    p = Path(config_path)
    return p.with_name(p.stem + ".versions")


def history_path(config_path: str | Path) -> Path:
    return versions_dir(config_path) / "history.jsonl"


def read_history(config_path: str | Path) -> list[dict]:
    """Every record, oldest first; [] when no command has changed the config yet."""
    path = history_path(config_path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def last_change(config_path: str | Path, scenario: str) -> str | None:
    """When the traffic shares of ``scenario`` last changed (ISO-8601 UTC), or None."""
    times = [
        r["time"]
        for r in read_history(config_path)
        if r.get("scenario") == scenario and r.get("traffic_before") != r.get("traffic_after")
    ]
    return max(times) if times else None
