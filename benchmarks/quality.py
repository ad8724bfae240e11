"""Quality benchmark: X-VLM (baseline student), DF-X-VLM (teacher), PFD and CPFD variants, per scenario, over seeds.

Per scenario and seed (synthetic data is re-drawn per seed; a user's tables are fixed and only the models are
re-seeded) the two-stage run's stages (``cpfd.training.run.Stages``) train the teacher, the baseline student and
the gain estimate's probes once, the teacher outputs each variant needs once per source (fold teachers shared), and
every variant's student; ``tuned`` variants search lambda and T on the validation split first
(``benchmarks/tuning.py``). Test predictions are kept, so the summary gives paired bootstrap 95 % intervals
(``benchmarks/stats.py``); the gain estimate is set against the realised gain of the variant it was made for.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from cpfd.benchmarks.stats import summarise, weight_shares
from cpfd.benchmarks.tables import plot_quality, to_markdown
from cpfd.benchmarks.variants import BASELINES, canonical_variant, is_tuned, parse_variant, variant_name
from cpfd.config import ProjectConfig

DEFAULT_VARIANTS = (
    "pfd",
    "cpfd:max_prob:norm=mean",
    "pfd:hint=fused",
    "cpfd:max_prob:norm=mean:hint=fused",
    "cpfd:max_prob:norm=mean_clip:loss=coupled",
)


def thread_note(threads: int | None) -> str:
    n = threads or torch.get_num_threads()
    return f"torch threads: {n} (of {os.cpu_count()} CPUs); cap with --set train.threads=N"


def _test_extras(dataset: Path, oracle) -> dict:
    """True labels, slices and Bayes references of the test rows (synthetic data only)."""
    if oracle is None:
        return {}
    import pandas as pd

    test = pd.read_parquet(dataset / "test.parquet", columns=["video_id"])
    o = oracle.set_index("video_id").loc[test["video_id"]]
    return {
        "true_label": o["true_label"].tolist(),
        "bayes_content": o["bayes_content"].tolist(),
        "bayes_privileged": o["bayes_privileged"].tolist(),
    }


def _test_preds(model_dir: Path, data) -> list[int]:
    from cpfd.evaluate import evaluate_model
    from cpfd.models import load_model

    _, probs = evaluate_model(load_model(model_dir), data)
    return probs.argmax(1).tolist()


def _epochs(info: dict) -> list[int]:
    return [info["best_epoch"], info["epochs_run"]]


def _source_diagnostics(diagnostics: dict, name: str, outputs, data, slices, cfg, variant: str) -> None:
    from cpfd.distill import example_weights
    from cpfd.evaluate import classification_metrics

    train_labels = data.splits["train"].labels
    if name not in diagnostics["calibration"]:
        cal = outputs.recalibrated(True)
        diagnostics["calibration"][name] = cal.calibration
        conf = cal.calibrated.softmax(-1).max(-1).values.numpy()
        diagnostics["confidence_hist"][name] = np.histogram(conf, bins=20, range=(0.0, 1.0))[0].tolist()
        diagnostics["teacher_train_f1"][name] = classification_metrics(
            cal.logits.softmax(-1).numpy(), train_labels.numpy(), data.label_names
        )["macro_f1"]
    if slices is not None:
        w = example_weights(outputs.calibrated, train_labels, cfg).numpy()
        diagnostics["weight_share"][variant] = weight_shares(w, slices)


def _split_f1(stages, teacher_dir: Path, baseline_dir: Path) -> dict:
    from cpfd.evaluate import classification_metrics, predict_logits
    from cpfd.models import load_model

    data = stages.data
    models = {"teacher": load_model(teacher_dir), "baseline": load_model(baseline_dir)}
    out = {}
    for split in ("train", "val"):
        y = data.splits[split].labels.numpy()
        out[split] = {
            k: classification_metrics(predict_logits(m, data.splits[split]).softmax(-1).numpy(), y, data.label_names)[
                "macro_f1"
            ]
            for k, m in models.items()
        }
    return out


def run_cell(
    dataset: Path,
    project: ProjectConfig,
    scenario: str,
    seed: int,
    variants: list[str],
    work: Path,
    oracle,
    progress: bool,
    trials: int = 12,
) -> dict:
    """Everything for one (scenario, seed): models, predictions, the gain estimate, diagnostics."""
    from cpfd.data.tensors import prepare_data
    from cpfd.training.run import Stages

    data = prepare_data(dataset, project.model)
    tcfg = project.train_for(scenario).model_copy(update={"seed": seed})
    base = project.distill_for(scenario)
    stages = Stages(data, project, work, tcfg, progress, resume=True, say=lambda _m: None)
    teacher_dir, baseline_dir = stages.classifier("teacher"), stages.classifier("student")
    preds = {"teacher": _test_preds(teacher_dir, data), "baseline": _test_preds(baseline_dir, data)}
    from cpfd.conventions import model_metadata

    epochs = {k: _epochs(model_metadata(d)) for k, d in (("teacher", teacher_dir), ("baseline", baseline_dir))}
    diagnostics: dict = {
        "split_f1": _split_f1(stages, teacher_dir, baseline_dir),
        "calibration": {},
        "confidence_hist": {},
        "weight_share": {},
        "teacher_train_f1": {},
        "tuned": {},
    }
    slices = None
    if oracle is not None:
        import pandas as pd

        train_ids = pd.Series(data.splits["train"].video_ids.numpy())
        slices = oracle.set_index("video_id").loc[train_ids, "feature_slice"].to_numpy()
    estimated = variant_name(base)
    estimate = stages.estimate(teacher_dir, base)
    for v in variants:
        cfg = parse_variant(v, base)
        outputs, outputs_dir = stages.outputs(teacher_dir, cfg)
        name = f"{cfg.teacher_outputs}{cfg.folds if cfg.teacher_outputs == 'oof' else ''}"
        _source_diagnostics(diagnostics, name, outputs, data, slices, cfg, v)
        if is_tuned(v):
            from cpfd.benchmarks.tuning import tune_student

            student_dir, info, best = tune_student(stages, outputs, outputs_dir, cfg, trials, seed)
            diagnostics["tuned"][v] = best
        else:
            student_dir, info = stages.student(outputs, outputs_dir, cfg)
        preds[v], epochs[v] = _test_preds(student_dir, data), _epochs(info)
    return {
        "scenario": scenario,
        "seed": seed,
        "label_names": data.label_names,
        "labels": data.splits["test"].labels.tolist(),
        "preds": preds,
        "epochs": epochs,
        "diagnostics": diagnostics,
        "estimate": {"variant": estimated, "verdict": estimate.verdict, "probe": asdict(estimate)},
        **_test_extras(dataset, oracle),
    }


Datasets = dict[str, Path]


def _build(videos: Path, features: Path, project: ProjectConfig, names: list[str], folder: Path) -> Datasets:
    from cpfd.data.build import build_scenario_dataset

    built = {}
    for name in names or [s.name for s in project.scenarios]:
        build_scenario_dataset(videos, features, name, project, folder / name)
        built[name] = folder / name
    return built


def own_datasets(videos: Path, features: Path, project: Callable[[], ProjectConfig], names: list[str], folder: Path):
    """A user's tables: built once, the same for every seed (seeds then only re-initialise the models)."""
    cache: dict[str, Datasets] = {}

    def for_seed(seed: int) -> tuple[Datasets, None, ProjectConfig]:
        if "built" not in cache:
            cache["built"] = _build(videos, features, project(), names, folder)
        return cache["built"], None, project()

    return for_seed


