"""Hand-built "bring your own data" tables (not the synthetic generator's): two scenarios, each with its
own privileged feature table and its own feature service, one of them text-only.

- ``moderation`` (frames + title, 2 classes) reads ``mod_signals.parquet``: ``m_reports`` (int64),
  ``m_watch_ratio`` (float64).
- ``topic`` (title only, 3 classes, no frames column needed) reads ``topic_signals.parquet``:
  ``t_channel_score``, ``t_click_rate``.
Titles are punctuated, with URLs and mixed case; the privileged features carry the label more clearly
than the inputs do, as real offline signals would.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

T0 = pd.Timestamp("2026-03-01", tz="UTC")
WORDS = {
    "moderation": [["tutorial", "recipe", "garden", "travel"], ["shocking", "FREE", "giveaway", "click!!"]],
    "topic": [["goal", "match", "league"], ["guitar", "album", "concert"], ["election", "senate", "policy"]],
}
FILLER = ["the", "best", "video", "today,", "you'll", "see", "why", "https://example.com/v?id=7", "new", "2026"]

CONFIG = {
    "train": {"epochs": 2, "batch_size": 32},
    "feature_store": {
        "sources": {
            "mod_signals": {"path": "mod_signals.parquet", "description": "Moderation signals per video."},
            "topic_signals": {"path": "topic_signals.parquet", "description": "Topic signals per video."},
        },
        "views": {
            "mod_view": {"source": "mod_signals", "features": ["m_reports", "m_watch_ratio"], "dtype": "float64"},
            "topic_view": {"source": "topic_signals", "features": ["t_channel_score", "t_click_rate"]},
        },
        "services": {
            "moderation_teacher_v1": {"features": ["mod_view"], "description": "Moderation teacher, v1."},
            "topic_teacher_v1": {"features": ["topic_view"], "description": "Topic teacher, v1."},
        },
    },
    "scenarios": [
        {
            "name": "moderation",
            "label_names": ["ok", "remove"],
            "feature_service": "moderation_teacher_v1",
            "gate": {"min_gain_over_baseline": -1.0, "max_gap_to_teacher": 1.0},
        },
        {
            "name": "topic",
            "label_names": ["sports", "music", "politics"],
            "feature_service": "topic_teacher_v1",
            "modalities": ["title"],
            "gate": {"min_gain_over_baseline": -1.0, "max_gap_to_teacher": 1.0},
        },
    ],
}


def _titles(rng: np.random.Generator, scenario: str, labels: np.ndarray) -> list[str]:
    out = []
    for y in labels:
        own = rng.choice(WORDS[scenario][y], size=2)
        words = [*own, *rng.choice(FILLER, size=int(rng.integers(3, 9)))]
        rng.shuffle(words)
        out.append(" ".join(words).capitalize())
    return out


def write_byo_tables(out: Path, n: int = 240, seed: int = 3, resolution: str = "ns") -> dict[str, Path]:
    """videos.parquet (+ frames/moderation.npy), mod_signals.parquet, topic_signals.parquet, scenarios.yaml."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    (out / "frames").mkdir(exist_ok=True)
    videos, features = [], {}
    for i, scenario in enumerate(("moderation", "topic")):
        k = len(WORDS[scenario])
        labels = rng.integers(0, k, n)
        ts = T0 + pd.to_timedelta(np.sort(rng.uniform(0, 60 * 86400, n)), unit="s")
        ids = np.arange(n, dtype=np.int64) + (i + 1) * 1_000_000
        df = pd.DataFrame(
            {"video_id": ids, "scenario": scenario, "event_timestamp": ts, "label": labels.astype(np.int64)}
        )
        df["title"] = _titles(rng, scenario, labels)
        if scenario == "moderation":
            frames = rng.integers(0, 60, (n, 4, 16, 16, 3)).astype(np.uint8)
            frames[labels == 1, :, :8] += 120  # a bright top half hints at removal, noisily
            np.save(out / "frames" / "moderation.npy", frames)
            df["frames"] = [f"frames/moderation.npy#{j}" for j in range(n)]
        videos.append(df)
        has = rng.random(n) < 0.9  # a tenth of the videos have no feature row
        feat = pd.DataFrame({"video_id": ids[has], "event_timestamp": ts[has] - pd.Timedelta(hours=2)})
        feat["created"] = feat["event_timestamp"] + pd.Timedelta(minutes=5)
        y = labels[has]
        if scenario == "moderation":
            feat["m_reports"] = rng.poisson(1 + 6 * y).astype(np.int64)
            feat["m_watch_ratio"] = np.clip(rng.normal(0.6 - 0.3 * y, 0.15), 0, 1)
        else:
            feat["t_channel_score"] = (rng.normal(y, 0.4)).astype(np.float32)
            feat["t_click_rate"] = rng.beta(2 + 3 * (y == 1), 5, has.sum()).astype(np.float32)
        features[scenario] = feat
    paths = {"videos": out / "videos.parquet", "config": out / "scenarios.yaml"}
    table = pd.concat(videos, ignore_index=True)  # topic rows have no frames: null in that column
    _with_resolution(table, resolution).to_parquet(paths["videos"], index=False)
    for scenario, name in (("moderation", "mod_signals"), ("topic", "topic_signals")):
        paths[name] = out / f"{name}.parquet"
        _with_resolution(features[scenario], resolution).to_parquet(paths[name], index=False)
    paths["config"].write_text(yaml.safe_dump(CONFIG, sort_keys=False))
    return paths


def _with_resolution(df: pd.DataFrame, unit: str) -> pd.DataFrame:
    df = df.copy()
    for c in ("event_timestamp", "created"):
        if c in df:
            df[c] = df[c].astype(f"datetime64[{unit}, UTC]")
    return df
