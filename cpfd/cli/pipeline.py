"""`cpfd pipeline ...`: compile, run locally, submit the Kubeflow pipeline (pipelines/).
KFP is imported inside the commands only."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import typer

from cpfd.errors import CpfdError

pipeline_app = typer.Typer(
    help="The Kubeflow pipeline: compile (IR YAML), run locally, submit to a host.", no_args_is_help=True
)

ConfigOpt = typer.Option(
    None, "--config", "-c", help="project config YAML (default: <data>/scenarios.yaml, else the embedded one)"
)
SetOpt = typer.Option([], "--set", help="config override, e.g. --set train.epochs=3 (repeatable)")
DataOpt = typer.Option(
    Path("data/demo"), help="folder with videos.parquet, the declared feature sources and scenarios.yaml"
)
ScenarioOpt = typer.Option([], "--scenario", help="only these scenarios (repeatable; default: all configured)")
MethodOpt = typer.Option(None, help="cpfd or pfd: overrides every scenario's distill.method (default: the config's)")
JoinOpt = typer.Option("feast", help="dataset join: feast (the feature repo, $CPFD_FEATURE_REPO) or pandas")
ParallelismOpt = typer.Option(2, min=0, help="scenarios at once (0 = unlimited)")
FoldParallelismOpt = typer.Option(0, min=0, help="fold teachers at once within a scenario (0 = unlimited)")
ImageOpt = typer.Option(None, help="project image for every step (default: $CPFD_IMAGE or cpfd:0.1.0)")
HostOpt = typer.Option(..., help="Kubeflow Pipelines API endpoint, e.g. http://localhost:8080")
NoGpuOpt = typer.Option(False, "--no-gpu", help="no accelerator, node selector or toleration on the training steps")
NodeSelectorOpt = typer.Option(
    [], "--node-selector", help="KEY=VALUE for the GPU steps (repeatable; replaces the default)"
)
TolerationOpt = typer.Option(
    [], "--toleration", help="KEY[=VALUE]:EFFECT for the GPU steps (repeatable; replaces the default)"
)


def pipeline_options(
    parallelism: int = 2,
    image: str | None = None,
    no_gpu: bool = False,
    node_selector: Sequence[str] = (),
    toleration: Sequence[str] = (),
    gpu_count: int = 1,
    train_cpu: str = "4",
    train_memory: str = "16G",
    fold_parallelism: int = 0,
):
    from cpfd.pipelines.cpfd_pipeline import PipelineOptions

    opts = PipelineOptions(
        image=image or "",
        parallelism=parallelism,
        gpu=not no_gpu,
        gpu_count=gpu_count,
        train_cpu=train_cpu,
        train_memory=train_memory,
        fold_parallelism=fold_parallelism,
    )
    if node_selector:
        opts.node_selector = dict(_key_value(s, "--node-selector") for s in node_selector)
    if toleration:
        opts.tolerations = [_toleration(t) for t in toleration]
    return opts


def _key_value(text: str, flag: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise CpfdError(f"{flag} {text!r}: expected KEY=VALUE")
    return key, value


def _toleration(text: str) -> dict:
    spec, sep, effect = text.rpartition(":")
    if not sep or effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
        raise CpfdError(
            f"--toleration {text!r}: expected KEY[=VALUE]:EFFECT with EFFECT NoSchedule, PreferNoSchedule or NoExecute"
        )
    key, eq, value = spec.partition("=")
    return (
        {"key": key, "operator": "Equal", "value": value, "effect": effect}
        if eq
        else {"key": key, "operator": "Exists", "effect": effect}
    )


def default_inputs(
    data: Path, videos: Path | None, features: Path | None, config: Path | None
) -> tuple[Path, Path, Path | None]:
    """--videos and --features, else the tables of --data (and its scenarios.yaml when no --config is given)."""
    if videos is None:
        videos, features = data / "videos.parquet", data
        if config is None and (data / "scenarios.yaml").exists():
            config = data / "scenarios.yaml"
    elif features is None:
        raise CpfdError("--videos needs --features")
    return videos, features, config


def resolve_inputs(data: Path, videos: Path | None, features: Path | None, config: Path | None, set_: list[str]):
    """The local run's inputs: defaulted from --data, checked to exist, absolute, and the loaded config."""
    from cpfd.config import load_config

    videos, features, config = default_inputs(data, videos, features, config)
    for p in (videos, features):
        if not Path(p).exists():
            raise CpfdError(f"input table not found: {p} (generate one with `cpfd generate --out {data}`)")
    return Path(videos).resolve(), Path(features).resolve(), load_config(config, set_)


