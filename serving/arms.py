"""A/B arms: a stable hash of (experiment, video_id) against the configured traffic shares."""

from __future__ import annotations

import hashlib


def hash_unit(experiment: str, video_id: int) -> float:
    """A stable number in [0, 1) from (experiment, video_id): same video, same arm, every process."""
    digest = hashlib.sha256(f"{experiment}\x1f{int(video_id)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign_arm(experiment: str, video_id: int, traffic: dict[str, float]) -> str:
    """Walk the arms in config order; the hash falls in one arm's share of [0, 1)."""
    u = hash_unit(experiment, video_id)
    edge = 0.0
    for arm, share in traffic.items():
        edge += share
        if u < edge:
            return arm
    return next(arm for arm in reversed(traffic) if traffic[arm] > 0)  # rounding left u past the last edge
