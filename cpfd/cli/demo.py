"""`cpfd demo` (`make run`): synthetic data, the Feast repo, the pipeline run locally, then serving,
simulated traffic and monitoring. Composes the other groups; nothing here is imported by them."""

from __future__ import annotations

import os
import time
from pathlib import Path

import typer

from cpfd.cli.pipeline import print_run, resolve_inputs, run_locally


def demo(
    data: Path = typer.Option(Path("data/demo")),
    videos_per_scenario: int = typer.Option(1500, min=100),
    out: Path = typer.Option(Path("runs/demo")),
    parallelism: int = typer.Option(2, min=1),
    monitor: bool = typer.Option(True, "--monitor/--no-monitor", help="then serve, simulate traffic, monitor"),
    drift_scenario: str = typer.Option("ad_content", help="scenario drifted in the simulated traffic ('' = none)"),
    drift: float = typer.Option(0.8, min=0, max=1, help="drift strength"),
):
    """The main job: synthetic data, the Feast repo, the Kubeflow pipeline run locally on every default scenario,
    then the packaged students served, a later window of traffic (one scenario drifted) and the monitoring summary."""
    run_demo(data, videos_per_scenario, out, parallelism, monitor, drift_scenario or None, drift)


def run_demo(
    data: Path,
    videos_per_scenario: int,
    out: Path,
    parallelism: int = 2,
    monitor: bool = True,
    drift_scenario: str | None = "ad_content",
    drift: float = 0.8,
) -> None:
    """`make run`: synthetic data, the Feast repo applied, the pipeline on every default scenario, the table;
    then (``monitor``) the packaged students served, a later window with drift in one scenario, the monitoring."""
    t0 = time.perf_counter()
    if not (data / "videos.parquet").exists():
        from cpfd.benchmarks.synthetic import generate

        typer.echo(f"generating synthetic data in {data} ({videos_per_scenario} videos per scenario)")
        generate(data, videos_per_scenario, seed=0)
    from cpfd.featurestore import apply_repo

    threads = max(1, (os.cpu_count() or 1) // max(parallelism, 1))
    v, f, project = resolve_inputs(data, None, None, None, [f"train.threads={threads}"])
    store = apply_repo(f, out / "feature_store", project.feature_store)
    typer.echo(f"feast:     applied {len(store.list_feature_services())} feature service(s) to {out / 'feature_store'}")
    run = run_locally(v, f, project, [], None, parallelism, "feast", out / "pipeline", None, False)
    print_run(run)
    if monitor:
        from cpfd.pipelines.demo_monitoring import monitor_demo

        typer.echo("")
        monitor_demo(run.packages, v, out, drift_scenario, drift, echo=typer.echo)
    typer.echo(f"demo:      {time.perf_counter() - t0:.0f}s in all")
