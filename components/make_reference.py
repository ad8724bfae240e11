"""make_reference: after packaging, the offline reference of both A/B arms, handed over to serving and monitoring."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from cpfd.components.image import project_image


@dsl.component(base_image=project_image(), install_kfp_package=False)
def make_reference(
    config: Input[Artifact],
    predictions: Input[Dataset],
    packaged: Input[Model],
    reference: Output[Dataset],
) -> str:
    """The offline reference of the packaged arms: the evaluate step's test-split predictions of the distilled student
    (treatment) and of the baseline (control) in the monitoring reference format (cpfd.monitoring.reference), one
    file per arm in the ``reference`` folder; nothing is predicted again.

    Returns the scenario's handover (JSON): scenario, method, the packaged model tag of each arm, the BentoML store,
    the folder of the exported models (``models``, ``models_uri``), the gate's reason and the reference folder
    (``reference`` path, ``reference_uri`` for the monitoring pipeline's importer): what serving the students and
    monitoring them needs."""
    from cpfd.components import timing

    timing.start("make_reference")
    import json
    import shutil
    from pathlib import Path

    from cpfd.components.common import read_scenario_config
    from cpfd.conventions import ARMS
    from cpfd.errors import DataContractError

    project, scen = read_scenario_config(config)
    timing.mark("imports", scenario=scen.name)
    pkg = json.loads((Path(packaged.path) / "handover.json").read_text())
    out = Path(reference.path)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for arm in ARMS:
        src = Path(predictions.path) / f"{scen.name}-{arm}.parquet"
        if not src.is_file():
            raise DataContractError(f"scenario {scen.name}: the evaluate step left no {arm} predictions ({src})")
        shutil.copy2(src, out / src.name)
        files[arm] = src.name
    reference.metadata.update(
        {
            "scenario": scen.name,
            "split": "test",
            "arms": list(ARMS),
            "files": files,
            **{f"{arm}_tag": pkg["tags"][arm] for arm in ARMS},
        }
    )
    handover = {
        "scenario": scen.name,
        "method": project.distill.method,
        "tags": pkg["tags"],
        "bentoml_home": pkg["bentoml_home"],
        "gate": pkg["gate"],
        "models": packaged.path,  # the exported models (`cpfd models import --from` it)
        "models_uri": packaged.uri,
        "reference": reference.path,
        "reference_uri": reference.uri,
        "reference_files": files,
    }
    timing.mark("write")
    print(f"reference {scen.name}: {', '.join(files.values())}")
    return json.dumps(handover)
