"""`cpfd bench ...`: benchmarks that print tables (the benchmark code lives in benchmarks/)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from cpfd.cli.common import ConfigOpt, QuietOpt, SetOpt, load_project
from cpfd.errors import CpfdError

bench_app = typer.Typer(help="Benchmarks that print tables.", no_args_is_help=True)


@bench_app.command("quality")
def bench_quality(
    data: Path = typer.Option(Path("data/bench"), help="folder for the synthetic data (one sub-folder per seed)"),
    videos: Path | None = typer.Option(None, help="your own videos table (instead of synthetic data)"),
    features: Path | None = typer.Option(
        None, help="your own feature sources: their folder, or the one file a service reads (with --videos)"
    ),
    config: Path | None = ConfigOpt,
    set_: list[str] = SetOpt,
    seeds: int = typer.Option(5, min=1),
    videos_per_scenario: int | None = typer.Option(None, min=100, help="default 3000 (1000 labelled with --pool)"),
    variant: list[str] = typer.Option([], help="variants to compare (repeatable); default: the benchmark's set"),
    scenario: list[str] = typer.Option([], help="only these scenarios"),
    quick: bool = typer.Option(False, help="2 seeds, 600 videos, 2 scenarios, 3 variants, 3 epochs: a smoke run"),
    tune: bool = typer.Option(
        False, help="add the config's variant with lambda and T searched per scenario and seed (Optuna, validation)"
    ),
    trials: int = typer.Option(12, min=2, help="--tune: Optuna trials per scenario and seed (the first: the default)"),
    pool_multiples: str = typer.Option(
        "0,1,4,16", help="--pool: the pool sizes, as multiples of the labelled set (0 first; nested pools of one draw)"
    ),
    pool: bool = typer.Option(
        False,
        help="the unlabelled-pool benchmark instead (docs/pool_benchmark.md): pools of 0, 1, 4, 16x the labelled set, "
        "PFD and CPFD on them, the self-training control; --videos-per-scenario is then the labelled count "
        "(default 1000), --scenario defaults to title_interaction and engagement_only",
    ),
    out: Path | None = typer.Option(None, help="default: runs/bench_quality (runs/bench_pool with --pool)"),
    quiet: bool = QuietOpt,
):
    """F1 of X-VLM, DF-X-VLM, PFD and CPFD variants per scenario over seeds, with paired bootstrap intervals, and the
    gain estimate against the realised gain."""
    if pool:
        _bench_pool(
            data,
            config,
            set_,
            seeds,
            videos_per_scenario,
            scenario,
            quick,
            out or Path("runs/bench_pool"),
            quiet,
            pool_multiples,
        )
        return
    out = out or Path("runs/bench_quality")
    from cpfd.benchmarks.quality import DEFAULT_VARIANTS, own_datasets, run_quality, synthetic_datasets
    from cpfd.benchmarks.tables import to_markdown
    from cpfd.benchmarks.variants import TUNED, canonical_variant, variant_name

    videos_per_scenario = videos_per_scenario or 3000
    if quick:
        seeds, videos_per_scenario = 2, 600
        variant = variant or ["pfd", "cpfd:max_prob:norm=mean", "pfd:hint=fused"]
        scenario = scenario or ["clickbait", "originality"]
        set_ = ["train.epochs=3", *set_]
    try:
        variants = [canonical_variant(v) for v in (variant or DEFAULT_VARIANTS)]
    except ValueError as e:
        raise CpfdError(f"--variant: {e}") from None
    if videos is not None and features is None:
        raise CpfdError("--videos needs --features")

    first_cfg = config if (videos is not None or config) else None
    project = load_project(first_cfg, set_)
    if tune:
        variants.append(f"{variant_name(project.distill)}:{TUNED}")
    names = scenario or ([s.name for s in project.scenarios] if first_cfg else [])
    if videos is not None and features is not None:  # --videos without --features was refused above
        datasets_for_seed = own_datasets(videos, features, lambda: project, names, out / "datasets" / "own")
    else:
        datasets_for_seed = synthetic_datasets(
            data,
            videos_per_scenario,
            names,
            lambda cfg: load_project(config or cfg, set_),
            out / "datasets",
            log=typer.echo,
            subset=scenario,
        )
    note = "your tables, fixed across seeds" if videos is not None else "synthetic v2, re-drawn per seed"
    result = run_quality(
        datasets_for_seed,
        project,
        list(range(seeds)),
        variants,
        out,
        progress=not quiet,
        log=typer.echo,
        data_note=note,
        trials=trials,
    )
    typer.echo(to_markdown(result))
    typer.echo(
        f"written: {out / 'quality.json'}, {out / 'quality.md'}, {out / 'quality.png'} ({result['seconds']:.0f}s)"
    )


def _bench_pool(
    data: Path,
    config: Path | None,
    set_: list[str],
    seeds: int,
    labelled: int | None,
    scenario: list[str],
    quick: bool,
    out: Path,
    quiet: bool,
    multiples_text: str,
) -> None:
    from cpfd.benchmarks.pool import run_pool, to_markdown

    try:
        multiples = tuple(sorted({int(k) for k in multiples_text.split(",")}))
    except ValueError:
        raise CpfdError(f"--pool-multiples: expected comma-separated whole numbers, got {multiples_text!r}") from None
    if len(multiples) < 2 or multiples[0] != 0 or min(multiples) < 0:
        raise CpfdError(f"--pool-multiples: needs 0 (no pool) and at least one pool size, got {multiples_text!r}")

    if quick:
        seeds, labelled, set_ = 2, labelled or 300, ["train.epochs=3", *set_]
    scenarios = scenario or ["title_interaction", "engagement_only"]
    summary = run_pool(
        data,
        labelled or 1000,
        list(range(seeds)),
        scenarios,
        lambda cfg: load_project(config or cfg, set_),
        out,
        progress=not quiet,
        log=typer.echo,
        multiples=multiples,
    )
    typer.echo(to_markdown(summary))
    typer.echo(f"written: {out / 'pool.json'}, {out / 'pool.md'}, {out / 'pool.png'} ({summary['seconds']:.0f}s)")


@bench_app.command("throughput")
def bench_throughput(
    config: Path | None = ConfigOpt,
    set_: list[str] = SetOpt,
    steps: int = typer.Option(30, min=5),
    out: Path = typer.Option(Path("runs/bench_throughput")),
):
    """Training examples/s: plain student step vs CPFD distillation step (cached teacher outputs)."""
    from cpfd.benchmarks.throughput import run_throughput

    run_throughput(load_project(config, set_), steps, out, log=typer.echo)


@bench_app.command("features")
def bench_features(
    rows: list[int] = typer.Option([100_000, 1_000_000], min=100, help="entity rows (repeatable)"),
    engine: list[str] = typer.Option(
        ["duckdb", "spark", "postgres"],
        help="Feast offline stores to time (repeatable; postgres starts a throwaway server on loopback); merge_asof "
        "always runs",
    ),
    repeats: int = typer.Option(3, min=1),
    out: Path = typer.Option(Path("runs/bench_features")),
):
    """Point-in-time retrieval: Feast get_historical_features (DuckDB, Spark, PostgreSQL) vs pandas.merge_asof on the
    same rows, in one run; writes OUT/features.json."""
    from cpfd.benchmarks.feast_retrieval import run_feature_retrieval

    run_feature_retrieval(out, tuple(rows), tuple(engine), repeats, log=typer.echo)


@bench_app.command("serving")
def bench_serving(
    sizes: list[str] = typer.Option(["tiny", "small"], "--size", help="model sizes (untrained students)"),
    seconds: float = typer.Option(8.0, min=1, help="per measurement"),
    clients: list[int] = typer.Option([1, 8, 32]),
    out: Path = typer.Option(Path("runs/bench_serving")),
):
    """Endpoint throughput and p50/p99 latency (JSON+PNG and .npy frames) vs the in-process ceiling and a no-op
    endpoint of the same framework."""
    from cpfd.benchmarks.serving import run_serving_bench

    run_serving_bench(out, sizes, seconds, clients, log=typer.echo)


@bench_app.command("monitoring")
def bench_monitoring(
    predictions: int = typer.Option(1_000_000, min=1000),
    scenarios: int = typer.Option(20, min=1),
    out: Path = typer.Option(Path("runs/bench_monitoring")),
):
    """Time of the monitoring job over a prediction log of N predictions across S scenarios, two arms."""
    from cpfd.benchmarks.monitoring import run_monitoring_bench

    run_monitoring_bench(predictions, scenarios, out, log=typer.echo)


@bench_app.command("compile")
def bench_compile(scenarios: int = typer.Option(50, min=1), out: Path = typer.Option(Path("runs/bench_compile"))):
    """Compile the Kubeflow pipeline for N scenarios (target under 30 s) and check the YAML."""
    from cpfd.benchmarks.pipeline_compile import run_compile_benchmark

    run_compile_benchmark(scenarios, out, log=typer.echo)


@bench_app.command("scale")
def bench_scale(
    sizes: str = typer.Option("10000,50000,200000", help="numbers of videos, comma-separated"),
    in_memory_max: int = typer.Option(200_000, help="largest size also trained through the in-memory path"),
    work: Path = typer.Option(Path("runs/bench_scale"), help="folder for the videos, datasets and models"),
    results: Path | None = typer.Option(None, help="also write the result JSON (and a .md table) here"),
    repeats: int = typer.Option(3, min=1, help="runs of each configuration at the smallest size (median kept)"),
    pool: int = typer.Option(
        0, min=0, help="instead: this many labelled videos with unlabelled pools of 0, 4, 16 and 100x (training memory)"
    ),
):
    """Peak memory and examples/s of a student's training, streamed against in-memory, as the videos grow; with
    --pool, as the unlabelled pool grows (benchmarks/pool_scale.py)."""
    if pool:
        from cpfd.benchmarks.pool_scale import run_pool_scale
        from cpfd.benchmarks.pool_scale import to_markdown as pool_markdown

        result = run_pool_scale(pool, work, log=typer.echo)
        table = pool_markdown(result)
    else:
        from cpfd.benchmarks.scale import run_scale, to_markdown

        try:
            ns = sorted(int(s) for s in sizes.split(","))
        except ValueError:
            raise CpfdError(f"--sizes: expected comma-separated numbers, got {sizes!r}") from None
        result = run_scale(ns, work, in_memory_max, repeats=repeats, log=typer.echo)
        table = to_markdown(result)

    typer.echo(table)
    if results is not None:
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_text(json.dumps(result, indent=2) + "\n")
        results.with_suffix(".md").write_text(table + "\n")


@bench_app.command("experiments")
def bench_experiments(
    experiments: int = typer.Option(1000, min=50, help="simulated experiments per setting"),
    seed: int = typer.Option(0),
    results: Path | None = typer.Option(None, help="also write the result JSON here"),
):
    """A/A experiments looked at daily: false-positive rate of the fixed-horizon bootstrap against the always-valid
    confidence sequence, on the same data; then the sequence's power at the planned size
    (benchmarks/experiments.py)."""
    from cpfd.benchmarks.experiments import run

    run(experiments, seed, results, log=typer.echo)
