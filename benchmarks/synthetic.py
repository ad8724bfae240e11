"""Synthetic short videos: the embedded default data, written in the data contract (design: docs/generator_v2.md).

Each video has a latent true class ``z``; its frames and title carry cues of ``z`` (what the student sees), its
privileged dense features an analyzer's reading of the content and engagement statistics shifted by ``z`` (what only
the teacher sees), and its annotated ``label`` is ``z`` with label noise. Every video falls in one slice where the
features are clean, missing, stale (another video's row) or misleading (a misread scene); ``oracle.parquet`` keeps the
true label, the slice and two Bayes references. The first generator (v1, no slices) lives in git history only.

The five default scenarios are the embedded default's; three more (``BENCH_SCENARIOS``) exist for the benchmarks,
each built from one mechanism: a teacher edge a neural student can learn (an interaction of two title words), an
edge no student can learn (engagement only), and a teacher whose reliability varies across sub-populations it can
see (where confidence weighting should help).
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
START = datetime(2026, 1, 1, tzinfo=UTC)
SPAN_DAYS = 90
N_SCENES = 16  # background scene templates
SYLLABLES = ["ka", "lo", "mi", "ru", "te", "sa", "no", "vi", "pe", "zu", "da", "fo", "gi", "ha", "je", "wu"]


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


def _feature_frame(video_id: np.ndarray, ts: pd.DatetimeIndex, x: np.ndarray) -> pd.DataFrame:
    df = pd.DataFrame(x.astype(np.float32), columns=dense_feature_names())
    df.insert(0, "video_id", video_id)
    df.insert(1, "event_timestamp", ts)
    df.insert(2, "created", ts + pd.Timedelta(minutes=5))
    return df


def dense_feature_names(n: int = N_DENSE) -> list[str]:
    return [f"dense_{i:02d}" for i in range(n)]


@dataclass(frozen=True)
class ScenarioSpec:
    """How one synthetic scenario is drawn (docs/generator_v2.md)."""

    name: str
    label_names: tuple[str, ...]
    priors: tuple[float, ...]
    label_noise: float  # P(label != true class)
    frame_signal: float  # P(a frame shows the true class's template)
    title_signal: float  # P(a title word cues the true class)
    analyzer_signal: float  # scale of the analyzer's content reading, in noise standard deviations
    engagement_signal: float  # class shift of the engagement columns, in noise standard deviations
    missing: float  # share of videos without a feature row
    stale: float  # share of videos whose feature row is another video's
    misread_scenes: int  # of 16 background scenes: the analyzer misreads videos showing them
    parity_title: bool = False  # the class is the parity of two title marker words (two classes only)
    label_noise_missing: float | None = None  # label noise of the videos without a feature row (None: label_noise)
    description: str = ""


SCENARIOS: tuple[ScenarioSpec, ...] = (
    ScenarioSpec(
        "content_quality",
        ("low", "medium", "high"),
        (0.30, 0.45, 0.25),
        label_noise=0.08,
        frame_signal=0.45,
        title_signal=0.15,
        analyzer_signal=3.0,
        engagement_signal=0.5,
        missing=0.10,
        stale=0.05,
        misread_scenes=2,
    ),
    ScenarioSpec(
        "clickbait",
        ("ok", "clickbait"),
        (0.75, 0.25),
        label_noise=0.12,
        frame_signal=0.40,
        title_signal=0.18,
        analyzer_signal=3.0,
        engagement_signal=0.6,
        missing=0.05,
        stale=0.20,
        misread_scenes=0,
    ),
    ScenarioSpec(
        "minor_safety",
        ("safe", "unsafe"),
        (0.85, 0.15),
        label_noise=0.0,
        frame_signal=0.45,
        title_signal=0.12,
        analyzer_signal=3.0,
        engagement_signal=0.3,
        missing=0.25,
        stale=0.05,
        misread_scenes=1,
    ),
    ScenarioSpec(
        "originality",
        ("original", "reupload", "compilation", "ai_generated"),
        (0.4, 0.3, 0.2, 0.1),
        label_noise=0.05,
        frame_signal=0.45,
        title_signal=0.15,
        analyzer_signal=3.0,
        engagement_signal=0.4,
        missing=0.10,
        stale=0.10,
        misread_scenes=4,
    ),
    ScenarioSpec(
        "ad_content",
        ("organic", "advertising"),
        (0.70, 0.30),
        label_noise=0.15,
        frame_signal=0.40,
        title_signal=0.15,
        analyzer_signal=3.0,
        engagement_signal=0.5,
        missing=0.30,
        stale=0.10,
        misread_scenes=2,
    ),
)
BENCH_SCENARIOS: tuple[ScenarioSpec, ...] = (
    ScenarioSpec(
        "title_interaction",
        ("no", "yes"),
        (0.5, 0.5),
        label_noise=0.15,
        frame_signal=0.30,
        title_signal=0.0,
        analyzer_signal=3.0,
        engagement_signal=0.0,
        missing=0.05,
        stale=0.0,
        misread_scenes=0,
        parity_title=True,
        description="The class is the parity of two title marker words; the analyzer reads it: learnable edge.",
    ),
    ScenarioSpec(
        "engagement_only",
        ("no", "yes"),
        (0.6, 0.4),
        label_noise=0.10,
        frame_signal=0.40,
        title_signal=0.15,
        analyzer_signal=0.0,
        engagement_signal=1.0,
        missing=0.05,
        stale=0.0,
        misread_scenes=0,
        description="The teacher's edge is engagement only, which the content does not carry: unlearnable edge.",
    ),
    ScenarioSpec(
        "mixed_reliability",
        ("low", "medium", "high"),
        (0.35, 0.40, 0.25),
        label_noise=0.30,
        frame_signal=0.40,
        title_signal=0.15,
        analyzer_signal=3.0,
        engagement_signal=0.8,
        missing=0.35,
        stale=0.0,
        misread_scenes=0,
        label_noise_missing=0.0,
        description="Crowd labels (30 % noise) where features exist, expert labels where they are missing: the "
        "teacher is strong and sure on the first, weak and unsure on the second.",
    ),
)
N_ENGAGEMENT = 4
SLICES = ("clean", "missing", "stale", "misleading")


def _log_softmax(a: np.ndarray) -> np.ndarray:
    a = a - a.max(axis=1, keepdims=True)
    return a - np.log(np.exp(a).sum(axis=1, keepdims=True))


def _add_parity_markers(
    rng: np.random.Generator, z: np.ndarray, titles: list[str], markers: list[str]
) -> tuple[list[str], np.ndarray]:
    """Two marker words per title, from families A_a and B_b with a uniform and b = a XOR z: neither word alone says
    anything about z, the pair decides it. Returns the titles and the parity each pair shows."""
    a = rng.integers(0, 2, len(z))
    b = a ^ z
    out = []
    for i, title in enumerate(titles):
        words = title.split()
        for family in (a[i], 2 + b[i]):
            words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(markers[4 * family : 4 * family + 4])))
        out.append(" ".join(words))
    return out, a ^ b


def _content_log_posterior(s: ScenarioSpec, seen: _Content, z: np.ndarray, priors: np.ndarray) -> np.ndarray:
    """log p(z | frames, title) [N, K] up to a constant, from the generator's own probabilities (the Bayes
    content-only reference)."""
    k = len(priors)
    word_loglik = np.zeros((len(z), k))  # log p(title word classes | z)
    p_cue = np.full((k, k), 0.5 * s.title_signal / k) + np.eye(k) * s.title_signal  # [z, c]
    p_neutral = 1 - 1.5 * s.title_signal
    for i, classes in enumerate(seen.word_classes):
        for c in classes:
            word_loglik[i] += np.log(p_cue[:, c]) if c >= 0 else np.log(p_neutral)
    # frames show z's template w.p. frame_signal, else a uniform class
    p_frame = np.full((k, k), (1 - s.frame_signal) / k) + np.eye(k) * s.frame_signal  # [z, shown]
    frame_loglik = np.log(p_frame[:, seen.shown]).sum(axis=2).T  # [N, k]
    log_post = np.log(priors)[None] + frame_loglik + word_loglik
    if s.parity_title:  # the marker pair gives z exactly
        log_post = log_post + np.where(np.eye(k)[z] > 0, 0.0, -1e9)
    return log_post


def _distinct_rows(pattern: np.ndarray) -> np.ndarray:
    """Class engagement patterns with no two classes alike (a repeated row is negated: two classes whose patterns
    coincide would get no engagement signal at all, against the design)."""
    for i in range(1, len(pattern)):
        if any(np.array_equal(pattern[i], pattern[j]) for j in range(i)):
            pattern[i] = -pattern[i]
    return pattern


def _draw_slices(rng: np.random.Generator, s: ScenarioSpec, scene: np.ndarray) -> np.ndarray:
    """Each video's feature slice, independent of its class: missing, stale, misleading (a misread scene), clean."""
    n = len(scene)
    misread = rng.choice(N_SCENES, size=s.misread_scenes, replace=False)
    u = rng.random(n)
    slice_ = np.full(n, "clean", dtype=object)
    slice_[u < s.missing] = "missing"
    slice_[(u >= s.missing) & (u < s.missing + s.stale)] = "stale"
    slice_[(slice_ == "clean") & np.isin(scene, misread)] = "misleading"
    return slice_


