"""The `cpfd` command line. Heavy libraries are imported inside the commands, so it starts fast."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from cpfd.env import set_env_defaults
from cpfd.errors import CpfdError

set_env_defaults()

app = typer.Typer(help="CPFD: confidence-aware privileged feature distillation for short-video classification.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
dataset_app = typer.Typer(help="Build training sets from the videos table and the privileged features.", no_args_is_help=True)
train_app = typer.Typer(help="Train the teacher, the baseline student, or distil.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks that print tables.", no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")
app.add_typer(train_app, name="train")
app.add_typer(bench_app, name="bench")
from pipelines.cli import pipeline_app  # noqa: E402 (typer only: KFP is imported inside its commands)
app.add_typer(pipeline_app, name="pipeline")
features_app = typer.Typer(help="The Feast feature repository of the privileged dense features.", no_args_is_help=True)
app.add_typer(features_app, name="features")

ConfigOpt = typer.Option(None, "--config", "-c", help="project config YAML (default: the embedded one)")
SetOpt = typer.Option([], "--set", help="override, e.g. --set train.epochs=3 (repeatable)")
QuietOpt = typer.Option(False, "--quiet", "-q", help="no progress bars")


def _project(config: Optional[Path], overrides: list[str]):
    from cpfd.config import load_config

    return load_config(config, overrides)


@app.command()
def generate(
    out: Path = typer.Option(Path("data/demo"), help="output folder"),
    videos: int = typer.Option(3000, min=30, help="videos per scenario"),
    seed: int = typer.Option(0),
    frames: int = typer.Option(4, min=1),
    image_size: int = typer.Option(16, min=8),
    scenario: list[str] = typer.Option([], help="only these scenarios (repeatable)"),
    generator: str = typer.Option("v2", help="v2 (slices of unreliable features, Bayes references) or v1"),
):
    """Write the synthetic default data: videos.parquet, frames/, features.parquet, scenarios.yaml (v2: oracle.parquet)."""
    from cpfd.data.synthetic import SCENARIOS, generate as gen

    if generator not in ("v1", "v2"):
        raise CpfdError(f"--generator must be v1 or v2, got {generator!r}")
    unknown = set(scenario) - {s.name for s in SCENARIOS}
    if unknown:
        raise CpfdError(f"unknown synthetic scenario(s) {sorted(unknown)}; known: {[s.name for s in SCENARIOS]}")
    paths = gen(out, videos, seed, frames, image_size, scenario or None, version=int(generator[1]))
    for k, p in paths.items():
        typer.echo(f"{k:9s} {p}")


@dataset_app.command("build")
def dataset_build(
    videos: Path = typer.Option(..., help="videos table (Parquet)"),
    features: Path = typer.Option(..., help="privileged feature source (Parquet)"),
    scenario: str = typer.Option(...),
    out: Path = typer.Option(..., help="output folder for train/val/test.parquet + manifest.json"),
    ttl_days: float = typer.Option(7.0, help="feature freshness window (pandas backend; Feast uses the view's TTL)"),
    backend: str = typer.Option("auto", help="feast | pandas | auto (= feast when it is installed, else pandas)"),
    store: Optional[Path] = typer.Option(None, help="Feast store folder (default: OUT/feature_store)"),
    config: Optional[Path] = ConfigOpt,
    set_: list[str] = SetOpt,
):
    """Point-in-time join (Feast get_historical_features or pandas merge_asof) and time splits."""
    import importlib.util
    from datetime import timedelta

    from cpfd.data.build import build_scenario_dataset

    if backend == "auto":
        backend = "feast" if importlib.util.find_spec("feast") else "pandas"
    if backend == "feast":
        from featurestore import build_dataset_feast

        manifest = build_dataset_feast(videos, features, scenario, _project(config, set_), out, store)
    elif backend == "pandas":
        manifest = build_scenario_dataset(videos, features, scenario, _project(config, set_), out, timedelta(days=ttl_days))
    else:
        raise CpfdError(f"--backend must be feast, pandas or auto, got {backend!r}")
    typer.echo(json.dumps({"backend": manifest["join_backend"], **manifest["rows"]}))


@dataset_app.command("validate")
def dataset_validate(
    dataset: Path = typer.Option(..., help="built dataset folder (train/val/test.parquet + manifest.json)"),
    reference: Optional[Path] = typer.Option(None, help="reference dataset for null rates and value ranges (default: its train split)"),
    out: Optional[Path] = typer.Option(None, help="where result.json and the Data Docs go (default: DATASET/validation)"),
    min_rows: int = typer.Option(50, min=0, help="minimum rows over all splits"),
    max_null_increase: float = typer.Option(0.15, min=0, max=1, help="allowed null rate above the reference's, per dense feature"),
    config: Optional[Path] = ConfigOpt,
    set_: list[str] = SetOpt,
):
    """Great Expectations gate; exits 1 naming each failed expectation."""
    from cpfd.validation import validate_dataset

    summary = validate_dataset(dataset, _project(config, set_), reference, out, min_rows, max_null_increase)
    for line in summary["failed"]:
        typer.echo(f"FAILED {line}")
    verdict = "passed" if summary["success"] else f"FAILED ({len(summary['failed'])} of {summary['expectations']})"
    typer.echo(f"data gate {verdict}: {summary['rows']} rows; {summary['result_json']}; {summary['data_docs']}")
    if not summary["success"]:
        raise typer.Exit(1)


@features_app.command("apply")
def features_apply(
    data: Path = typer.Option(..., help="data folder holding features.parquet"),
    store: Optional[Path] = typer.Option(None, help="Feast store folder for feature_store.yaml + registry (default: DATA/feature_store)"),
):
    """`feast apply` of feature_repo/ with its source pointed at DATA/features.parquet."""
    from featurestore import apply_repo

    fs = apply_repo(data / "features.parquet", store or data / "feature_store")
    for view in fs.list_feature_views():
        typer.echo(f"feature view {view.name}: {len(view.features)} features, ttl {view.ttl}, online={view.online}")
    for service in fs.list_feature_services():
        typer.echo(f"feature service {service.name}: {', '.join(p.name for p in service.feature_view_projections)}")
    typer.echo(f"registry: {fs.config.registry.path}")


def _train(role: str, dataset: Path, out: Path, config, set_, quiet: bool, resume: bool):
    from cpfd.data.tensors import prepare_data
    from cpfd.training.recipes import train_classifier

    project = _project(config, set_)
    data = prepare_data(dataset, project.model)
    project.scenario(data.manifest["scenario"])
    info = train_classifier(data, role, project, out, progress=not quiet, resume=resume)
    typer.echo(f"{role} saved to {out}: best epoch {info['best_epoch']}, val macro-F1 {info['best_val_macro_f1']:.4f}")


@train_app.command("teacher")
def train_teacher(dataset: Path = typer.Option(...), out: Path = typer.Option(...), config: Optional[Path] = ConfigOpt,
                  set_: list[str] = SetOpt, quiet: bool = QuietOpt, resume: bool = typer.Option(True)):
    """DF-X-VLM: frames + title + privileged dense features, cross-entropy."""
    _train("teacher", dataset, out, config, set_, quiet, resume)


@train_app.command("student")
def train_student(dataset: Path = typer.Option(...), out: Path = typer.Option(...), config: Optional[Path] = ConfigOpt,
                  set_: list[str] = SetOpt, quiet: bool = QuietOpt, resume: bool = typer.Option(True)):
    """X-VLM baseline: frames + title only, cross-entropy (the A/B control)."""
    _train("student", dataset, out, config, set_, quiet, resume)


@train_app.command("distill")
def train_distill(
    dataset: Path = typer.Option(...), teacher: Path = typer.Option(..., help="trained teacher folder"),
    out: Path = typer.Option(...), config: Optional[Path] = ConfigOpt, set_: list[str] = SetOpt,
    quiet: bool = QuietOpt, resume: bool = typer.Option(True),
):
    """Two-stage PFD / CPFD (distill.*); the teacher's outputs (out-of-fold by default) are cached beside the teacher."""
    from cpfd.models import load_model
    from cpfd.teacher_outputs import TeacherOutputs
    from cpfd.training.recipes import compute_teacher_outputs, distill_student
    from cpfd.data.tensors import prepare_data

    project = _project(config, set_)
    data = prepare_data(dataset, project.model)
    scenario = data.manifest["scenario"]
    dcfg, tcfg = project.distill_for(scenario), project.train_for(scenario)
    source = f"oof{dcfg.folds}-seed{tcfg.seed}" if dcfg.teacher_outputs == "oof" else "insample"
    cache = teacher / f"teacher_outputs.{source}.safetensors"
    if resume and cache.exists():
        outputs = TeacherOutputs.load(cache, data.splits["train"].video_ids)
    else:
        outputs = compute_teacher_outputs(data, project, load_model(teacher), teacher / "folds", dcfg, not quiet, resume)
        outputs.save(cache)
    cal = outputs.calibration
    typer.echo(f"teacher outputs ({outputs.source}): temperature {outputs.temperature:.2f}, validation NLL "
               f"{cal['nll_before']:.3f} -> {cal['nll_after']:.3f}, ECE {cal['ece_before']:.3f} -> {cal['ece_after']:.3f}")
    info = distill_student(data, outputs, project, out, progress=not quiet, resume=resume)
    typer.echo(f"{info['method']} student saved to {out}: val macro-F1 {info['best_val_macro_f1']:.4f}")


