"""package: the distilled student into the BentoML model store (students only, never the dense features)."""

from kfp import dsl
from kfp.dsl import Input, Model, Output

from components.image import project_image


@dsl.component(base_image=project_image(), install_kfp_package=False)
def package(distilled: Input[Model], scenario: str, gate_reason: str, bentoml_home: str, packaged: Output[Model]) -> str:
    """Save the student; returns the BentoML model tag. ``bentoml_home`` empty: the image's default store."""
    import json
    import os

    if bentoml_home:
        os.environ["BENTOML_HOME"] = bentoml_home
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    labels = {"scenario": scenario, "method": distilled.metadata.get("method", "cpfd"), "source": "cpfd-pipeline"}
    from components.common import save_to_model_store

    tag = save_to_model_store(distilled.path, f"cpfd_{scenario}", labels)
    store = os.environ.get("BENTOML_HOME", "~/bentoml")
    with open(packaged.path, "w") as f:
        json.dump({"tag": tag, "bentoml_home": store, "gate": gate_reason}, f)
    packaged.metadata.update({"scenario": scenario, "bentoml_tag": tag, "bentoml_home": store, **labels})
    print(f"packaged {scenario}: {tag} in {store}")
    return tag