def synthetic_datasets(
    data: Path,
    videos_per_scenario: int,
    names: list[str],
    project: Callable[[Path], ProjectConfig],
    folder: Path,
    log=print,
    subset: list[str] | None = None,
):
    """Synthetic data re-drawn per seed (``data/v2-<n>-seed<k>[-<subset>]``, reused when present; ``subset``: only
    those generator scenarios), with the generator's oracle (true labels, slices, Bayes references); ``names``: the
    scenarios to build (default: the project's)."""

    def for_seed(seed: int):
        import pandas as pd

        from cpfd.benchmarks.synthetic import generate

        src = data / (f"v2-{videos_per_scenario}-seed{seed}" + ("-" + "+".join(subset) if subset else ""))
        if not (src / "videos.parquet").exists():
            log(f"generating synthetic data (seed {seed}) in {src}")
            generate(src, videos_per_scenario, seed=seed, scenarios=subset or None)
        oracle = pd.read_parquet(src / "oracle.parquet") if (src / "oracle.parquet").exists() else None
        cfg = project(src / "scenarios.yaml")
        built = _build(src / "videos.parquet", src / "features.parquet", cfg, names, folder / f"seed{seed}")
        return built, oracle, cfg

    return for_seed


def run_quality(
    datasets_for_seed,
    project: ProjectConfig,
    seeds: list[int],
    variants: list[str],
    out_dir: Path,
    progress: bool = True,
    log=print,
    data_note: str = "",
    trials: int = 12,
) -> dict:
    """``datasets_for_seed(seed) -> ({scenario: dataset_dir}, oracle DataFrame or None, the seed's config)``; writes
    quality.json, quality.md, quality.png and estimate.json (the gain estimate against the realised gain of the
    config's own variant, which is added to ``variants`` when missing)."""
    variants = list(dict.fromkeys([canonical_variant(v) for v in variants] + [variant_name(project.distill)]))
    out_dir.mkdir(parents=True, exist_ok=True)
    done_file = out_dir / "runs.jsonl"  # one line per finished (scenario, seed): a rerun resumes
    done = [json.loads(line) for line in done_file.read_text().splitlines()] if done_file.exists() else []
    runs = [r for r in done if r["seed"] in seeds and set(variants) <= set(r["preds"])]
    log(thread_note(project.train.threads))
    t_start = time.perf_counter()
    for seed in seeds:
        datasets, oracle, seed_project = datasets_for_seed(seed)
        for scenario, ds in datasets.items():
            if any(r["scenario"] == scenario and r["seed"] == seed for r in runs):
                continue
            work = out_dir / "models" / scenario / f"seed{seed}"
            t_cell = time.perf_counter()
            cell = run_cell(ds, seed_project, scenario, seed, variants, work, oracle, progress, trials)
            cell["seconds"] = time.perf_counter() - t_cell
            cell["preds"] = {k: v for k, v in cell["preds"].items() if k in (*BASELINES, *variants)}
            runs.append(cell)
            with open(done_file, "a") as f:
                f.write(json.dumps(cell) + "\n")
            from cpfd.evaluate import classification_metrics

            y = np.asarray(cell["labels"])
            k = len(cell["label_names"])
            f1 = {
                m: classification_metrics(np.eye(k)[np.asarray(p)], y, cell["label_names"])["macro_f1"]
                for m, p in cell["preds"].items()
            }
            log(
                f"  {scenario} seed {seed}: "
                + ", ".join(f"{m} {v:.3f}" for m, v in f1.items())
                + f"; estimate {cell['estimate']['verdict']} "
                + f"({100 * cell['estimate']['probe']['predicted']:+.1f} pts)"
                + f"  [{time.perf_counter() - t_start:.0f}s]"
            )
    scenarios = list(dict.fromkeys(r["scenario"] for r in runs))
    result = summarise([r for r in runs if r["scenario"] in scenarios], variants)
    # training time of every cell when all recorded it (a re-run that only re-summarises costs seconds)
    timed = [r.get("seconds") for r in runs]
    result["seconds"] = float(sum(timed)) if all(t is not None for t in timed) else time.perf_counter() - t_start
    result["seeds"] = seeds
    result["threads"] = project.train.threads or torch.get_num_threads()
    result["data"] = data_note
    result["distill_base"] = {k: v for k, v in project.distill.model_dump().items() if k in ("temperature", "lam")}
    slim = {k: v for k, v in result.items() if k != "runs"}
    (out_dir / "quality.json").write_text(json.dumps(slim, indent=2))
    (out_dir / "quality.md").write_text(to_markdown(result))
    if "estimate" in result:
        (out_dir / "estimate.json").write_text(json.dumps(result["estimate"], indent=2))
    plot_quality(result, out_dir)
    return result