@train_app.command("joint")
def train_joint_cmd(dataset: Path = typer.Option(...), out: Path = typer.Option(...), config: Optional[Path] = ConfigOpt,
                    set_: list[str] = SetOpt, quiet: bool = QuietOpt, resume: bool = typer.Option(True)):
    """Synchronous PFD: teacher and student together, the teacher gets no gradient from distillation."""
    from cpfd.data.tensors import prepare_data
    from cpfd.training.recipes import train_joint

    project = _project(config, set_)
    info = train_joint(prepare_data(dataset, project.model), project, out, progress=not quiet, resume=resume)
    typer.echo(f"joint student saved to {out}: val macro-F1 {info['best_val_macro_f1']:.4f}")


@app.command()
def evaluate(model: Path = typer.Option(...), dataset: Path = typer.Option(...), split: str = "test",
             out: Optional[Path] = typer.Option(None, help="write metrics JSON here")):
    """Macro-F1, precision, recall, confusion matrix and ECE of a trained model on a split."""
    from cpfd.evaluate import evaluate_saved_model

    metrics, _, _ = evaluate_saved_model(model, dataset, split)
    text = json.dumps(metrics, indent=2)
    if out:
        out.write_text(text)
    typer.echo(text)


@bench_app.command("quality")
def bench_quality(
    data: Path = typer.Option(Path("data/bench"), help="folder for the synthetic data (one sub-folder per seed)"),
    videos: Optional[Path] = typer.Option(None, help="your own videos table (instead of synthetic data)"),
    features: Optional[Path] = typer.Option(None, help="your own feature source (with --videos)"),
    config: Optional[Path] = ConfigOpt, set_: list[str] = SetOpt,
    seeds: int = typer.Option(5, min=1), videos_per_scenario: int = typer.Option(3000, min=100),
    generator: str = typer.Option("v2", help="synthetic generator: v2 or v1"),
    variant: list[str] = typer.Option([], help="variants to compare (repeatable); default: the benchmark's set"),
    scenario: list[str] = typer.Option([], help="only these scenarios"),
    quick: bool = typer.Option(False, help="2 seeds, 600 videos, 2 scenarios, 3 variants, 3 epochs: a smoke run"),
    out: Path = typer.Option(Path("runs/bench_quality")), quiet: bool = QuietOpt,
):
    """F1 of X-VLM, DF-X-VLM, PFD and CPFD variants per scenario over seeds, with paired bootstrap intervals."""
    from benchmarks.quality import DEFAULT_VARIANTS, run_quality
    from cpfd.data.build import build_scenario_dataset
    from cpfd.quality import to_markdown

    if generator not in ("v1", "v2"):
        raise CpfdError(f"--generator must be v1 or v2, got {generator!r}")
    if quick:
        seeds, videos_per_scenario = 2, 600
        variant = variant or ["pfd:targets=insample", "pfd", "cpfd:max_prob:norm=mean"]
        scenario = scenario or ["clickbait", "originality"]
        set_ = ["train.epochs=3", *set_]
    try:
        from cpfd.quality import canonical_variant

        variants = [canonical_variant(v) for v in (variant or DEFAULT_VARIANTS)]
    except ValueError as e:
        raise CpfdError(f"--variant: {e}") from None
    if videos is not None and features is None:
        raise CpfdError("--videos needs --features")

    def datasets_for_seed(seed: int):
        import pandas as pd

        if videos is not None:
            src, feats, cfg, oracle, folder = videos, features, config, None, out / "datasets" / "own"
            if (folder / "done").exists():
                return {n: folder / n for n in names}, None
        else:
            folder = data / f"{generator}-{videos_per_scenario}-seed{seed}"
            if not (folder / "videos.parquet").exists():
                from cpfd.data.synthetic import generate as gen

                typer.echo(f"generating synthetic data ({generator}, seed {seed}) in {folder}")
                gen(folder, videos_per_scenario, seed=seed, scenarios=scenario or None, version=int(generator[1]))
            src, feats, cfg = folder / "videos.parquet", folder / "features.parquet", config or folder / "scenarios.yaml"
            oracle = pd.read_parquet(folder / "oracle.parquet") if (folder / "oracle.parquet").exists() else None
            folder = out / "datasets" / f"seed{seed}"
        project = _project(cfg, set_)
        built = {}
        for name in names or [s.name for s in project.scenarios]:
            build_scenario_dataset(src, feats, name, project, folder / name)
            built[name] = folder / name
        (folder / "done").touch()
        return built, oracle

    first_cfg = config if (videos is not None or config) else None
    project = _project(first_cfg, set_)
    names = scenario or ([s.name for s in project.scenarios] if first_cfg else [])
    note = "your tables, fixed across seeds" if videos is not None else f"synthetic {generator}, re-drawn per seed"
    result = run_quality(datasets_for_seed, project, list(range(seeds)), variants, out, progress=not quiet,
                         log=typer.echo, data_note=note)
    typer.echo(to_markdown(result))
    typer.echo(f"written: {out / 'quality.json'}, {out / 'quality.md'}, {out / 'quality.png'} ({result['seconds']:.0f}s)")


