"""How training's memory and speed grow with the number of videos: streamed shards against in-memory tensors.

Design (written before the first run). The mechanism under test is that a streamed run holds a bounded number of
batches whatever N is, while the in-memory path holds every frame. So the data is what makes frames dominate:
synthetic videos of 4 frames × 32 × 32 RGB (12 KiB a video), titles of 6–12 words, 32 dense features, one
scenario, N = 10k, 50k, 200k (the demo has 1,500 a scenario). For each N, in fresh processes:
- the dataset build (pandas join, time splits, shards): wall time and peak RSS;
- at the smallest N, the shard formats read once (``benchmarks/stream_formats.py``);
- a student trained for one epoch (tiny model, batch 64, the project's defaults otherwise) through the streamed
  path and through the in-memory path (at the smallest N also with 1 and 2 loader workers besides the default,
  each configuration 3 times, interleaved, the median rate kept):
  peak RSS of the training process (its VmHWM), peak PSS of its process tree (the loader's workers included,
  sampled every 0.2 s), training examples/s (the loop's own timer, validation excluded).
Goals (issue 18): streamed peak RSS at 200k within 1.25× of 10k; streamed examples/s ≥ 0.9× in-memory at 10k.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

FRAMES, SIZE, FEATURES = 4, 32, 32
WORDS = [f"w{i:03d}" for i in range(400)]


def make_videos(folder: Path, n: int, seed: int = 0, chunk: int = 10_000) -> None:
    """``videos.parquet``, ``frames.npy`` (stacked, written chunk by chunk), ``features.parquet`` and
    ``scenarios.yaml`` of ``n`` synthetic videos of one two-class scenario ``scale``."""
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    frames = np.lib.format.open_memmap(folder / "frames.npy", "w+", np.uint8, (n, FRAMES, SIZE, SIZE, 3))
    for start in range(0, n, chunk):
        y = labels[start : start + chunk]
        base = 100 + 40 * y[:, None, None, None, None]
        noise = rng.normal(0, 50, (len(y), FRAMES, SIZE, SIZE, 3))
        frames[start : start + chunk] = np.clip(base + noise, 0, 255).astype(np.uint8)
    frames.flush()
    del frames
    ts = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(np.sort(rng.integers(0, 90 * 86400, n)), unit="s")
    cue = np.where(labels == 1, "great", "plain")
    titles = [" ".join([*rng.choice(WORDS, rng.integers(5, 12)), c]) for c in cue]
    pd.DataFrame(
        {
            "video_id": np.arange(n, dtype=np.int64),
            "scenario": "scale",
            "event_timestamp": ts,
            "label": labels,
            "title": titles,
            "frames": [f"frames.npy#{i}" for i in range(n)],
        }
    ).to_parquet(folder / "videos.parquet", index=False)
    dense = rng.normal(0, 1, (n, FEATURES)).astype(np.float32) + labels[:, None]
    features = pd.DataFrame(dense, columns=[f"dense_{i:02d}" for i in range(FEATURES)])
    features.insert(0, "created", ts - pd.Timedelta(hours=1))
    features.insert(0, "event_timestamp", ts - pd.Timedelta(hours=1))
    features.insert(0, "video_id", np.arange(n, dtype=np.int64))
    features.to_parquet(folder / "features.parquet", index=False)
    (folder / "scenarios.yaml").write_text(
        "scenarios:\n  - name: scale\n    label_names: [plain, great]\n    feature_service: teacher_dense_v1\n"
    )


def _vm_hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _tree_pss_mb(pid: int) -> float:
    """PSS of ``pid`` and its descendants (shared pages counted once across them)."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
            for t in Path(f"/proc/{p}/task").iterdir():
                stack += [int(c) for c in (t / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total / 1024


def _measured(cmd: list[str]) -> tuple[dict, float, float]:
    """Run ``cmd`` (which prints one JSON line last); its result, wall seconds and peak tree PSS in MB."""
    t0, peak = time.perf_counter(), 0.0
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while proc.poll() is None:
        peak = max(peak, _tree_pss_mb(proc.pid))
        time.sleep(0.2)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[3:])} failed ({proc.returncode}): {err[-2000:]}")
    return json.loads(out.strip().splitlines()[-1]), time.perf_counter() - t0, peak


