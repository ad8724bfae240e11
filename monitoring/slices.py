"""Which offline reference rows a (scenario, arm) slice of traffic is compared with; shared by the
monitoring job (cpfd.monitoring.analysis) and its Evidently reports (cpfd.monitoring.evidently_report)."""

from __future__ import annotations

import pandas as pd


def reference_slice(reference: pd.DataFrame, scenario: str, arm: str) -> pd.DataFrame:
    """The arm's own reference rows if there are any, else the scenario's arm-independent rows."""
    ref = reference[reference["scenario"] == scenario]
    own = ref[ref["arm"] == arm]
    return own if len(own) else ref[ref["arm"] == ""]
