"""`cpfd monitor`, `cpfd monitor-ui`, `cpfd reference` and `cpfd simulate`: the monitoring job, its
dashboard and its inputs (monitoring/)."""

from __future__ import annotations

from pathlib import Path

import typer

log_app = typer.Typer(help="The prediction log (SQLite path or SQLAlchemy URL): retention.", no_args_is_help=True)


def monitor(
    log: str = typer.Option(..., help="prediction log: SQLite path or SQLAlchemy URL"),
    reference: Path = typer.Option(..., help="offline reference Parquet, or a folder of them"),
    since: str = typer.Option(..., help="window start, ISO-8601 (UTC if no zone)"),
    until: str = typer.Option(..., help="window end (exclusive), ISO-8601"),
    out: Path = typer.Option(Path("runs/monitoring")),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="monitoring thresholds YAML (default: monitoring/config.yaml)"
    ),
    evidently: bool = typer.Option(
        True, help="write the Evidently report of every scenario and add it to the Evidently workspace"
    ),
    workspace: str | None = typer.Option(
        None, help="Evidently workspace folder (default: evidently.workspace of the config, else next to --out)"
    ),
):
    """Confidence drift, F1 and A/B verdicts per scenario and arm; exit code 1 when any check fails."""
    from cpfd.monitoring.analysis import format_summary, run_monitor
    from cpfd.monitoring.settings import load_monitor_config

    cfg = load_monitor_config(config)
    summary = run_monitor(log, reference, since, until, out, cfg, evidently, workspace)
    typer.echo(format_summary(summary))
    if summary.get("experiments"):
        from cpfd.cli.experiment import apply_policy

        apply_policy(summary, cfg, Path(summary["experiments_state_dir"]))
    typer.echo(f"written: {out / 'index.html'}, {out / 'summary.json'}")
    if "workspace" in summary:
        typer.echo(f"Evidently workspace: {summary['workspace']} (cpfd monitor-ui --workspace {summary['workspace']})")
    raise typer.Exit(1 if summary["status"] == "fail" else 0)


def monitor_ui(
    workspace: Path = typer.Option(Path("runs/evidently_workspace"), help="the workspace `cpfd monitor` wrote"),
    port: int = typer.Option(8000, min=1, max=65535),
):
    """Evidently's UI over the monitoring workspace on 127.0.0.1: a project and dashboard per scenario
    (runs `evidently ui --workspace DIR --host 127.0.0.1 --port N` with DO_NOT_TRACK set)."""
    from cpfd.monitoring.evidently_ui import UI_HOST, serve_ui, ui_command

    command = ui_command(workspace, port)
    typer.echo(f"Evidently UI on http://{UI_HOST}:{port} (Ctrl-C stops it): {' '.join(command[2:])}")
    serve_ui(command)


def reference(
    model: Path = typer.Option(..., help="trained student folder"),
    dataset: Path = typer.Option(..., help="built dataset folder"),
    out: Path | None = typer.Option(None, help="default: <model>/reference.parquet"),
    arm: str = typer.Option("", help="A/B arm this model serves ('' = every arm)"),
    split: str = typer.Option("test"),
):
    """Write the offline reference for monitoring: the model's predictions on the dataset's test split."""
    from cpfd.monitoring.reference import reference_from_model

    typer.echo(reference_from_model(model, dataset, out, arm, split))


def simulate(
    url: str = typer.Option("http://127.0.0.1:3000", help="the running service"),
    log: str = typer.Option(..., help="the service's prediction log (labels are written there)"),
    videos: Path = typer.Option(Path("data/demo/videos.parquet"), help="synthetic videos table"),
    scenario: list[str] = typer.Option([], help="default: every served scenario"),
    per_scenario: int = typer.Option(200, min=1),
    window: float = typer.Option(0.2, help="latest share of time"),
    drift_scenario: str | None = typer.Option(None),
    drift: float = typer.Option(0.0, min=0, max=1),
    label_share: float = typer.Option(0.8, min=0, max=1),
    batch_size: int = typer.Option(32, min=1),
    arm: str | None = typer.Option(None, help="force one arm (default: the service's split)"),
    seed: int = typer.Option(0),
):
    """Send a later window of synthetic videos (one scenario optionally drifted) to the service, then label them."""
    from cpfd.monitoring.simulate import simulate as run

    res = run(
        url,
        log,
        videos,
        scenario or None,
        per_scenario,
        window,
        drift_scenario,
        drift,
        label_share,
        batch_size,
        arm,
        seed,
        log=typer.echo,
    )
    typer.echo(
        f"monitor this window with: cpfd monitor --log {log} --since {res['since']} --until {res['until']} "
        "--reference ..."
    )


@log_app.command("prune")
def log_prune(
    log: str = typer.Option(..., help="prediction log: SQLite path or SQLAlchemy URL"),
    before: str = typer.Option(..., help="delete predictions (and labels) older than this, ISO-8601 (UTC if no zone)"),
):
    """Retention: delete the predictions logged and the labels written before ``--before``."""
    from cpfd.monitoring.logread import iso_utc
    from cpfd.predlog import open_log

    cutoff = iso_utc(before, "--before")
    predictions, labels = open_log(log).prune(cutoff)
    typer.echo(f"deleted {predictions} prediction(s) and {labels} label(s) older than {cutoff}")
