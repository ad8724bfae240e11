"""Options shared by several command groups."""

from __future__ import annotations

from pathlib import Path

import typer

ConfigOpt = typer.Option(None, "--config", "-c", help="project config YAML (default: the embedded one)")
SetOpt = typer.Option([], "--set", help="override, e.g. --set train.epochs=3 (repeatable)")
QuietOpt = typer.Option(False, "--quiet", "-q", help="no progress bars")


def load_project(config: Path | None, overrides: list[str]):
    """The project config: ``config`` (or the embedded default) with ``--set`` overrides."""
    from cpfd.config import load_config

    return load_config(config, overrides)