@pipeline_app.command("compile")
def compile_cmd(
    out: Path = typer.Option(Path("pipeline.yaml"), help="IR YAML to write"),
    parallelism: int = ParallelismOpt,
    image: str | None = ImageOpt,
    no_gpu: bool = NoGpuOpt,
    node_selector: list[str] = NodeSelectorOpt,
    toleration: list[str] = TolerationOpt,
    gpu_count: int = typer.Option(1, min=1, help="GPUs per training pod; > 1: torchrun, one process per GPU"),
    train_cpu: str = typer.Option("4"),
    train_memory: str = typer.Option("16G"),
    fold_parallelism: int = FoldParallelismOpt,
    train_nodes: int = typer.Option(1, min=1, help="> 1: each training step runs as a PyTorchJob on this many nodes"),
    train_pvc: str = typer.Option("", help="with --train-nodes > 1: the ReadWriteMany claim the job's pods share"),
    train_env: list[str] = typer.Option([], "--train-env", help="KEY=VALUE in the training pods (repeatable)"),
    feast_secret: str = typer.Option(
        "", help="a Kubernetes secret with the credentials your feature_store.yaml reads as ${VAR} (feature_store.repo)"
    ),
    feast_secret_env: list[str] = typer.Option(
        [], "--feast-secret-env", help="KEY=VAR: the secret's KEY as build_dataset's variable VAR (repeatable)"
    ),
):
    """Compile the pipeline to IR YAML (upload it in the Kubeflow dashboard)."""
    from cpfd.pipelines.cpfd_pipeline import compile_pipeline

    t0 = time.perf_counter()
    opts = pipeline_options(
        parallelism, image, no_gpu, node_selector, toleration, gpu_count, train_cpu, train_memory, fold_parallelism
    )
    opts.train_nodes, opts.train_pvc = train_nodes, train_pvc
    opts.train_env = dict(_key_value(s, "--train-env") for s in train_env)
    opts.feast_secret = feast_secret
    opts.feast_secret_env = dict(_key_value(s, "--feast-secret-env") for s in feast_secret_env)
    path = compile_pipeline(out, opts)
    typer.echo(f"compiled {path} in {time.perf_counter() - t0:.1f}s")


@pipeline_app.command("publish")
def publish_cmd(
    out_dir: Path | None = typer.Option(None, help="folder to write to (default: pipelines/compiled/ of the project)"),
):
    """Compile the training and monitoring pipelines with their default options into pipelines/compiled/
    (cpfd_pipeline.yaml, cpfd_monitoring.yaml): the published YAML a test compares with a fresh compile."""
    from cpfd.pipelines.published import COMPILED_DIR, publish

    for path in publish(out_dir or COMPILED_DIR):
        typer.echo(f"compiled {path}")


