"""The `cpfd` Typer app and its entry point (``[project.scripts] cpfd = "cpfd.cli.main:main"``).

Only composition happens here: each command group lives in its own module of ``cpfd.cli`` (``data``, ``train``,
``config``, ``bench``, ``pipeline``, ``serve``, ``monitor``, ``experiment``, ``demo``) and imports what it runs inside
the command, so `cpfd --help` needs typer alone.
"""

from __future__ import annotations

import logging
import sys

import typer

from cpfd.cli import bench, config, data, demo, experiment, monitor, pipeline, serve, train
from cpfd.env import set_env_defaults
from cpfd.errors import CpfdError

set_env_defaults()  # before any command imports BentoML or transformers (also when `app` is used directly)

app = typer.Typer(
    help="CPFD: confidence-aware privileged feature distillation for short-video classification.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},  # -h on every command too
    epilog="Exit codes: 0 done; 1 a check failed (the data gate, a monitoring alert); 2 a usage or input error, "
    "one line naming what is wrong; 3 a start-up fault of `cpfd serve` (a model or config it cannot load).",
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"cpfd {version('cpfd')}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="print the installed version and exit"
    ),
) -> None:
    """CPFD: confidence-aware privileged feature distillation for short-video classification."""


app.add_typer(data.dataset_app, name="dataset")
app.add_typer(train.train_app, name="train")
app.add_typer(bench.bench_app, name="bench")
app.add_typer(pipeline.pipeline_app, name="pipeline")
app.add_typer(data.features_app, name="features")
app.add_typer(config.config_app, name="config")
app.add_typer(serve.models_app, name="models")
app.add_typer(monitor.log_app, name="log")
app.add_typer(experiment.experiment_app, name="experiment")
for command in (
    data.generate,
    train.evaluate,
    serve.package,
    serve.serve,
    monitor.monitor,
    monitor.monitor_ui,
    monitor.reference,
    monitor.simulate,
    demo.demo,
):
    app.command()(command)


def main() -> None:
    set_env_defaults()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        app()
    except CpfdError as e:
        typer.secho(f"error: {e}", fg="red", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
