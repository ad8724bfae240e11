"""Project-wide conventions, defined once: the feature freshness window, the A/B arm names, the model names and
a saved model's files (readable without torch: the packaging step only lists and reads them).

Imported wherever they are used (the pandas join, the Feast feature view, the pipeline's packaging step,
the demo's serving config); configuration files that spell them out (serving/config.yaml,
monitoring/config.yaml) follow them.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

# A privileged feature row older than this at the label's time is not used (point-in-time join, both backends).
FEATURE_TTL = timedelta(days=7)

# A/B arms of a served scenario: the baseline student (X-VLM, cross-entropy) is the control, the distilled
# student the treatment.
CONTROL_ARM = "control"
TREATMENT_ARM = "treatment"
ARMS = (CONTROL_ARM, TREATMENT_ARM)


def distilled_tag(scenario: str, method: str) -> str:
    """The model-store name of a scenario's distilled student (the treatment), e.g. ``clickbait-cpfd``."""
    return f"{scenario}-{method}"


def baseline_tag(scenario: str) -> str:
    """The model-store name of a scenario's baseline student (the control), e.g. ``clickbait-student``."""
    return f"{scenario}-student"


def arm_tags(scenario: str, method: str) -> dict[str, str]:
    """Model-store name per A/B arm of a scenario."""
    return {CONTROL_ARM: baseline_tag(scenario), TREATMENT_ARM: distilled_tag(scenario, method)}


# A saved model's folder (cpfd.models.save_model): weights, spec + training info, and its tokenizer/.
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "cpfd_model.json"


def model_metadata(model_dir: str | Path) -> dict:
    """A saved model's spec and training info (its ``cpfd_model.json``)."""
    return json.loads((Path(model_dir) / CONFIG_FILE).read_text())