def build_step(folder: Path, dataset: Path) -> None:
    from cpfd.config import load_config
    from cpfd.data.build import build_scenario_dataset

    project = load_config(folder / "scenarios.yaml")
    t0 = time.perf_counter()
    build_scenario_dataset(folder / "videos.parquet", folder, "scale", project, dataset)
    print(json.dumps({"seconds": time.perf_counter() - t0, "peak_rss_mb": _vm_hwm_mb()}))


def train_step(dataset: Path, mode: str, out: Path, config: Path, workers: str) -> None:
    from cpfd.config import TrainConfig, load_config
    from cpfd.data.tensors import prepare_data
    from cpfd.training.recipes import train_classifier

    project = load_config(config)
    loader = {} if workers == "default" else {"loader_workers": int(workers)}
    cfg = TrainConfig(**{**project.train.model_dump(), "epochs": 1, "patience": 1, "data": mode, **loader})
    t0 = time.perf_counter()
    data = prepare_data(dataset, project.model, cfg)
    prepared = time.perf_counter() - t0
    info = train_classifier(data, "student", project, out, progress=False, resume=False, train_cfg=cfg)
    print(
        json.dumps(
            {
                "examples_per_s": info["train_examples_per_s"],
                "prepare_seconds": prepared,
                "peak_rss_mb": _vm_hwm_mb(),
                "val_macro_f1": info["best_val_macro_f1"],
            }
        )
    )


def _python(*args: str) -> list[str]:
    return [sys.executable, "-m", "cpfd.benchmarks.scale", *args]


def run_scale(
    sizes: list[int], work: Path, in_memory_max: int, grid: tuple[int, ...] = (1, 2), repeats: int = 3, log=print
) -> dict:
    """One row per size: build, streamed and in-memory training, measured in fresh processes (module docstring)."""
    rows = []
    for n in sizes:
        folder, dataset = work / f"videos_{n}", work / f"dataset_{n}"
        if not (folder / "scenarios.yaml").exists():
            log(f"[{n}] generating {n:,} videos")
            make_videos(folder, n)
        build, _, _ = _measured(_python("build", str(folder), str(dataset)))
        log(f"[{n}] build {build['seconds']:.1f} s, peak RSS {build['peak_rss_mb']:.0f} MB")
        row: dict = {"videos": n, "build_seconds": round(build["seconds"], 1)}
        row["build_peak_rss_mb"] = round(build["peak_rss_mb"])
        if n == sizes[0]:
            formats, _, _ = _measured(_python("formats", str(dataset / "stream" / "train"), str(work / "wds")))
            log(f"[{n}] shard formats: {formats}")
            row["formats"] = formats
        # the smallest size also compares loader worker counts, every configuration `repeats` times, interleaved
        runs = [("stream", "default")]
        if n <= in_memory_max:
            runs = [("memory", "default"), *runs]
            if n == sizes[0]:
                runs = [*runs, *(("stream", str(w)) for w in grid)] * repeats
        measured: dict[str, list[dict]] = {}
        for mode, workers in runs:
            model, config = work / f"model_{n}_{mode}_{workers}", folder / "scenarios.yaml"
            res, wall, pss = _measured(_python("train", str(dataset), mode, str(model), str(config), workers))
            label = mode if workers == "default" else f"stream_workers_{workers}"
            log(
                f"[{n}] {label}: {res['examples_per_s']:.0f} examples/s, peak RSS {res['peak_rss_mb']:.0f} MB, "
                f"tree PSS {pss:.0f} MB, {wall:.0f} s"
            )
            measured.setdefault(label, []).append({**res, "peak_tree_pss_mb": pss, "wall_seconds": wall})
        for label, runs_of in measured.items():  # the median rate; the largest peaks
            row[label] = {
                "examples_per_s": round(float(np.median([r["examples_per_s"] for r in runs_of])), 1),
                "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs_of)),
                "peak_tree_pss_mb": round(max(r["peak_tree_pss_mb"] for r in runs_of)),
                "prepare_seconds": round(float(np.median([r["prepare_seconds"] for r in runs_of])), 1),
                "wall_seconds": round(float(np.median([r["wall_seconds"] for r in runs_of])), 1),
                "runs": len(runs_of),
            }
        rows.append(row)
    first, last = rows[0], rows[-1]
    result = {
        "design": __doc__.split("Design (written before the first run). ")[1].split("\nGoals")[0].replace("\n", " "),
        "machine": {"cpus": len(os.sched_getaffinity(0)), "load_at_end": os.getloadavg()[0]},
        "rows": rows,
        "rss_growth": round(last["stream"]["peak_rss_mb"] / first["stream"]["peak_rss_mb"], 3),
        "tree_pss_growth": round(last["stream"]["peak_tree_pss_mb"] / first["stream"]["peak_tree_pss_mb"], 3),
        "throughput_ratio": round(first["stream"]["examples_per_s"] / first["memory"]["examples_per_s"], 3)
        if "memory" in first
        else None,
    }
    return result


