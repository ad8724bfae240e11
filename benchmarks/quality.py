"""Quality benchmark: X-VLM (student alone), DF-X-VLM (teacher), PFD and CPFD variants, per scenario, over seeds.

For each scenario the dataset is built once; for each seed the teacher and the baseline student
are trained, the teacher's outputs on the training split are cached, and every distillation
variant is trained from them. F1 is macro-F1 on the (newest) test split.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from cpfd.config import DistillConfig, ProjectConfig
from cpfd.evaluate import gap_closed

BASELINES = ("xvlm", "teacher")


def parse_variant(name: str, base: DistillConfig) -> DistillConfig:
    """'pfd', 'cpfd' (the config's default), or 'cpfd:<confidence>[:g<gamma>][:norm]'."""
    parts = name.split(":")
    if parts[0] == "pfd":
        return base.model_copy(update={"method": "pfd"})
    if parts[0] != "cpfd":
        raise ValueError(f"unknown variant {name!r}")
    update: dict = {"method": "cpfd"}
    for p in parts[1:]:
        if p == "norm":
            update["normalize_per_scenario"] = True
        elif p.startswith("g"):
            update["gamma"] = float(p[1:])
        else:
            update["confidence"] = p
    return DistillConfig.model_validate({**base.model_dump(), **update})


def run_quality(
    datasets: dict[str, Path],
    project: ProjectConfig,
    seeds: list[int],
    variants: list[str],
    out_dir: Path,
    progress: bool = True,
    log=print,
) -> dict:
    from cpfd.train import compute_teacher_outputs, distill_student, evaluate_model, prepare_data, train_classifier
    from cpfd.models import load_model

    out_dir.mkdir(parents=True, exist_ok=True)
    done_file = out_dir / "runs.jsonl"  # one line per finished (scenario, seed): a rerun resumes
    done = [json.loads(line) for line in done_file.read_text().splitlines()] if done_file.exists() else []
    runs = [r for r in done if r["scenario"] in datasets and r["seed"] in seeds and set(variants) <= set(r["f1"])]
    t_start = time.perf_counter()
    for scenario, ds in datasets.items():
        todo = [sd for sd in seeds if not any(r["scenario"] == scenario and r["seed"] == sd for r in runs)]
        if not todo:
            continue
        data = prepare_data(ds, project.model)
        for seed in todo:
            tcfg = project.train_for(scenario).model_copy(update={"seed": seed})
            work = out_dir / "models" / scenario / f"seed{seed}"
            scores: dict[str, float] = {}
            for role, key in (("teacher", "teacher"), ("student", "xvlm")):
                info = train_classifier(data, role, project, work / key, progress, resume=False, train_cfg=tcfg)
                model = load_model(work / key)
                metrics, _ = evaluate_model(model, data)
                scores[key] = metrics["macro_f1"]
                if role == "teacher":
                    teacher_logits = compute_teacher_outputs(model, data)
            for v in variants:
                dcfg = parse_variant(v, project.distill_for(scenario))
                d = work / v.replace(":", "_")
                distill_student(data, teacher_logits, project, d, dcfg, progress, resume=False, train_cfg=tcfg)
                scores[v] = evaluate_model(load_model(d), data)[0]["macro_f1"]
            runs.append({"scenario": scenario, "seed": seed, "f1": scores})
            with open(done_file, "a") as f:
                f.write(json.dumps(runs[-1]) + "\n")
            log(f"  {scenario} seed {seed}: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items())
                + f"  [{time.perf_counter() - t_start:.0f}s]")
    result = summarise(runs, variants)
    result["seconds"] = time.perf_counter() - t_start
    result["seeds"] = seeds
    (out_dir / "quality.json").write_text(json.dumps(result, indent=2))
    (out_dir / "quality.md").write_text(to_markdown(result))
    plot_quality(result, out_dir / "quality.png")
    return result


def _ms(values: list[float]) -> dict:
    a = np.asarray([v for v in values if v is not None], dtype=float)
    return {"mean": float(a.mean()) if a.size else None, "std": float(a.std(ddof=1)) if a.size > 1 else 0.0}


def summarise(runs: list[dict], variants: list[str]) -> dict:
    methods = [*BASELINES, *variants]
    scenarios = list(dict.fromkeys(r["scenario"] for r in runs))
    seeds = sorted({r["seed"] for r in runs})
    per_scenario = {}
    for s in scenarios:
        rs = [r for r in runs if r["scenario"] == s]
        row = {"f1": {m: _ms([r["f1"][m] for r in rs]) for m in methods}}
        row["gap_closed"] = {
            v: _ms([gap_closed(r["f1"][v], r["f1"]["xvlm"], r["f1"]["teacher"]) for r in rs]) for v in variants
        }
        per_scenario[s] = row
    # averages over scenarios, computed per seed so the std is across seeds
    by_seed = {seed: [r for r in runs if r["seed"] == seed] for seed in seeds}

    def avg(m: str, seed: int) -> float:
        return float(np.mean([r["f1"][m] for r in by_seed[seed]]))

    average = {"f1": {m: _ms([avg(m, sd) for sd in seeds]) for m in methods}}
    average["gain_over_xvlm"] = {v: _ms([avg(v, sd) - avg("xvlm", sd) for sd in seeds]) for v in variants}
    average["gain_over_pfd"] = {v: _ms([avg(v, sd) - avg("pfd", sd) for sd in seeds]) for v in variants if "pfd" in variants}
    average["gap_closed"] = {
        v: _ms([gap_closed(avg(v, sd), avg("xvlm", sd), avg("teacher", sd)) for sd in seeds]) for v in variants
    }
    # spread across scenarios of the per-scenario (seed-mean) gap closed
    average["gap_closed_spread"] = {
        v: float(np.std([per_scenario[s]["gap_closed"][v]["mean"] for s in scenarios
                         if per_scenario[s]["gap_closed"][v]["mean"] is not None], ddof=0)) for v in variants
    }
    cpfd = [v for v in variants if v.startswith("cpfd")]
    best = max(cpfd, key=lambda v: average["f1"][v]["mean"]) if cpfd else None
    return {"runs": runs, "methods": methods, "variants": variants, "per_scenario": per_scenario,
            "average": average, "best_cpfd_variant": best}


def _fmt(d: dict | None, pct: bool = False) -> str:
    if not d or d.get("mean") is None:
        return "n/a"
    k = 100 if pct else 1
    return f"{k * d['mean']:.1f} ± {k * d['std']:.1f}" if pct else f"{d['mean']:.3f} ± {d['std']:.3f}"


def to_markdown(result: dict) -> str:
    methods, variants = result["methods"], result["variants"]
    names = {"xvlm": "X-VLM (student)", "teacher": "DF-X-VLM (teacher)"}
    head = "| scenario | " + " | ".join(names.get(m, m) for m in methods) + " |"
    lines = [f"Macro-F1 on the test split, mean ± std over seeds {result['seeds']}.", "", head,
             "|" + "---|" * (len(methods) + 1)]
    for s, row in result["per_scenario"].items():
        lines.append(f"| {s} | " + " | ".join(_fmt(row["f1"][m]) for m in methods) + " |")
    avg = result["average"]
    lines.append("| **average** | " + " | ".join(f"**{_fmt(avg['f1'][m])}**" for m in methods) + " |")
    lines += ["", "| variant | gain over X-VLM (F1 pts) | gain over PFD (F1 pts) | gap closed (%) | gap closed spread across scenarios (pts) |",
              "|---|---|---|---|---|"]
    for v in variants:
        lines.append(
            f"| {v} | {_fmt(avg['gain_over_xvlm'][v], True)} | {_fmt(avg['gain_over_pfd'].get(v), True)} | "
            f"{_fmt(avg['gap_closed'][v], True)} | {100 * avg['gap_closed_spread'][v]:.1f} |"
        )
    lines += ["", "Gap closed per scenario (%, mean ± std over seeds):", "",
              "| scenario | " + " | ".join(variants) + " |", "|" + "---|" * (len(variants) + 1)]
    for s, row in result["per_scenario"].items():
        lines.append(f"| {s} | " + " | ".join(_fmt(row["gap_closed"][v], True) for v in variants) + " |")
    if result.get("best_cpfd_variant"):
        lines += ["", f"Best CPFD variant by average F1: `{result['best_cpfd_variant']}`."]
    return "\n".join(lines) + "\n"


def plot_quality(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = list(result["per_scenario"])
    methods = result["methods"]
    x = np.arange(len(scenarios) + 1)
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(max(8, 1.6 * len(x)), 4.5))
    for i, m in enumerate(methods):
        means = [result["per_scenario"][s]["f1"][m]["mean"] for s in scenarios] + [result["average"]["f1"][m]["mean"]]
        stds = [result["per_scenario"][s]["f1"][m]["std"] for s in scenarios] + [result["average"]["f1"][m]["std"]]
        ax.bar(x + i * width, means, width, yerr=stds, label=m, capsize=2)
    ax.set_xticks(x + 0.4 - width / 2, [*scenarios, "average"], rotation=15)
    ax.set_ylabel("macro-F1 (test)")
    ax.set_ylim(0.3, 1.0)
    ax.legend(ncol=3, fontsize=8)
    ax.set_title("CPFD quality benchmark: F1 per scenario")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