@pipeline_app.command("katib")
def katib_cmd(
    scenario: str = typer.Option(..., help="the scenario the trials distil"),
    dataset: str = typer.Option(..., help="its built dataset's folder as mounted in the trial pod"),
    teacher: str = typer.Option(..., help="its trained teacher's folder as mounted (teacher outputs computed once)"),
    config: str = typer.Option("", help="project config file as mounted (default: the embedded one)"),
    pvc: str = typer.Option("cpfd-work", help="the ReadWriteMany claim holding dataset and teacher"),
    mount: str = typer.Option("/mnt/cpfd", help="where the claim is mounted"),
    namespace: str = typer.Option("kubeflow"),
    trials: int = typer.Option(12, min=2),
    parallel: int = typer.Option(2, min=1, help="trials at once"),
    image: str | None = ImageOpt,
    no_gpu: bool = NoGpuOpt,
    set_: list[str] = SetOpt,
    out: Path = typer.Option(Path("runs/katib_experiment.yaml")),
):
    """Write a Katib Experiment searching distill.lam and distill.temperature for one scenario (the same space as
    `cpfd bench quality --tune`; apply it with `kubectl apply -f`)."""
    import yaml

    from cpfd.pipelines.katib import KatibOptions, katib_experiment

    opts = KatibOptions(
        scenario, dataset, teacher, config, image or "", pvc, mount, namespace, trials, parallel, not no_gpu
    )
    opts.extra_sets = list(set_)
    try:
        manifest = katib_experiment(opts)
    except ImportError as e:
        raise CpfdError(f"the kubeflow-katib SDK is not installed ({e}); `make install` installs it") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(manifest, sort_keys=False))
    typer.echo(
        f"wrote {out}: {trials} trials of {scenario}, objective {manifest['spec']['objective']['objectiveMetricName']}"
    )


@pipeline_app.command("run")
def run_cmd(
    local: bool = typer.Option(False, "--local", help="run with kfp.local in this environment (required)"),
    data: Path = DataOpt,
    videos: Path | None = typer.Option(None),
    features: Path | None = typer.Option(None),
    config: Path | None = ConfigOpt,
    set_: list[str] = SetOpt,
    scenario: list[str] = ScenarioOpt,
    method: str | None = MethodOpt,
    parallelism: int = ParallelismOpt,
    join: str = JoinOpt,
    root: Path = typer.Option(Path("runs/pipeline"), help="pipeline root: every step's artifacts"),
    bentoml_home: Path | None = typer.Option(
        None, help="BentoML store for packaged students (default: $BENTOML_HOME, else ~/bentoml)"
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="stream every step's log"),
):
    """Run the pipeline locally (kfp.local SubprocessRunner, no cluster, no network)."""
    if not local:
        raise CpfdError("only local runs start here: pass --local, or use `cpfd pipeline submit --host URL`")
    v, f, project = resolve_inputs(data, videos, features, config, set_)
    run = run_locally(v, f, project, scenario, method, parallelism, join, root, bentoml_home, verbose)
    print_run(run)
    if run.packages:
        from cpfd.pipelines.demo_monitoring import collect_references, write_serving_config

        # the latest run's handover at a fixed place under --root: a serving config and the monitoring references
        serving = write_serving_config(run.packages, root / "serving" / "config.yaml", experiment="cpfd_vs_baseline")
        references = collect_references(run.packages, root / "references")
        home = run.packages[0]["bentoml_home"]
        typer.echo(f"serve:     BENTOML_HOME={home} cpfd serve --config {serving}")
        typer.echo(f"monitor:   cpfd monitor --reference {references} --log {serving.parent / 'predictions.db'} ...")


