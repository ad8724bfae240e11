"""Traffic simulator for the demo: the latest time window of the synthetic videos (held out of
training: it is the test period), optionally drifted in one scenario, sent through the running
service over HTTP (POST /classify_batch), then their delayed labels written to the prediction log.

Drift of strength s in [0, 1]: every frame is blended with uniform noise (weight s) and every
title word is replaced, with probability s, by a random word of the window's titles: the content
signal fades, so the student's confidence drops.
"""

from __future__ import annotations

import base64
import io
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd

from cpfd.config import ALL_MODALITIES
from cpfd.errors import CpfdError


def post_json(url: str, body: dict, timeout: float = 60.0) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as e:
        raise CpfdError(f"{url}: HTTP {e.code}: {e.read()[:500].decode(errors='replace')}") from None
    except (urllib.error.URLError, OSError) as e:
        raise CpfdError(f"{url}: service not reachable ({e}); start it with `cpfd serve`") from None


def later_window(
    videos_path: str | Path, scenarios: list[str], fraction: float, per_scenario: int, seed: int
) -> pd.DataFrame:
    """Per scenario, up to ``per_scenario`` videos sampled from its latest ``fraction`` of time."""
    from cpfd.config import load_config
    from cpfd.data.contract import load_videos

    if not 0 < fraction <= 1:
        raise CpfdError(f"window fraction must be in (0, 1], got {fraction}")
    config = Path(videos_path).parent / "scenarios.yaml"  # written next to the table by `cpfd generate`
    videos = load_videos(videos_path, load_config(config if config.exists() else None))
    rng = np.random.default_rng(seed)
    parts = []
    for s in scenarios:
        v = videos[videos["scenario"] == s]
        if v.empty:
            raise CpfdError(f"{videos_path}: no videos of scenario {s!r}")
        late = v[v["event_timestamp"] >= v["event_timestamp"].quantile(1 - fraction)]
        parts.append(late.iloc[np.sort(rng.choice(len(late), min(per_scenario, len(late)), replace=False))])
    return pd.concat(parts, ignore_index=True)


def drift_content(frames: np.ndarray, titles: list[str], strength: float, rng: np.random.Generator):
    """Fade the content signal: blend frames with noise, swap title words for random ones."""
    if strength <= 0:
        return frames, titles
    noise = rng.integers(0, 256, frames.shape)
    frames = np.clip((1 - strength) * frames + strength * noise, 0, 255).astype(np.uint8)
    vocab = sorted({w for t in titles for w in t.split()})
    titles = [
        " ".join(vocab[rng.integers(len(vocab))] if rng.random() < strength else w for w in t.split()) for t in titles
    ]
    return frames, titles


def png_b64(frame: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def simulate(
    url: str,
    log_target: str | Path,
    videos_path: str | Path,
    scenarios: list[str] | None = None,
    per_scenario: int = 200,
    fraction: float = 0.2,
    drift_scenario: str | None = None,
    drift: float = 0.0,
    label_share: float = 0.8,
    batch_size: int = 32,
    arm: str | None = None,
    seed: int = 0,
    log=print,
) -> dict:
    """Send the window through the service, then write delayed labels; returns the monitoring window."""
    from cpfd.data.frames import load_frames
    from cpfd.predlog import PredictionLog, utcnow_iso

    url = url.rstrip("/")
    served = post_json(f"{url}/info", {}).get("scenarios", {})
    scenarios = scenarios or sorted(served)
    unknown = sorted(set(scenarios) - set(served))
    if unknown:
        raise CpfdError(f"scenario(s) {unknown} are not served by {url}; served: {sorted(served)}")
    if drift_scenario is not None and drift_scenario not in scenarios:
        raise CpfdError(f"--drift-scenario {drift_scenario!r} is not among the simulated scenarios {scenarios}")
    window = later_window(videos_path, scenarios, fraction, per_scenario, seed)
    rng = np.random.default_rng(seed + 1)
    since = utcnow_iso()
    answered, t0 = [], time.perf_counter()
    for s in scenarios:
        v = window[window["scenario"] == s]
        reads = served[s].get("modalities", list(ALL_MODALITIES))
        if "frames" in reads:
            frames = load_frames(v["frames"].tolist(), Path(videos_path).parent, source=str(videos_path))
        else:  # a title-only scenario: no frames to send
            frames = np.zeros((len(v), 0, 1, 1, 3), np.uint8)
        titles = v["title"].tolist() if "title" in reads else [""] * len(v)
        frames, titles = drift_content(frames, titles, drift if s == drift_scenario else 0.0, rng)
        for lo in range(0, len(v), batch_size):
            batch = [
                {
                    "scenario": s,
                    "video_id": int(vid),
                    "title": title,
                    "frames": [png_b64(f) for f in fr],
                    **({"arm": arm} if arm else {}),
                }
                for vid, title, fr in zip(
                    v["video_id"].iloc[lo : lo + batch_size],
                    titles[lo : lo + batch_size],
                    frames[lo : lo + batch_size],
                    strict=True,
                )
            ]
            answered += post_json(f"{url}/classify_batch", {"videos": batch})["predictions"]
        log(f"{s}: sent {len(v)} videos" + (f" (drift {drift})" if s == drift_scenario and drift > 0 else ""))
    until = utcnow_iso()  # after the last answer, so after the last logged prediction
    seconds = time.perf_counter() - t0
    truth = window.set_index(["scenario", "video_id"])["label"]
    keys = {(a["scenario"], int(a["video_id"])) for a in answered}
    labelled = [k for k in sorted(keys) if rng.random() < label_share]
    PredictionLog(log_target).write_labels(
        [{"scenario": s, "video_id": vid, "label": int(truth[(s, vid)])} for s, vid in labelled]
    )
    arms = pd.Series([a["arm"] for a in answered]).value_counts().to_dict()
    log(f"{len(answered)} predictions in {seconds:.1f}s (arms {arms}); {len(labelled)} delayed labels written")
    return {
        "since": since,
        "until": until,
        "predictions": len(answered),
        "labelled": len(labelled),
        "arms": arms,
        "seconds": round(seconds, 2),
    }
