"""The search space of the per-scenario distillation settings, defined once for the local Optuna search
(``cpfd bench quality --tune``) and the Katib Experiment (``cpfd pipeline katib``)."""

from __future__ import annotations

from dataclasses import dataclass

OBJECTIVE = "val_macro_f1"  # maximised: the distilled student's best validation macro-F1


@dataclass(frozen=True)
class Dimension:
    """One searched setting: its ``distill.`` field, range and scale."""

    field: str
    low: float
    high: float
    log: bool = False


SEARCH_SPACE: tuple[Dimension, ...] = (
    Dimension("lam", 0.1, 1.0),
    Dimension("temperature", 1.0, 8.0, log=True),
)
