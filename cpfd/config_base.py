"""The base of every configuration model (here so that config sections in other modules share it)."""

from pathlib import Path

from pydantic import BaseModel, ConfigDict


def default_config_path() -> Path:
    """The embedded default project config: the documented defaults every partial config inherits."""
    return Path(__file__).parent / "defaults" / "project.yaml"


class StrictModel(BaseModel):
    """Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
