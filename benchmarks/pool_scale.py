"""Training memory against the size of the unlabelled pool (``cpfd bench scale --pool``).

Design (written before the first run). The mechanism under test: the pool is read only from its shards (one
``StreamedSplit``, 16 bytes a row in memory plus its teacher logits), so a student that distils from a pool 16x the
labelled set should hold about what it holds without one. Data: the scale benchmark's videos (4 frames x 32 x 32 RGB,
12 KiB a video, 32 dense features, one scenario), ``labelled`` labelled videos and pools of 0, 4, 16 and 100 times as
many
(nested: the same labelled splits every time). Per pool size, in a fresh process, on the streamed path: a teacher
trained for one epoch, its in-sample outputs and its scores of the whole pool, and a student distilled for one epoch
with the default ``distill.pool_ratio`` (null: the whole pool), so the epoch reads every pool video once (the worst
case for memory). Measured: the process's peak RSS (VmHWM), the peak PSS of its process tree, the student's
examples/s and the wall time. Goal (issue 26): peak RSS with the 16x pool within 1.25x of the run without a pool
(100x: the users' scale).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from cpfd.benchmarks.scale import _measured, _vm_hwm_mb, make_videos

MULTIPLES = (0, 4, 16, 100)


def make_pool_videos(folder: Path, labelled: int, seed: int = 0) -> None:
    """The scale benchmark's videos, ``labelled * (1 + max(MULTIPLES))`` of them, and one videos table per pool size
    (``videos_pool{k}x.parquet``: every labelled video and the first ``k * labelled`` of a random pool order)."""
    import pandas as pd

    make_videos(folder, labelled * (1 + max(MULTIPLES)), seed)
    videos = pd.read_parquet(folder / "videos.parquet")
    rank = np.full(len(videos), -1)
    n_pool = labelled * max(MULTIPLES)
    rank[np.random.default_rng(seed + 1).permutation(len(videos))[:n_pool]] = np.arange(n_pool)
    videos["label"] = videos["label"].astype("Int64").mask(rank >= 0)
    for k in MULTIPLES:
        videos[(rank < 0) | (rank < k * labelled)].to_parquet(folder / f"videos_pool{k}x.parquet", index=False)


def _project(folder: Path, multiple: int):
    from cpfd.config import load_config

    overrides = [
        "model.size=tiny",
        "train.epochs=1",
        "train.patience=1",
        "train.data=stream",
        "distill.teacher_outputs=insample",
        f"distill.pool_weight={1.0 if multiple else 0.0}",
    ]
    return load_config(folder / "scenarios.yaml", overrides)


def build_step(folder: Path, multiple: int, work: Path) -> None:
    """The dataset of this pool size (its own process: the build's memory is not training's)."""
    from cpfd.data.build import build_scenario_dataset

    t0 = time.perf_counter()
    project = _project(folder, multiple)
    build_scenario_dataset(folder / f"videos_pool{multiple}x.parquet", folder, "scale", project, work / "dataset")
    print(json.dumps({"seconds": time.perf_counter() - t0, "peak_rss_mb": _vm_hwm_mb()}))


def train_step(folder: Path, multiple: int, work: Path) -> None:
    """Teacher (one epoch), its outputs on the pool, a student distilled for one epoch over the whole pool."""
    from cpfd.data.tensors import prepare_data
    from cpfd.models import load_model
    from cpfd.training.recipes import compute_teacher_outputs, distill_student, train_classifier

    project = _project(folder, multiple)
    data = prepare_data(work / "dataset", project.model, project.train)
    train_classifier(data, "teacher", project, work / "teacher", progress=False, resume=False)
    outputs = compute_teacher_outputs(data, project, load_model(work / "teacher"), work / "outputs", progress=False)
    t0 = time.perf_counter()
    info = distill_student(data, outputs, project, work / "student", progress=False, resume=False)
    print(
        json.dumps(
            {
                "pool_rows": info["pool"]["rows"],
                "epoch_rows": len(data.splits["train"]) + info["pool"]["per_epoch"],
                "examples_per_s": info["train_examples_per_s"],
                "student_seconds": time.perf_counter() - t0,
                "peak_rss_mb": _vm_hwm_mb(),
            }
        )
    )


def run_pool_scale(labelled: int, work: Path, log=print) -> dict:
    """One row per pool size, each measured in a fresh process (module docstring)."""
    folder = work / f"videos_{labelled}"
    if not (folder / f"videos_pool{max(MULTIPLES)}x.parquet").exists():
        log(f"generating {labelled:,} labelled videos and a pool of {labelled * max(MULTIPLES):,}")
        make_pool_videos(folder, labelled)
    rows = []
    for k in MULTIPLES:
        args = [str(folder), str(k), str(work / f"pool{k}x")]
        build, _, _ = _measured([sys.executable, "-m", "cpfd.benchmarks.pool_scale", "build", *args])
        res, wall, pss = _measured([sys.executable, "-m", "cpfd.benchmarks.pool_scale", "train", *args])
        log(
            f"[pool {k}x] {res['pool_rows']:,} pool videos, {res['examples_per_s']:.0f} examples/s, "
            f"peak RSS {res['peak_rss_mb']:.0f} MB, tree PSS {pss:.0f} MB, {wall:.0f} s"
        )
        rows.append(
            {
                "multiple": k,
                **res,
                "peak_tree_pss_mb": round(pss),
                "wall_seconds": round(wall, 1),
                "build_seconds": round(build["seconds"], 1),
                "build_peak_rss_mb": round(build["peak_rss_mb"]),
            }
        )
    return {
        "design": __doc__.split("Design (written before the first run). ")[1].split("\nGoal")[0].replace("\n", " "),
        "machine": {"cpus": len(os.sched_getaffinity(0)), "load_at_end": os.getloadavg()[0]},
        "labelled": labelled,
        "rows": rows,
        "rss_growth": {f"{r['multiple']}x": round(r["peak_rss_mb"] / rows[0]["peak_rss_mb"], 3) for r in rows[1:]},
    }


def to_markdown(result: dict) -> str:
    lines = [
        "| pool (x labelled) | pool videos | build (s) | build peak RSS (MB) | rows an epoch | student examples/s "
        "| training peak RSS (MB) | tree PSS (MB) | training wall (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['multiple']}x | {r['pool_rows']:,} | {r['build_seconds']} | {r['build_peak_rss_mb']} | "
            f"{r['epoch_rows']:,} | {r['examples_per_s']:.0f} | "
            f"{r['peak_rss_mb']:.0f} | {r['peak_tree_pss_mb']} | {r['wall_seconds']} |"
        )
    lines.append("")
    growth = ", ".join(f"{k} pool **{v}×**" for k, v in result["rss_growth"].items())
    lines.append(
        f"Training peak RSS against no pool ({result['labelled']:,} labelled videos): {growth} (goal ≤ 1.25×)."
    )
    return "\n".join(lines)


if __name__ == "__main__":
    from cpfd.env import set_env_defaults

    set_env_defaults()
    step, folder, multiple, work = sys.argv[1:]
    (build_step if step == "build" else train_step)(Path(folder), int(multiple), Path(work))