@pipeline_app.command("submit")
def submit_cmd(
    host: str = HostOpt,
    data: Path = DataOpt,
    videos: Path | None = typer.Option(None),
    features: Path | None = typer.Option(None),
    config: Path | None = ConfigOpt,
    set_: list[str] = SetOpt,
    scenario: list[str] = ScenarioOpt,
    method: str | None = MethodOpt,
    parallelism: int = ParallelismOpt,
    image: str | None = ImageOpt,
    no_gpu: bool = NoGpuOpt,
    node_selector: list[str] = NodeSelectorOpt,
    toleration: list[str] = TolerationOpt,
    join: str = JoinOpt,
    stream_root: str = typer.Option(
        "", help="where the training shards go (gs://, s3://, a shared folder), one sub-folder per scenario"
    ),
    run_name: str | None = typer.Option(None),
    experiment: str | None = typer.Option(None),
    namespace: str | None = typer.Option(None),
):
    """Compile and start a run on a Kubeflow Pipelines host (kfp.Client). Paths must be valid inside the cluster."""
    from cpfd.config import load_config
    from cpfd.pipelines.runner import pipeline_arguments, submit

    videos, features, config = default_inputs(data, videos, features, config)  # as the cluster sees them: unchecked
    project = load_config(config, set_)
    args = pipeline_arguments(videos, features, project, scenario or None, method, join, stream_root=stream_root)
    run_id = submit(
        host,
        args,
        pipeline_options(parallelism, image, no_gpu, node_selector, toleration),
        run_name,
        experiment,
        namespace,
    )
    typer.echo(f"submitted run {run_id} to {host}")


@pipeline_app.command("schedule-monitoring")
def schedule_monitoring_cmd(
    host: str = HostOpt,
    log_url: str = typer.Option(..., help="the prediction log's SQLAlchemy URL, as the cluster reaches it"),
    reference_uri: str = typer.Option(..., help="the offline reference (gs://, s3://, minio://), e.g. the pipeline's"),
    cron: str = typer.Option("0 6 * * *", help="when, in UTC: 5 cron fields, or 6 with seconds first"),
    window_hours: float = typer.Option(24.0, min=0.01, help="each run covers the last WINDOW_HOURS"),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="monitoring thresholds YAML (default: the image's monitoring/config.yaml)"
    ),
    fail_on_alert: bool = typer.Option(True, help="a failed check fails the run (shown red in the dashboard)"),
    name: str = typer.Option("cpfd-monitoring", help="the recurring run's name"),
    experiment: str = typer.Option("cpfd-monitoring"),
    namespace: str | None = typer.Option(None),
    image: str | None = ImageOpt,
):
    """Create a recurring run of the monitoring pipeline (kfp.Client): one run at a time, no catching up."""
    from cpfd.pipelines.runner import schedule_monitoring

    if config is not None and not config.is_file():
        raise CpfdError(f"--config {config}: no such file")
    arguments = {
        "log_url": log_url,
        "reference_uri": reference_uri,
        "window_hours": window_hours,
        "config_yaml": config.read_text() if config else "",
        "fail_on_alert": fail_on_alert,
    }
    run_id = schedule_monitoring(host, arguments, cron, name, experiment, namespace, image or "")
    typer.echo(f"scheduled recurring run {run_id} ({name!r}, cron {cron!r}, UTC) on {host}")


def run_locally(videos, features, project, scenarios, method, parallelism, join, root, bentoml_home, verbose):
    from cpfd.pipelines.runner import pipeline_arguments, print_stream, run_local

    # the store `cpfd serve` reads unless told otherwise
    home = Path(bentoml_home or os.environ.get("BENTOML_HOME") or "~/bentoml").expanduser().resolve()
    args = pipeline_arguments(videos, features, project, scenarios or None, method, join, home)
    return run_local(args, root, pipeline_options(parallelism), echo=print_stream(), verbose=verbose)


def print_run(run) -> None:
    typer.echo("")
    typer.echo(run.markdown.read_text())
    typer.echo(f"report:    {run.markdown}\n           {run.html}")
    for p in run.packages:
        typer.echo(f"packaged:  {p['tags']['treatment']} (control {p['tags']['control']}) in {p['bentoml_home']}")
    for s in run.summaries:
        if not s["gate"]["passed"]:
            typer.echo(f"gate:      {s['scenario']}: {s['gate']['reason']}")
    from cpfd.pipelines.runner import step_times

    typer.echo(f"artifacts: {run.run_dir}\nlog:       {run.log}\ntime:      {run.seconds:.0f}s")
    typer.echo(step_times(run.steps, run.seconds))
