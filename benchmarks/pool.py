"""The unlabelled-pool benchmark (``cpfd bench quality --pool``; design in docs/pool_benchmark.md).

Per scenario and seed the labelled splits are the same for every pool size (nested pools of one draw), so the
teacher, the baseline and the fold teachers are trained once (``cpfd.training.run.Stages`` keys them by the labelled
rows) and each arm differs only in the pool it distils from: none, 1x, 4x, 16x the labelled set with PFD or CPFD
weights, and the self-training control (the 16x pool labelled by the baseline student itself).
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from cpfd.benchmarks.stats import bootstrap_f1, percentile_interval, run_f1

MULTIPLES = (0, 1, 4, 16)
METHODS = ("pfd", "cpfd")


def arm(method: str, multiple: int) -> str:
    return f"{method}@{multiple}x"


def self_training(multiples: tuple[int, ...]) -> str:
    """The self-training control's arm: the largest pool, labelled by the baseline student."""
    return arm("self", max(multiples))


def arms(multiples: tuple[int, ...]) -> list[str]:
    return [arm(m, k) for k in multiples for m in METHODS] + [self_training(multiples)]


def pool_datasets(
    root: Path,
    n: int,
    seed: int,
    scenarios: list[str],
    project_for,
    folder: Path,
    log=print,
    multiples: tuple[int, ...] = MULTIPLES,
):
    """Generate one draw with the largest pool and build, per scenario, one dataset per pool size (nested pools)."""
    import pandas as pd

    from cpfd.benchmarks.synthetic import generate
    from cpfd.data.build import build_scenario_dataset

    src = root / f"pool-{n}x{max(multiples)}-seed{seed}-{'+'.join(scenarios)}"
    if not (src / "videos.parquet").exists():
        log(f"generating synthetic data with a {max(multiples)}x pool (seed {seed}) in {src}")
        generate(src, n, seed=seed, scenarios=scenarios, pool_multiple=max(multiples))
    videos = pd.read_parquet(src / "videos.parquet")
    rank = pd.read_parquet(src / "oracle.parquet", columns=["video_id", "pool_rank"]).set_index("video_id")
    videos_rank = rank.loc[videos["video_id"], "pool_rank"].to_numpy()
    project = project_for(src / "scenarios.yaml")
    built: dict[str, dict[int, Path]] = {s: {} for s in scenarios}
    for k in multiples:
        table = src / f"videos_pool{k}x.parquet"  # beside frames/: the references resolve against its folder
        if not table.exists():
            videos[(videos_rank < 0) | (videos_rank < k * n)].to_parquet(table, index=False)
        for s in scenarios:
            out = folder / f"seed{seed}" / s / f"pool{k}x"
            if not (out / "manifest.json").exists():
                build_scenario_dataset(table, src / "features.parquet", s, project, out)
            built[s][k] = out
    return built, project


def self_training_outputs(outputs, baseline, data):
    """``outputs`` with the pool's targets from the baseline student (calibrated on validation with its own
    temperature), stored so that dividing by the teacher's temperature gives them."""
    from cpfd.evaluate import predict_logits
    from cpfd.teacher_outputs import fit_temperature

    t_own = fit_temperature(predict_logits(baseline, data.splits["val"]), data.splits["val"].labels)
    pool_logits = predict_logits(baseline, data.pool) / t_own * outputs.temperature
    return replace(outputs, pool_logits=pool_logits)


