"""package: the gated students into the BentoML model store (never the teacher, never the dense features)."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Model, Output

from cpfd.components.image import project_image


@dsl.component(base_image=project_image(), install_kfp_package=False)
def package(
    distilled: Input[Model],
    baseline: Input[Model],
    config: Input[Artifact],
    gate_reason: str,
    bentoml_home: str,
    packaged: Output[Model],
) -> str:
    """Save the distilled student as ``distilled_tag(scenario, method)`` (A/B treatment) and the baseline as
    ``baseline_tag(scenario)`` (control), cpfd.conventions; returns the treatment's tag. ``bentoml_home`` empty:
    the image's store.

    The ``packaged`` folder holds ``handover.json`` and both models exported (``<name>-<version>.bentomodel``): the
    pod's store dies with the pod, the artifact lands in the pipeline root (``cpfd models import`` reads it)."""
    from cpfd.components import timing

    timing.start("package")
    import json
    import os
    from pathlib import Path

    if bentoml_home:
        os.environ["BENTOML_HOME"] = bentoml_home
    from cpfd.components.common import read_scenario_config
    from cpfd.components.packaging import export_model, package_model
    from cpfd.conventions import CONTROL_ARM, TREATMENT_ARM, arm_tags
    from cpfd.env import set_env_defaults

    set_env_defaults()

    project, scen = read_scenario_config(config)
    scenario, method = scen.name, project.distill.method
    names = arm_tags(scenario, method)
    timing.mark("imports", scenario=scenario)
    tags = {
        TREATMENT_ARM: package_model(distilled.path, names[TREATMENT_ARM]),
        CONTROL_ARM: package_model(baseline.path, names[CONTROL_ARM]),
    }
    timing.mark("package")  # BentoML is imported inside: its import counts here
    store = os.environ.get("BENTOML_HOME", "~/bentoml")
    out = Path(packaged.path)
    exports = {arm: export_model(tag, out).name for arm, tag in tags.items()}
    handover = {"scenario": scenario, "method": method, "tags": tags, "bentoml_home": store, "gate": gate_reason}
    (out / "handover.json").write_text(json.dumps({**handover, "exports": exports, "uri": packaged.uri}))
    packaged.metadata.update(
        {
            "scenario": scenario,
            "method": method,
            "bentoml_tag": tags[TREATMENT_ARM],
            "control_tag": tags[CONTROL_ARM],
            "bentoml_home": store,
            "exports": exports,
        }
    )
    timing.mark("write")
    print(f"packaged {scenario}: {tags} in {store}")
    return tags[TREATMENT_ARM]