@bench_app.command("throughput")
def bench_throughput(config: Optional[Path] = ConfigOpt, set_: list[str] = SetOpt,
                     steps: int = typer.Option(30, min=5), out: Path = typer.Option(Path("runs/bench_throughput"))):
    """Training examples/s: plain student step vs CPFD distillation step (cached teacher outputs)."""
    from benchmarks.throughput import run_throughput

    run_throughput(_project(config, set_), steps, out, log=typer.echo)


@bench_app.command("features")
def bench_features(rows: int = typer.Option(100_000, min=100), repeats: int = typer.Option(3, min=1),
                   out: Path = typer.Option(Path("runs/bench_features"))):
    """Point-in-time retrieval: Feast get_historical_features vs pandas.merge_asof on the same Parquet."""
    from benchmarks.feast_retrieval import run_feature_retrieval

    run_feature_retrieval(out, rows, repeats, log=typer.echo)


@app.command()
def package(model: Path = typer.Option(..., help="trained student folder"),
            name: str = typer.Option(..., help="BentoML model name, e.g. clickbait-cpfd")):
    """Save a trained student into the BentoML model store (BENTOML_HOME); prints the tag."""
    from cpfd.packaging import package_model

    typer.echo(package_model(model, name))


@app.command()
def serve(config: Path = typer.Option(Path("serving/config.yaml"), "--config", "-c", help="serving config YAML"),
          host: str = typer.Option("127.0.0.1"), port: int = typer.Option(3000)):
    """Serve the configured students with `bentoml serve` (A/B arms, adaptive batching, prediction log)."""
    from serving.launch import server_command

    argv, env = server_command(config, host, port)
    os.execvpe(argv[0], argv, env)


