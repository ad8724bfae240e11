"""`cpfd package` and `cpfd serve`: the BentoML model store and `bentoml serve` (serving/)."""

from __future__ import annotations

import os
from pathlib import Path

import typer


def package(
    model: Path = typer.Option(..., help="trained student folder"),
    name: str = typer.Option(..., help="BentoML model name, e.g. clickbait-cpfd"),
):
    """Save a trained student into the BentoML model store (BENTOML_HOME); prints the tag."""
    from cpfd.packaging import package_model

    typer.echo(package_model(model, name))


def serve(
    config: Path = typer.Option(Path("serving/config.yaml"), "--config", "-c", help="serving config YAML"),
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(3000),
):
    """Serve the configured students with `bentoml serve` (A/B arms, adaptive batching, prediction log)."""
    from serving.launch import server_command

    argv, env = server_command(config, host, port)
    os.execvpe(argv[0], argv, env)