def run_pool_cell(datasets: dict[int, Path], project, scenario: str, seed: int, work: Path, progress: bool) -> dict:
    multiples = tuple(sorted(datasets))
    """Every arm of one (scenario, seed): test predictions and what each student saw."""
    from cpfd.benchmarks.quality import _test_preds
    from cpfd.data.tensors import prepare_data
    from cpfd.models import load_model
    from cpfd.training.run import Stages

    tcfg = project.train_for(scenario).model_copy(update={"seed": seed})
    base = project.distill_for(scenario).model_copy(update={"estimate_gain": False})
    preds: dict[str, list[int]] = {}
    seen: dict[str, dict] = {}
    labels = None
    for k in multiples:
        data = prepare_data(datasets[k], project.model)
        stages = Stages(data, project, work, tcfg, progress, resume=True, say=lambda _m: None)
        teacher_dir, baseline_dir = stages.classifier("teacher"), stages.classifier("student")
        if labels is None:
            labels = data.splits["test"].labels.tolist()
            preds["teacher"], preds["baseline"] = _test_preds(teacher_dir, data), _test_preds(baseline_dir, data)
        for method in METHODS:
            cfg = base.model_copy(update={"method": method, "pool_weight": 1.0 if k else 0.0, "pool_ratio": max(k, 1)})
            outputs, outputs_dir = stages.outputs(teacher_dir, cfg)
            student_dir, info = stages.student(outputs, outputs_dir, cfg)
            preds[arm(method, k)], seen[arm(method, k)] = _test_preds(student_dir, data), info["pool"]
        if k == max(multiples):
            cfg = base.model_copy(update={"method": "pfd", "pool_ratio": k})
            outputs, outputs_dir = stages.outputs(teacher_dir, cfg)
            own = self_training_outputs(outputs, load_model(baseline_dir), data)
            own_dir = outputs_dir.with_name(outputs_dir.name + "-self-training")
            student_dir, info = stages.student(own, own_dir, cfg)
            own_arm = self_training(multiples)
            preds[own_arm], seen[own_arm] = _test_preds(student_dir, data), info["pool"]
    assert labels is not None
    return {
        "scenario": scenario,
        "seed": seed,
        "label_names": project.scenario(scenario).label_names,
        "labels": labels,
        "preds": preds,
        "pool_seen": seen,
    }


def contrasts(multiples: tuple[int, ...]) -> list[tuple[str, str]]:
    """Every arm against the baseline, each pool against none, CPFD against PFD, the pool's teacher against itself."""
    top = max(multiples)
    return (
        [(a, "baseline") for a in ["teacher", *arms(multiples)]]
        + [(arm(m, k), arm(m, 0)) for m in METHODS for k in multiples[1:]]
        + [(arm("cpfd", k), arm("pfd", k)) for k in multiples]
        + [(arm("pfd", top), self_training(multiples)), (arm("cpfd", top), self_training(multiples))]
    )


def summarise_pool(runs: list[dict], multiples: tuple[int, ...] = MULTIPLES, reps: int = 1000) -> dict:
    """Mean F1 per arm and scenario, and paired bootstrap intervals of the contrasts, per scenario and pooled."""
    scenarios = list(dict.fromkeys(r["scenario"] for r in runs))
    methods = ["baseline", "teacher", *arms(multiples)]
    boot = bootstrap_f1(runs, scenarios, methods, reps)
    f1 = {
        s: {m: float(np.mean([run_f1(r, m) for r in runs if r["scenario"] == s])) for m in methods} for s in scenarios
    }
    out = {}
    for a, b in contrasts(multiples):
        diff = boot[a] - boot[b]
        point = {s: f1[s][a] - f1[s][b] for s in scenarios}
        out[f"{a} - {b}"] = {
            **{s: percentile_interval(diff[:, j], point[s]) for j, s in enumerate(scenarios)},
            "pooled": percentile_interval(diff.mean(1), float(np.mean(list(point.values())))),
        }
    seeds = sorted({r["seed"] for r in runs})
    return {"scenarios": scenarios, "seeds": seeds, "multiples": list(multiples), "f1": f1, "contrasts": out}


