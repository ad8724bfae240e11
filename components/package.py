"""package: the gated students into the BentoML model store (never the teacher, never the dense features)."""

from kfp import dsl
from kfp.dsl import Input, Model, Output

from components.image import project_image


@dsl.component(base_image=project_image(), install_kfp_package=False)
def package(distilled: Input[Model], baseline: Input[Model], scenario: str, gate_reason: str, bentoml_home: str,
            packaged: Output[Model]) -> str:
    """Save the distilled student as ``<scenario>-<method>`` (A/B treatment) and the baseline as
    ``<scenario>-student`` (control); returns the treatment's tag. ``bentoml_home`` empty: the image's store."""
    import json
    import os

    if bentoml_home:
        os.environ["BENTOML_HOME"] = bentoml_home
    from cpfd.env import set_env_defaults
    from cpfd.packaging import package_model

    set_env_defaults()

    method = distilled.metadata.get("method", "cpfd")
    tags = {"treatment": package_model(distilled.path, f"{scenario}-{method}"),
            "control": package_model(baseline.path, f"{scenario}-student")}
    store = os.environ.get("BENTOML_HOME", "~/bentoml")
    with open(packaged.path, "w") as f:
        json.dump({"scenario": scenario, "tags": tags, "bentoml_home": store, "gate": gate_reason}, f)
    packaged.metadata.update({"scenario": scenario, "method": method, "bentoml_tag": tags["treatment"],
                              "control_tag": tags["control"], "bentoml_home": store})
    print(f"packaged {scenario}: {tags} in {store}")
    return tags["treatment"]