def to_markdown(result: dict) -> str:
    lines = [
        "| videos | build (s) | build peak RSS (MB) | streamed: examples/s | streamed: peak RSS (MB) "
        "| streamed: tree PSS (MB) | in-memory: examples/s | in-memory: peak RSS (MB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        s, m = r["stream"], r.get("memory", {})
        lines.append(
            f"| {r['videos']:,} | {r['build_seconds']} | {r['build_peak_rss_mb']} | {s['examples_per_s']:.0f} | "
            f"{s['peak_rss_mb']} | {s['peak_tree_pss_mb']} | {m.get('examples_per_s', '–')} | "
            f"{m.get('peak_rss_mb', '–')} |"
        )
    first = result["rows"][0]
    grid = {k: v["examples_per_s"] for k, v in first.items() if k.startswith("stream_workers_")}
    lines.append("")
    if "formats" in first:
        f = first["formats"]
        lines.append(
            f"Reading the {f['rows']:,} training rows once (batches of 64, one process): "
            + ", ".join(
                f"{k} {v['examples_per_s']:,} examples/s (+{v['rss_growth_mb']} MB resident)"
                for k, v in f.items()
                if k != "rows"
            )
            + "."
        )
    if grid:
        runs = ", ".join(f"{k.rsplit('_', 1)[1]} workers {v:.0f}" for k, v in grid.items())
        lines.append(f"Streamed examples/s at {result['rows'][0]['videos']:,} videos by loader workers: {runs}.")
    lines.append(
        f"Streamed peak RSS growth, largest vs smallest N: **{result['rss_growth']}×** (goal ≤ 1.25×; tree PSS "
        f"{result['tree_pss_growth']}×); streamed / in-memory examples/s at the smallest N: "
        f"**{result['throughput_ratio']}** (goal ≥ 0.9)."
    )
    return "\n".join(lines)


if __name__ == "__main__":
    from cpfd.env import set_env_defaults

    set_env_defaults()
    step, *args = sys.argv[1:]
    if step == "build":
        build_step(Path(args[0]), Path(args[1]))
    elif step == "formats":
        from cpfd.benchmarks.stream_formats import compare_formats

        print(json.dumps(compare_formats(Path(args[0]), Path(args[1]))))
    else:
        train_step(Path(args[0]), args[1], Path(args[2]), Path(args[3]), args[4])