def to_markdown(summary: dict) -> str:
    scenarios = summary["scenarios"]
    lines = [
        "| arm | " + " | ".join(scenarios) + " |",
        "|---|" + "---|" * len(scenarios),
    ]
    for m in ["baseline", "teacher", *arms(tuple(summary["multiples"]))]:
        lines.append(f"| {m} | " + " | ".join(f"{summary['f1'][s][m]:.3f}" for s in scenarios) + " |")
    lines += ["", "| contrast (F1 points) | " + " | ".join([*scenarios, "pooled"]) + " |"]
    lines.append("|---|" + "---|" * (len(scenarios) + 1))
    for name, c in summary["contrasts"].items():
        cells = [
            f"{100 * c[s]['mean']:+.1f} [{100 * c[s]['lo']:+.1f}, {100 * c[s]['hi']:+.1f}]"
            + (" \\*" if c[s]["significant"] else "")
            for s in [*scenarios, "pooled"]
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_pool(summary: dict, out: Path) -> None:
    """F1 against pool size per scenario: PFD, CPFD, self-training, with the baseline and teacher as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios, multiples = summary["scenarios"], tuple(summary["multiples"])
    fig, axes = plt.subplots(1, len(scenarios), figsize=(5 * len(scenarios), 3.8), squeeze=False)
    for ax, s in zip(axes[0], scenarios, strict=True):
        f1 = summary["f1"][s]
        for m, style in (("pfd", "o-"), ("cpfd", "s--")):
            ax.plot(multiples, [f1[arm(m, k)] for k in multiples], style, label=m.upper())
        top = max(multiples)
        ax.plot([top], [f1[self_training(multiples)]], "x", markersize=10, label=f"self-training ({top}x)")
        ax.axhline(f1["baseline"], color="grey", linestyle=":", label="X-VLM (baseline)")
        ax.axhline(f1["teacher"], color="black", linestyle="-.", label="DF-X-VLM (teacher)")
        ax.set_xscale("symlog", linthresh=1)
        ax.margins(x=0.08)
        ax.set_xticks(multiples, [f"{k}x" for k in multiples])
        ax.set_xlabel("unlabelled pool (x the labelled set)")
        ax.set_ylabel("test macro-F1 (mean over seeds)")
        ax.set_title(s)
    axes[0][-1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
    fig.suptitle("Distilling from an unlabelled pool")
    fig.tight_layout()
    fig.savefig(out / "pool.png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def run_pool(
    root: Path,
    n: int,
    seeds: list[int],
    scenarios: list[str],
    project_for,
    out: Path,
    progress: bool,
    log=print,
    multiples: tuple[int, ...] = MULTIPLES,
) -> dict:
    """Every cell (resumable: one line per finished cell in runs.jsonl), then pool.json, pool.md and pool.png."""
    out.mkdir(parents=True, exist_ok=True)
    done_file = out / "runs.jsonl"
    runs = [json.loads(line) for line in done_file.read_text().splitlines()] if done_file.exists() else []
    t0 = time.perf_counter()
    for seed in seeds:
        pending = [s for s in scenarios if not any(r["scenario"] == s and r["seed"] == seed for r in runs)]
        if not pending:
            continue
        datasets, project = pool_datasets(root, n, seed, scenarios, project_for, out / "datasets", log, multiples)
        for s in pending:
            t_cell = time.perf_counter()
            cell = run_pool_cell(datasets[s], project, s, seed, out / "models" / s / f"seed{seed}", progress)
            cell["seconds"] = time.perf_counter() - t_cell
            runs.append(cell)
            with open(done_file, "a") as f:
                f.write(json.dumps(cell) + "\n")
            log(f"  {s} seed {seed}: {cell['seconds']:.0f}s  [{time.perf_counter() - t0:.0f}s]")
    runs = [r for r in runs if r["seed"] in seeds and r["scenario"] in scenarios]
    summary = {
        **summarise_pool(runs, multiples),
        "labelled_per_scenario": n,
        "seconds": float(sum(r["seconds"] for r in runs)),
    }
    (out / "pool.json").write_text(json.dumps(summary, indent=2))
    (out / "pool.md").write_text(to_markdown(summary))
    plot_pool(summary, out)
    return summary
