"""Compile benchmark: the Kubeflow pipeline compiled with a 50-scenario project as its defaults.

The DAG does not grow with the scenarios (one ParallelFor over a parameter), so compile time
should stay flat; the benchmark checks that and that the YAML carries what the cluster needs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml

GPU_STEPS = ("train-teacher", "train-student", "distill", "evaluate")


def scenario_project(n: int):
    """The embedded default's scenarios repeated to ``n`` (names made unique)."""
    from cpfd.config import ProjectConfig, load_config

    base = load_config(None)
    scenarios = []
    for i in range(n):
        s = base.scenarios[i % len(base.scenarios)]
        scenarios.append(s.model_copy(update={"name": f"{s.name}_{i:03d}"}))
    return ProjectConfig(scenarios=scenarios, model=base.model, train=base.train, distill=base.distill)


def check_compiled(path: Path) -> dict:
    """Facts read back from the IR YAML: GPU steps, loop iterator and parallelism, run-time installs."""
    doc, platform = yaml.safe_load_all(path.read_text())
    executors = {n: ex for n, ex in doc["deploymentSpec"]["executors"].items() if "container" in ex}  # not importers
    gpu = {name: ex["container"].get("resources", {}).get("accelerator") for name, ex in executors.items()}
    loop = next(t for t in doc["root"]["dag"]["tasks"].values() if "iteratorPolicy" in t or "parameterIterator" in t)
    installs = [name for name, ex in executors.items() if "pip install" in " ".join(ex["container"].get("command", []))]
    return {
        "executors": len(executors),
        "gpu_steps": sorted(n for n, acc in gpu.items() if acc),
        "parallelism": loop.get("iteratorPolicy", {}).get("parallelismLimit"),
        "iterator": loop["parameterIterator"]["items"].get("inputParameter"),
        "installs_at_run_time": installs,
        "node_selectors": sorted(platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]),
        "default_scenarios": len(doc["root"]["inputDefinitions"]["parameters"]["scenarios"].get("defaultValue", [])),
    }


def run_compile_benchmark(n_scenarios: int, out: Path, repeats: int = 3, log=print) -> dict:
    t0 = time.perf_counter()
    from cpfd.pipelines.cpfd_pipeline import PipelineOptions, compile_pipeline
    from cpfd.pipelines.runner import pipeline_arguments

    import_s = time.perf_counter() - t0
    project = scenario_project(n_scenarios)
    args = pipeline_arguments("videos.parquet", "features.parquet", project)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"cpfd_pipeline_{n_scenarios}.yaml"
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        compile_pipeline(path, PipelineOptions(parallelism=8), defaults=args)
        times.append(time.perf_counter() - t)
    facts = check_compiled(path)
    result = {
        "scenarios": n_scenarios,
        "import_s": import_s,
        "first_compile_s": times[0],
        "compile_s": times,
        "cold_total_s": import_s + times[0],
        "target_s": 30.0,
        "yaml": str(path),
        "yaml_bytes": path.stat().st_size,
        **facts,
    }
    (out / "pipeline_compile.json").write_text(json.dumps(result, indent=2))
    log(
        "| scenarios | module import (s) | first compile, kfp included (s) | warm compile (s) | cold total (s) "
        "| target | YAML |"
    )
    log("|---|---|---|---|---|---|---|")
    log(
        f"| {n_scenarios} | {import_s:.2f} | {times[0]:.2f} | {min(times[1:] or times):.2f} "
        f"| {result['cold_total_s']:.2f} | < 30 s | {result['yaml_bytes'] / 1024:.0f} KiB |"
    )
    log(
        f"GPU steps: {', '.join(facts['gpu_steps'])}; "
        f"loop over {facts['iterator']} with parallelism {facts['parallelism']}; "
        f"{facts['default_scenarios']} default scenarios; run-time installs: {facts['installs_at_run_time'] or 'none'}"
    )
    return result