@bench_app.command("serving")
def bench_serving(config: Path = typer.Option(..., "--config", "-c", help="serving config YAML"),
                  scenario: Optional[str] = typer.Option(None, help="scenario to load (default: the first)"),
                  seconds: float = typer.Option(8.0, min=1, help="per measurement"),
                  clients: list[int] = typer.Option([1, 8, 32]),
                  out: Path = typer.Option(Path("runs/bench_serving"))):
    """Endpoint throughput and p50/p99 latency with and without adaptive batching vs the in-process ceiling."""
    from benchmarks.serving import run_serving_bench

    run_serving_bench(config, out, scenario, seconds, clients, log=typer.echo)


@app.command()
def monitor(log: str = typer.Option(..., help="prediction log: SQLite path or SQLAlchemy URL"),
            reference: Path = typer.Option(..., help="offline reference Parquet, or a folder of them"),
            since: str = typer.Option(..., help="window start, ISO-8601 (UTC if no zone)"),
            until: str = typer.Option(..., help="window end (exclusive), ISO-8601"),
            out: Path = typer.Option(Path("runs/monitoring")), config: Optional[Path] = typer.Option(
                None, "--config", "-c", help="monitoring thresholds YAML (default: monitoring/config.yaml)"),
            evidently: bool = typer.Option(True, help="write the Evidently report of every scenario")):
    """Confidence drift, F1 and A/B verdicts per scenario and arm; exit code 1 when any check fails."""
    from monitoring.report import format_summary, run_monitor
    from monitoring.settings import load_monitor_config

    summary = run_monitor(log, reference, since, until, out, load_monitor_config(config), evidently)
    typer.echo(format_summary(summary))
    typer.echo(f"written: {out / 'index.html'}, {out / 'summary.json'}")
    raise typer.Exit(1 if summary["status"] == "fail" else 0)


