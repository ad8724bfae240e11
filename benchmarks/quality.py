"""Quality benchmark: X-VLM (baseline student), DF-X-VLM (teacher), PFD and CPFD variants, per scenario, over seeds.

Per scenario and seed (synthetic data is re-drawn per seed; a user's tables are fixed and only
the models are re-seeded): the teacher and the baseline student are trained, the teacher outputs
each variant needs are computed once (in-sample and/or out-of-fold from K fold teachers,
calibrated or not), and every variant is distilled from them. Test predictions are kept, so the
summary gives paired bootstrap 95 % intervals of distilled − X-VLM and CPFD − PFD per scenario
and pooled over scenarios. Diagnostics: the teacher's train vs validation F1, confidence
histograms of in-sample vs out-of-fold outputs, ECE before/after temperature scaling, the
distillation weight falling on each slice kind (generator v2), and the learnability of the
teacher's edge (linear probes on the student's inputs).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from cpfd.config import DistillConfig, ProjectConfig
from cpfd.quality import (
    BASELINES,
    canonical_variant,
    learnability_probe,
    parse_variant,
    plot_quality,
    summarise,
    to_markdown,
    weight_shares,
)

DEFAULT_VARIANTS = (
    "pfd:targets=insample",
    "pfd:targets=oof:cal=off",
    "pfd",
    "cpfd:max_prob:norm=mean_clip:loss=coupled:targets=insample",
    "cpfd:max_prob:norm=mean_clip:loss=coupled",
    "cpfd:max_prob:norm=mean",
    "cpfd:true_class:norm=mean",
    "cpfd:entropy:norm=mean",
    "cpfd:correct:norm=mean",
)


def thread_note(threads: int | None) -> str:
    n = threads or torch.get_num_threads()
    return f"torch threads: {n} (of {os.cpu_count()} CPUs); cap with --set train.threads=N"


def _sources(variants: dict[str, DistillConfig]) -> dict[tuple[str, int], DistillConfig]:
    """One teacher-outputs computation per distinct (source, folds); calibration is applied afterwards."""
    out: dict[tuple[str, int], DistillConfig] = {}
    for cfg in variants.values():
        key = (cfg.teacher_outputs, cfg.folds if cfg.teacher_outputs == "oof" else 0)
        out.setdefault(key, cfg)
    return out


def _test_extras(dataset: Path, oracle) -> dict:
    """True labels, slices and Bayes references of the test rows (generator v2 only)."""
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


def run_cell(
    dataset: Path,
    project: ProjectConfig,
    scenario: str,
    seed: int,
    variants: list[str],
    work: Path,
    oracle,
    progress: bool,
) -> dict:
    """Everything for one (scenario, seed): models, predictions, diagnostics."""
    from cpfd.data.tensors import prepare_data
    from cpfd.evaluate import classification_metrics, evaluate_model, predict_logits
    from cpfd.models import load_model
    from cpfd.teacher_outputs import TeacherOutputs
    from cpfd.training.recipes import compute_teacher_outputs, distill_student, train_classifier

    data = prepare_data(dataset, project.model)
    tcfg = project.train_for(scenario).model_copy(update={"seed": seed})
    base = project.distill_for(scenario)
    cfgs = {v: parse_variant(v, base) for v in variants}
    labels = data.label_names
    preds: dict[str, list[int]] = {}
    epochs: dict[str, list[int]] = {}
    for role, key in (("teacher", "teacher"), ("student", "baseline")):
        info = train_classifier(data, role, project, work / key, progress, resume=False, train_cfg=tcfg)
        _, probs = evaluate_model(load_model(work / key), data)
        preds[key] = probs.argmax(1).tolist()
        epochs[key] = [info["best_epoch"], info["epochs_run"]]
    teacher = load_model(work / "teacher")
    student = load_model(work / "baseline")
    split_f1 = {}
    for split in ("train", "val"):
        y = data.splits[split].labels.numpy()
        split_f1[split] = {
            k: classification_metrics(predict_logits(m, data.splits[split]).softmax(-1).numpy(), y, labels)["macro_f1"]
            for k, m in (("teacher", teacher), ("baseline", student))
        }

    raw: dict[tuple[str, int], TeacherOutputs] = {}
    for source, cfg in _sources(cfgs).items():
        raw[source] = compute_teacher_outputs(
            data,
            project,
            teacher,
            work / f"folds{source[1]}",
            cfg.model_copy(update={"calibrate": False}),
            progress,
            resume=False,
            train_cfg=tcfg,
        )

    def outputs_for(cfg: DistillConfig) -> TeacherOutputs:
        return raw[(cfg.teacher_outputs, cfg.folds if cfg.teacher_outputs == "oof" else 0)].recalibrated(cfg.calibrate)

    diagnostics: dict = {
        "split_f1": split_f1,
        "calibration": {},
        "confidence_hist": {},
        "weight_share": {},
        "teacher_train_f1": {},
    }
    train_labels = data.splits["train"].labels
    for source, o in raw.items():
        cal = o.recalibrated(True)
        name = f"{source[0]}{source[1] or ''}"
        diagnostics["calibration"][name] = cal.calibration
        conf = cal.calibrated.softmax(-1).max(-1).values.numpy()
        diagnostics["confidence_hist"][name] = np.histogram(conf, bins=20, range=(0.0, 1.0))[0].tolist()
        diagnostics["teacher_train_f1"][name] = classification_metrics(
            cal.logits.softmax(-1).numpy(), train_labels.numpy(), labels
        )["macro_f1"]
    slices = None
    if oracle is not None:
        import pandas as pd

        train_ids = pd.Series(data.splits["train"].video_ids.numpy())
        slices = oracle.set_index("video_id").loc[train_ids, "feature_slice"].to_numpy()
    for v, cfg in cfgs.items():
        outputs = outputs_for(cfg)
        d = work / v.replace(":", "_").replace("=", "-")
        info = distill_student(data, outputs, project, d, cfg, progress, resume=False, train_cfg=tcfg)
        _, probs = evaluate_model(load_model(d), data)
        preds[v] = probs.argmax(1).tolist()
        epochs[v] = [info["best_epoch"], info["epochs_run"]]
        if slices is not None:
            from cpfd.distill import example_weights

            diagnostics["weight_share"][v] = weight_shares(
                example_weights(outputs.calibrated, train_labels, cfg).numpy(), slices
            )
    oof = next((o for k, o in raw.items() if k[0] == "oof"), None)
    if oof is not None:
        diagnostics["learnability"] = learnability_probe(data, oof.recalibrated(True))
    return {
        "scenario": scenario,
        "seed": seed,
        "label_names": labels,
        "labels": data.splits["test"].labels.tolist(),
        "preds": preds,
        "epochs": epochs,
        "diagnostics": diagnostics,
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

    def for_seed(seed: int) -> tuple[Datasets, None]:
        if "built" not in cache:
            cache["built"] = _build(videos, features, project(), names, folder)
        return cache["built"], None

    return for_seed


def synthetic_datasets(
    data: Path,
    generator: str,
    videos_per_scenario: int,
    names: list[str],
    project: Callable[[Path], ProjectConfig],
    folder: Path,
    log=print,
    subset: list[str] | None = None,
):
    """Synthetic data re-drawn per seed (``data/<generator>-<n>-seed<k>``, reused when present; ``subset``: only
    those generator scenarios), with the generator's oracle (true labels, slices, Bayes references) when it
    writes one; ``names``: the scenarios to build (default: the project's)."""

    def for_seed(seed: int):
        import pandas as pd

        from cpfd.data.synthetic import generate

        src = data / f"{generator}-{videos_per_scenario}-seed{seed}"
        if not (src / "videos.parquet").exists():
            log(f"generating synthetic data ({generator}, seed {seed}) in {src}")
            generate(src, videos_per_scenario, seed=seed, scenarios=subset or None, version=int(generator[1]))
        oracle = pd.read_parquet(src / "oracle.parquet") if (src / "oracle.parquet").exists() else None
        built = _build(
            src / "videos.parquet",
            src / "features.parquet",
            project(src / "scenarios.yaml"),
            names,
            folder / f"seed{seed}",
        )
        return built, oracle

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
) -> dict:
    """``datasets_for_seed(seed) -> ({scenario: dataset_dir}, oracle DataFrame or None)``."""
    variants = [canonical_variant(v) for v in variants]
    out_dir.mkdir(parents=True, exist_ok=True)
    done_file = out_dir / "runs.jsonl"  # one line per finished (scenario, seed): a rerun resumes
    done = [json.loads(line) for line in done_file.read_text().splitlines()] if done_file.exists() else []
    runs = [r for r in done if r["seed"] in seeds and set(variants) <= set(r["preds"])]
    log(thread_note(project.train.threads))
    t_start = time.perf_counter()
    for seed in seeds:
        datasets, oracle = datasets_for_seed(seed)
        for scenario, ds in datasets.items():
            if any(r["scenario"] == scenario and r["seed"] == seed for r in runs):
                continue
            work = out_dir / "models" / scenario / f"seed{seed}"
            t_cell = time.perf_counter()
            cell = run_cell(ds, project, scenario, seed, variants, work, oracle, progress)
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
    plot_quality(result, out_dir)
    return result
