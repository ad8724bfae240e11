"""Synthetic short videos: the embedded default data, written in the data contract.

Two generators: v2 (default; design in docs/generator_v2.md: slices where the privileged
features are missing, stale or misleading, and Bayes references kept in ``oracle.parquet``)
and v1, described here and below.

Each video has a latent true class ``z``. Its frames show the visual cue of ``z`` in some of the
frames (other frames show a random class's cue), and its title holds a few cue words of ``z``
among neutral words. The annotated ``label`` is ``z`` with scenario-specific label noise.

The privileged dense features are of two kinds, as on a real platform:
- *analyzer* features (heavy offline models run on the whole video): a clean reading of what
  the content shows (the share of frames and title words that carry each class's cue), which the
  light student could in principle learn from pixels and words but only with far more data;
- *engagement* statistics: shifted by the true class, information the content does not carry;
and the rest is nuisance. Scenarios differ in classes, imbalance, label noise, the strength of
each kind, and how often a video has no feature row at all.

A second, later feature row per video ("post-label" statistics that leak the label) tests
that the point-in-time join never reads the future.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from cpfd.config import default_config_path, read_yaml
from cpfd.errors import DataContractError

N_DENSE = 32
N_ANALYZER = 12
N_ENGAGEMENT = 8
START = datetime(2026, 1, 1, tzinfo=UTC)
SPAN_DAYS = 90
N_SCENES = 16  # background scene templates
SYLLABLES = ["ka", "lo", "mi", "ru", "te", "sa", "no", "vi", "pe", "zu", "da", "fo", "gi", "ha", "je", "wu"]


@dataclass(frozen=True)
class ScenarioSpec:
    """How one synthetic scenario's data is drawn."""

    name: str
    label_names: tuple[str, ...]
    priors: tuple[float, ...]
    label_noise: float  # P(label != true class)
    frame_signal: float  # P(a frame shows the true class's cue)
    title_signal: float  # P(a title word is a cue word of the true class)
    analyzer_signal: float  # scale of the content reading in the analyzer features, in noise std
    engagement_signal: float  # class shift of the engagement features, in noise std
    dense_missing: float  # P(a video has no feature row at all)


SCENARIOS: tuple[ScenarioSpec, ...] = (
    ScenarioSpec("content_quality", ("low", "medium", "high"), (0.3, 0.45, 0.25), 0.10, 0.45, 0.15, 3.0, 0.8, 0.10),
    ScenarioSpec("clickbait", ("ok", "clickbait"), (0.8, 0.2), 0.12, 0.40, 0.20, 3.0, 1.2, 0.05),
    ScenarioSpec("minor_safety", ("safe", "unsafe"), (0.9, 0.1), 0.04, 0.50, 0.12, 3.5, 0.3, 0.30),
    ScenarioSpec(
        "originality",
        ("original", "reupload", "compilation", "ai_generated"),
        (0.4, 0.3, 0.2, 0.1),
        0.10,
        0.45,
        0.15,
        3.0,
        0.6,
        0.20,
    ),
    ScenarioSpec("ad_content", ("organic", "advertising"), (0.7, 0.3), 0.20, 0.40, 0.15, 2.0, 0.5, 0.45),
)


def _pseudo_words(rng: np.random.Generator, n: int) -> list[str]:
    words: set[str] = set()
    while len(words) < n:
        words.add("".join(rng.choice(SYLLABLES, size=rng.integers(2, 4))))
    return sorted(words)


