"""`cpfd config`: the project configuration as a run will see it."""

from __future__ import annotations

from pathlib import Path

import typer

from cpfd.cli.common import ConfigOpt, SetOpt, load_project

config_app = typer.Typer(help="The resolved project configuration.", no_args_is_help=True)


@config_app.command("show")
def show(
    config: Path | None = ConfigOpt,
    set_: list[str] = SetOpt,
    scenario: str | None = typer.Option(None, help="one scenario, with its train/distill overrides applied"),
):
    """Print the configuration a run would use: the embedded defaults, your YAML on top, then --set, as YAML."""
    import yaml

    project = load_project(config, set_)
    if scenario is None:
        data = project.model_dump(mode="json")
    else:
        data = {
            "scenario": project.scenario(scenario).model_dump(mode="json"),
            "model": project.model.model_dump(mode="json"),
            "train": project.train_for(scenario).model_dump(mode="json"),
            "distill": project.distill_for(scenario).model_dump(mode="json"),
        }
    typer.echo(yaml.safe_dump(data, sort_keys=False).rstrip())