@app.command()
def reference(model: Path = typer.Option(..., help="trained student folder"),
              dataset: Path = typer.Option(..., help="built dataset folder"),
              out: Optional[Path] = typer.Option(None, help="default: <model>/reference.parquet"),
              arm: str = typer.Option("", help="A/B arm this model serves ('' = every arm)"),
              split: str = typer.Option("test")):
    """Write the offline reference for monitoring: the model's predictions on the dataset's test split."""
    from monitoring.reference import reference_from_model

    typer.echo(reference_from_model(model, dataset, out, arm, split))


@app.command()
def simulate(url: str = typer.Option("http://127.0.0.1:3000", help="the running service"),
             log: str = typer.Option(..., help="the service's prediction log (labels are written there)"),
             videos: Path = typer.Option(Path("data/demo/videos.parquet"), help="synthetic videos table"),
             scenario: list[str] = typer.Option([], help="default: every served scenario"),
             per_scenario: int = typer.Option(200, min=1), window: float = typer.Option(0.2, help="latest share of time"),
             drift_scenario: Optional[str] = typer.Option(None), drift: float = typer.Option(0.0, min=0, max=1),
             label_share: float = typer.Option(0.8, min=0, max=1), batch_size: int = typer.Option(32, min=1),
             arm: Optional[str] = typer.Option(None, help="force one arm (default: the service's split)"),
             seed: int = typer.Option(0)):
    """Send a later window of synthetic videos (one scenario optionally drifted) to the service, then label them."""
    from monitoring.simulate import simulate as run

    res = run(url, log, videos, scenario or None, per_scenario, window, drift_scenario, drift, label_share, batch_size,
              arm, seed, log=typer.echo)
    typer.echo(f"monitor this window with: cpfd monitor --log {log} --since {res['since']} --until {res['until']} --reference ...")


@bench_app.command("monitoring")
def bench_monitoring(predictions: int = typer.Option(1_000_000, min=1000), scenarios: int = typer.Option(20, min=1),
                     out: Path = typer.Option(Path("runs/bench_monitoring"))):
    """Time of the monitoring job over a prediction log of N predictions across S scenarios, two arms."""
    from benchmarks.monitoring import run_monitoring_bench

    run_monitoring_bench(predictions, scenarios, out, log=typer.echo)


@bench_app.command("compile")
def bench_compile(scenarios: int = typer.Option(50, min=1), out: Path = typer.Option(Path("runs/bench_compile"))):
    """Compile the Kubeflow pipeline for N scenarios (target under 30 s) and check the YAML."""
    from benchmarks.pipeline_compile import run_compile_benchmark

    run_compile_benchmark(scenarios, out, log=typer.echo)


@app.command()
def demo(data: Path = typer.Option(Path("data/demo")), videos_per_scenario: int = typer.Option(1500, min=100),
         out: Path = typer.Option(Path("runs/demo")), parallelism: int = typer.Option(2, min=1),
         monitor: bool = typer.Option(True, "--monitor/--no-monitor", help="then serve, simulate traffic, monitor"),
         drift_scenario: str = typer.Option("ad_content", help="scenario drifted in the simulated traffic ('' = none)"),
         drift: float = typer.Option(0.8, min=0, max=1, help="drift strength")):
    """The main job: synthetic data, the Feast repo, the Kubeflow pipeline run locally on every default scenario,
    then the packaged students served, a later window of traffic (one scenario drifted) and the monitoring summary."""
    from pipelines.cli import run_demo

    run_demo(data, videos_per_scenario, out, parallelism, monitor, drift_scenario or None, drift)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        app()
    except CpfdError as e:
        typer.secho(f"error: {e}", fg="red", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