def _templates(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """Smooth colour patterns [n, size, size, 3] in [-1, 1]: a coarse grid upsampled."""
    coarse = rng.uniform(-1, 1, size=(n, 4, 4, 3))
    reps = -(-size // 4)
    return np.repeat(np.repeat(coarse, reps, axis=1), reps, axis=2)[:, :size, :size]


@dataclass
class _Content:
    """What a student sees of a batch of videos, and the class evidence behind it."""

    labels: np.ndarray  # the annotated label (true class with label noise)
    shown: np.ndarray  # [N, T]: the class whose template each frame shows
    scene: np.ndarray  # [N]: the background scene of each video
    frames: np.ndarray  # uint8 [N, T, H, W, 3]
    titles: list[str]
    title_cues: np.ndarray  # [N, K]: the share of title words cueing each class
    word_classes: list[list[int]]  # per video, the class each title word cues (-1: a neutral word)


def _draw_content(
    rng: np.random.Generator,
    z: np.ndarray,
    k: int,
    label_noise: float,
    frame_signal: float,
    title_signal: float,
    frames: int,
    image_size: int,
    vocab: list[str],
) -> _Content:
    """Labels, frames and titles of videos of true classes ``z`` (the same draws for both generators).

    Frames: per frame, the true class's template with probability ``frame_signal``, else a random
    class's, over one of 16 background scenes plus pixel noise. Titles: 6-12 words; cue words of the
    true class, decoys of a random class, neutral words."""
    n = len(z)
    noisy = rng.random(n) < label_noise
    labels = np.where(noisy, (z + rng.integers(1, k, size=n)) % k, z)
    cues = _templates(rng, k, image_size)
    scenes = _templates(rng, N_SCENES, image_size)
    shown = np.where(rng.random((n, frames)) < frame_signal, z[:, None], rng.integers(0, k, (n, frames)))
    scene = rng.integers(0, N_SCENES, n)
    pixels = (
        128 + 45 * cues[shown] + 35 * scenes[scene][:, None] + rng.normal(0, 40, (n, frames, image_size, image_size, 3))
    )
    cue_words = [vocab[i * 12 : (i + 1) * 12] for i in range(k)]
    neutral = vocab[k * 12 :]
    titles, title_cues, word_classes = [], np.zeros((n, k)), []
    for i in range(n):
        n_words = int(rng.integers(6, 13))
        words, classes = [], []
        for _ in range(n_words):
            r = rng.random()
            c = z[i] if r < title_signal else (int(rng.integers(k)) if r < 1.5 * title_signal else -1)
            words.append(rng.choice(cue_words[c]) if c >= 0 else rng.choice(neutral))
            classes.append(int(c))
            if c >= 0:
                title_cues[i, c] += 1 / n_words
        titles.append(" ".join(words))
        word_classes.append(classes)
    frame_array = np.clip(pixels, 0, 255).astype(np.uint8)
    return _Content(labels, shown, scene, frame_array, titles, title_cues, word_classes)


def generate_scenario(
    s: ScenarioSpec,
    n_videos: int,
    rng: np.random.Generator,
    id_offset: int,
    frames: int,
    image_size: int,
    vocab: list[str],
    feature_pattern: np.ndarray,
    analyzer_map: np.ndarray,
    feature_scale: np.ndarray,
    feature_offset: np.ndarray,
) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
    k = len(s.label_names)
    z = rng.choice(k, size=n_videos, p=np.asarray(s.priors) / sum(s.priors))
    seen = _draw_content(rng, z, k, s.label_noise, s.frame_signal, s.title_signal, frames, image_size, vocab)
    label, shown, frame_array, titles, title_cues = seen.labels, seen.shown, seen.frames, seen.titles, seen.title_cues

    seconds = np.sort(rng.uniform(0, SPAN_DAYS * 86400, n_videos))
    ts = pd.to_datetime(START) + pd.to_timedelta(np.floor(seconds * 1e6).astype("int64"), unit="us")
    video_id = np.arange(id_offset, id_offset + n_videos, dtype=np.int64)
    videos = pd.DataFrame(
        {
            "video_id": video_id,
            "scenario": s.name,
            "event_timestamp": ts,
            "label": label.astype(np.int64),
            "title": titles,
        }
    )

    # privileged dense features, known before the label (1 h to 2 days earlier)
    frame_cues = np.eye(k)[shown].mean(axis=1)  # share of frames showing each class's cue
    content = np.concatenate([frame_cues, 3 * title_cues], axis=1)  # what an analyzer reads

    def dense_rows(cls: np.ndarray, content: np.ndarray, analyzer: float, engagement: float) -> np.ndarray:
        x = rng.normal(0, 1, (len(cls), N_DENSE))
        x[:, :N_ANALYZER] += analyzer * (content - content.mean(0)) @ analyzer_map
        x[:, N_ANALYZER : N_ANALYZER + N_ENGAGEMENT] += engagement * feature_pattern[cls][:, :N_ENGAGEMENT]
        return feature_offset + feature_scale * x

    has_row = rng.random(n_videos) >= s.dense_missing
    before = ts - pd.to_timedelta(rng.uniform(3600, 2 * 86400, n_videos), unit="s").floor("us")
    x = dense_rows(z, content, s.analyzer_signal, s.engagement_signal)
    x[rng.random(x.shape) < 0.02] = np.nan
    rows = [_feature_frame(video_id[has_row], before[has_row], x[has_row])]
    # later rows that leak the annotated label: a correct join never reads them
    leak = rng.random(n_videos) < 0.5
    after = ts + pd.to_timedelta(rng.uniform(3600, 5 * 86400, n_videos), unit="s").floor("us")
    rows.append(_feature_frame(video_id[leak], after[leak], dense_rows(label[leak], content[leak], 0.0, 4.0)))
    features = pd.concat(rows, ignore_index=True)
    return videos, frame_array, features


def _feature_frame(video_id: np.ndarray, ts: pd.DatetimeIndex, x: np.ndarray) -> pd.DataFrame:
    df = pd.DataFrame(x.astype(np.float32), columns=dense_feature_names())
    df.insert(0, "video_id", video_id)
    df.insert(1, "event_timestamp", ts)
    df.insert(2, "created", ts + pd.Timedelta(minutes=5))
    return df


def dense_feature_names(n: int = N_DENSE) -> list[str]:
    return [f"dense_{i:02d}" for i in range(n)]


@dataclass(frozen=True)
class ScenarioSpecV2:
    """How one v2 scenario is drawn (docs/generator_v2.md)."""

    name: str
    label_names: tuple[str, ...]
    priors: tuple[float, ...]
    label_noise: float
    frame_signal: float
    title_signal: float
    analyzer_signal: float
    engagement_signal: float
    missing: float  # share of videos without a feature row
    stale: float  # share of videos whose feature row is another video's
    misread_scenes: int  # of 16 background scenes: the analyzer misreads videos showing them


SCENARIOS_V2: tuple[ScenarioSpecV2, ...] = (
    ScenarioSpecV2(
        "content_quality", ("low", "medium", "high"), (0.30, 0.45, 0.25), 0.08, 0.45, 0.15, 3.0, 0.5, 0.10, 0.05, 2
    ),
    ScenarioSpecV2("clickbait", ("ok", "clickbait"), (0.75, 0.25), 0.12, 0.40, 0.18, 3.0, 0.6, 0.05, 0.20, 0),
    ScenarioSpecV2("minor_safety", ("safe", "unsafe"), (0.85, 0.15), 0.0, 0.45, 0.12, 3.0, 0.3, 0.25, 0.05, 1),
    ScenarioSpecV2(
        "originality",
        ("original", "reupload", "compilation", "ai_generated"),
        (0.4, 0.3, 0.2, 0.1),
        0.05,
        0.45,
        0.15,
        3.0,
        0.4,
        0.10,
        0.10,
        4,
    ),
    ScenarioSpecV2("ad_content", ("organic", "advertising"), (0.70, 0.30), 0.15, 0.40, 0.15, 3.0, 0.5, 0.30, 0.10, 2),
)
N_ENGAGEMENT_V2 = 4
SLICES = ("clean", "missing", "stale", "misleading")


def _log_softmax(a: np.ndarray) -> np.ndarray:
    a = a - a.max(axis=1, keepdims=True)
    return a - np.log(np.exp(a).sum(axis=1, keepdims=True))


def generate_scenario_v2(
    s: ScenarioSpecV2,
    n_videos: int,
    rng: np.random.Generator,
    id_offset: int,
    frames: int,
    image_size: int,
    vocab: list[str],
    feature_scale: np.ndarray,
    feature_offset: np.ndarray,
) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame, pd.DataFrame]:
    """(videos, frames [N, T, H, W, 3], feature rows, oracle) of one v2 scenario."""
    k = len(s.label_names)
    priors = np.asarray(s.priors) / sum(s.priors)
    z = rng.choice(k, size=n_videos, p=priors)
    seen = _draw_content(rng, z, k, s.label_noise, s.frame_signal, s.title_signal, frames, image_size, vocab)
    label, shown, scene, frame_array = seen.labels, seen.shown, seen.scene, seen.frames
    titles, title_cues = seen.titles, seen.title_cues
    word_loglik = np.zeros((n_videos, k))  # log p(title word classes | z)
    p_cue = np.full((k, k), 0.5 * s.title_signal / k) + np.eye(k) * s.title_signal  # [z, c]
    p_neutral = 1 - 1.5 * s.title_signal
    for i, classes in enumerate(seen.word_classes):
        for c in classes:
            word_loglik[i] += np.log(p_cue[:, c]) if c >= 0 else np.log(p_neutral)

    # Bayes posterior over z from the content: frames show z's template w.p. fs, else a uniform class
    p_frame = np.full((k, k), (1 - s.frame_signal) / k) + np.eye(k) * s.frame_signal  # [z, shown]
    frame_loglik = np.log(p_frame[:, shown]).sum(axis=2).T  # [N, k]
    log_post_content = np.log(priors)[None] + frame_loglik + word_loglik

    seconds = np.sort(rng.uniform(0, SPAN_DAYS * 86400, n_videos))
    ts = pd.to_datetime(START) + pd.to_timedelta(np.floor(seconds * 1e6).astype("int64"), unit="us")
    video_id = np.arange(id_offset, id_offset + n_videos, dtype=np.int64)

    # slices, independent of the class
    misread = rng.choice(N_SCENES, size=s.misread_scenes, replace=False)
    u = rng.random(n_videos)
    slice_ = np.full(n_videos, "clean", dtype=object)
    slice_[u < s.missing] = "missing"
    slice_[(u >= s.missing) & (u < s.missing + s.stale)] = "stale"
    slice_[(slice_ == "clean") & np.isin(scene, misread)] = "misleading"

    frame_cues = np.eye(k)[shown].mean(axis=1)
    content = np.concatenate([frame_cues, 3 * title_cues], axis=1)
    misread_content = np.concatenate([np.roll(frame_cues, 1, axis=1), 3 * np.roll(title_cues, 1, axis=1)], axis=1)
    reading = np.where((slice_ == "misleading")[:, None], misread_content, content)
    analyzer_map = rng.normal(0, 1, (2 * k, N_ANALYZER)) / np.sqrt(2 * k) * 2
    pattern = rng.choice([-1.0, 1.0], size=(k, N_ENGAGEMENT_V2))
    x = rng.normal(0, 1, (n_videos, N_DENSE))
    x[:, :N_ANALYZER] += s.analyzer_signal * (reading - content.mean(0)) @ analyzer_map
    engagement = x[:, N_ANALYZER : N_ANALYZER + N_ENGAGEMENT_V2]
    engagement += s.engagement_signal * pattern[z]
    # engagement likelihood, before the stale copy and missing cells: the oracle teacher's extra evidence
    eng_loglik = -0.5 * ((engagement[:, None, :] - s.engagement_signal * pattern[None]) ** 2).sum(-1)
    stale = np.flatnonzero(slice_ == "stale")
    donors = (stale + rng.integers(1, n_videos, size=len(stale))) % n_videos
    x[stale] = x[donors]
    x[rng.random(x.shape) < 0.02] = np.nan
    dense = feature_offset + feature_scale * x

    genuine = np.isin(slice_, ["clean", "misleading"])
    log_post_priv = log_post_content + np.where(genuine[:, None], eng_loglik, 0.0)
    has_row = slice_ != "missing"
    before = ts - pd.to_timedelta(rng.uniform(3600, 2 * 86400, n_videos), unit="s").floor("us")
    rows = [_feature_frame(video_id[has_row], before[has_row], dense[has_row])]
    leak = rng.random(n_videos) < 0.5
    after = ts + pd.to_timedelta(rng.uniform(3600, 5 * 86400, n_videos), unit="s").floor("us")
    leak_x = rng.normal(0, 1, (int(leak.sum()), N_DENSE))
    leak_x[:, N_ANALYZER : N_ANALYZER + N_ENGAGEMENT_V2] += 4.0 * pattern[label[leak]]
    rows.append(_feature_frame(video_id[leak], after[leak], feature_offset + feature_scale * leak_x))

    videos = pd.DataFrame(
        {
            "video_id": video_id,
            "scenario": s.name,
            "event_timestamp": ts,
            "label": label.astype(np.int64),
            "title": titles,
            "true_label": z.astype(np.int64),
        }
    )
    oracle = pd.DataFrame(
        {
            "video_id": video_id,
            "scenario": s.name,
            "true_label": z.astype(np.int64),
            "feature_slice": slice_.astype(str),
            "bayes_content": _log_softmax(log_post_content).argmax(1).astype(np.int64),
            "bayes_privileged": _log_softmax(log_post_priv).argmax(1).astype(np.int64),
        }
    )
    return videos, frame_array, pd.concat(rows, ignore_index=True), oracle


def generate(
    out_dir: str | Path,
    videos_per_scenario: int = 3000,
    seed: int = 0,
    frames: int = 4,
    image_size: int = 16,
    scenarios: list[str] | None = None,
    version: int = 2,
) -> dict[str, Path]:
    """Write videos.parquet, frames/<scenario>.npy, features.parquet and scenarios.yaml (v2: oracle.parquet too)."""
    if version not in (1, 2):
        raise ValueError(f"generator version must be 1 or 2, not {version}")
    out = Path(out_dir)
    (out / "frames").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    known = SCENARIOS if version == 1 else SCENARIOS_V2
    unknown = sorted(set(scenarios or []) - {k.name for k in known})
    if unknown:
        raise DataContractError(f"unknown synthetic scenario(s) {unknown}; known: {[k.name for k in known]}")
    by_name = {k.name: k for k in known}
    chosen: list = [by_name[n] for n in scenarios] if scenarios else list(known)
    feature_scale = np.exp(rng.uniform(-1, 3, N_DENSE))
    feature_offset = rng.uniform(0, 100, N_DENSE) * (rng.random(N_DENSE) < 0.5)
    videos, features, oracles = [], [], []
    for i, s in enumerate(chosen):
        vocab = _pseudo_words(rng, 12 * len(s.label_names) + 150)
        k = len(s.label_names)
        if version == 1:
            pattern = rng.choice([-1.0, 1.0], size=(k, N_ENGAGEMENT))
            analyzer_map = rng.normal(0, 1, (2 * k, N_ANALYZER)) / np.sqrt(2 * k) * 2
            v, f_arr, feats = generate_scenario(
                s,
                videos_per_scenario,
                rng,
                (i + 1) * 10_000_000,
                frames,
                image_size,
                vocab,
                pattern,
                analyzer_map,
                feature_scale,
                feature_offset,
            )
        else:
            v, f_arr, feats, oracle = generate_scenario_v2(
                s,
                videos_per_scenario,
                rng,
                (i + 1) * 10_000_000,
                frames,
                image_size,
                vocab,
                feature_scale,
                feature_offset,
            )
            oracles.append(oracle)
        frame_file = out / "frames" / f"{s.name}.npy"
        np.save(frame_file, f_arr)
        v["frames"] = [f"frames/{s.name}.npy#{j}" for j in range(len(v))]
        videos.append(v)
        features.append(feats)
    paths = {"videos": out / "videos.parquet", "features": out / "features.parquet", "config": out / "scenarios.yaml"}
    if oracles:
        paths["oracle"] = out / "oracle.parquet"
        pd.concat(oracles, ignore_index=True).to_parquet(paths["oracle"], index=False)
    pd.concat(videos, ignore_index=True).to_parquet(paths["videos"], index=False)
    pd.concat(features, ignore_index=True).sort_values(["video_id", "event_timestamp"]).to_parquet(
        paths["features"], index=False
    )
    config = read_yaml("config file", default_config_path())
    config["scenarios"] = [c for c in config["scenarios"] if c["name"] in {s.name for s in chosen}]
    paths["config"].write_text(yaml.safe_dump(config, sort_keys=False))
    return paths
