"""`cpfd package`, `cpfd models import` and `cpfd serve`: the BentoML model store and `bentoml serve` (serving/)."""

from __future__ import annotations

from pathlib import Path

import typer

models_app = typer.Typer(help="The BentoML model store the service reads (BENTOML_HOME).", no_args_is_help=True)


def package(
    model: Path = typer.Option(..., help="trained student folder"),
    name: str = typer.Option(..., help="BentoML model name, e.g. clickbait-cpfd"),
):
    """Save a trained student into the BentoML model store (BENTOML_HOME); prints the tag."""
    from cpfd.components.packaging import package_model

    typer.echo(package_model(model, name))


@models_app.command("import")
def models_import(
    source: str = typer.Option(
        ..., "--from", help="a .bentomodel file, a folder holding them (a pipeline run's artifacts) or an s3:// URL"
    ),
):
    """Import the models a pipeline's package step exported into this store (BENTOML_HOME), e.g. from the
    pipeline root after a cluster run, whose pod stores are gone."""
    from cpfd.components.packaging import import_models

    for tag, what in import_models(source).items():
        typer.echo(f"{tag}: {what}")


def serve(
    config: Path = typer.Option(Path("serving/config.yaml"), "--config", "-c", help="serving config YAML"),
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(3000),
):
    """Serve the configured students with `bentoml serve` (A/B arms, adaptive batching, prediction log).

    The server stops with this command (signal or death); a start-up fault stops it with one message naming
    the file or model tag and exit code 3."""
    from cpfd.serving.launch import supervise

    raise typer.Exit(supervise(config, host, port))