def generate_scenario(
    s: ScenarioSpec,
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
    words = vocab[:-16] if s.parity_title else vocab
    seen = _draw_content(rng, z, k, s.label_noise, s.frame_signal, s.title_signal, frames, image_size, words)
    label, shown, scene, frame_array = seen.labels, seen.shown, seen.scene, seen.frames
    titles, title_cues = seen.titles, seen.title_cues
    if s.parity_title:
        titles, parity = _add_parity_markers(rng, z, titles, vocab[-16:])
        title_cues = np.eye(k)[parity]  # what an analyzer reads of the title: the pair's parity
    log_post_content = _content_log_posterior(s, seen, z, priors)

    seconds = np.sort(rng.uniform(0, SPAN_DAYS * 86400, n_videos))
    ts = pd.to_datetime(START) + pd.to_timedelta(np.floor(seconds * 1e6).astype("int64"), unit="us")
    video_id = np.arange(id_offset, id_offset + n_videos, dtype=np.int64)

    slice_ = _draw_slices(rng, s, scene)
    if s.label_noise_missing is not None:  # rows without features are labelled by another process
        noisy = rng.random(n_videos) < s.label_noise_missing
        relabelled = np.where(noisy, (z + rng.integers(1, k, size=n_videos)) % k, z)
        label = np.where(slice_ == "missing", relabelled, label)

    frame_cues = np.eye(k)[shown].mean(axis=1)
    content = np.concatenate([frame_cues, 3 * title_cues], axis=1)
    misread_content = np.concatenate([np.roll(frame_cues, 1, axis=1), 3 * np.roll(title_cues, 1, axis=1)], axis=1)
    reading = np.where((slice_ == "misleading")[:, None], misread_content, content)
    analyzer_map = rng.normal(0, 1, (2 * k, N_ANALYZER)) / np.sqrt(2 * k) * 2
    pattern = _distinct_rows(rng.choice([-1.0, 1.0], size=(k, N_ENGAGEMENT)))
    x = rng.normal(0, 1, (n_videos, N_DENSE))
    x[:, :N_ANALYZER] += s.analyzer_signal * (reading - content.mean(0)) @ analyzer_map
    engagement = x[:, N_ANALYZER : N_ANALYZER + N_ENGAGEMENT]
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
    leak_x[:, N_ANALYZER : N_ANALYZER + N_ENGAGEMENT] += 4.0 * pattern[label[leak]]
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


def scenario_config(s: ScenarioSpec) -> dict:
    """A bench scenario's entry in scenarios.yaml (the default scenarios take theirs from the embedded config)."""
    return {
        "name": s.name,
        "description": s.description,
        "label_names": list(s.label_names),
        "feature_service": "teacher_dense_v1",
        "gate": {"min_gain_over_baseline": 0.0, "max_gap_to_teacher": 0.25},
    }


def generate(
    out_dir: str | Path,
    videos_per_scenario: int = 3000,
    seed: int = 0,
    frames: int = 4,
    image_size: int = 16,
    scenarios: list[str] | None = None,
    pool_multiple: int = 0,
) -> dict[str, Path]:
    """Write videos.parquet, frames/<scenario>.npy, features.parquet, oracle.parquet and scenarios.yaml.

    ``scenarios``: names from the defaults and ``BENCH_SCENARIOS`` (None: the five defaults). ``pool_multiple``:
    each scenario also gets ``pool_multiple * videos_per_scenario`` unlabelled videos (null label), drawn with the
    labelled ones from the same mechanism and marked at random (docs/pool_benchmark.md); ``oracle.parquet`` keeps
    their true class and ``pool_rank`` (the order in which nested smaller pools take them)."""
    out = Path(out_dir)
    (out / "frames").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    by_name = {k.name: k for k in (*SCENARIOS, *BENCH_SCENARIOS)}
    unknown = sorted(set(scenarios or []) - set(by_name))
    if unknown:
        raise DataContractError(f"unknown synthetic scenario(s) {unknown}; known: {list(by_name)}")
    chosen = [by_name[n] for n in scenarios] if scenarios else list(SCENARIOS)
    feature_scale = np.exp(rng.uniform(-1, 3, N_DENSE))
    feature_offset = rng.uniform(0, 100, N_DENSE) * (rng.random(N_DENSE) < 0.5)
    videos, features, oracles = [], [], []
    for i, s in enumerate(chosen):
        vocab = _pseudo_words(rng, 12 * len(s.label_names) + 150 + (16 if s.parity_title else 0))
        n_pool = pool_multiple * videos_per_scenario
        v, f_arr, feats, oracle = generate_scenario(
            s,
            videos_per_scenario + n_pool,
            rng,
            (i + 1) * 10_000_000,
            frames,
            image_size,
            vocab,
            feature_scale,
            feature_offset,
        )
        rank = np.full(len(v), -1, dtype=np.int64)
        rank[rng.permutation(len(v))[:n_pool]] = np.arange(n_pool)
        v["label"] = v["label"].astype("Int64").mask(rank >= 0)
        oracle["pool_rank"] = rank
        oracles.append(oracle)
        frame_file = out / "frames" / f"{s.name}.npy"
        np.save(frame_file, f_arr)
        v["frames"] = [f"frames/{s.name}.npy#{j}" for j in range(len(v))]
        videos.append(v)
        features.append(feats)
    paths = {
        "videos": out / "videos.parquet",
        "features": out / "features.parquet",
        "config": out / "scenarios.yaml",
        "oracle": out / "oracle.parquet",
    }
    pd.concat(oracles, ignore_index=True).to_parquet(paths["oracle"], index=False)
    pd.concat(videos, ignore_index=True).to_parquet(paths["videos"], index=False)
    pd.concat(features, ignore_index=True).sort_values(["video_id", "event_timestamp"]).to_parquet(
        paths["features"], index=False
    )
    config = read_yaml("config file", default_config_path())
    embedded = {c["name"]: c for c in config["scenarios"]}
    config["scenarios"] = [embedded.get(s.name) or scenario_config(s) for s in chosen]
    paths["config"].write_text(yaml.safe_dump(config, sort_keys=False))
    return paths
