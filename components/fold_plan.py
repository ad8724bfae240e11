"""fold_plan: the fold-teacher steps a scenario needs, read from its resolved distill config
(the one place the fold count lives)."""

from kfp import dsl
from kfp.dsl import Artifact, Input

from cpfd.components.image import project_image


@dsl.component(base_image=project_image(), install_kfp_package=False)
def fold_plan(config: Input[Artifact]) -> list[int]:
    """``[0, 1, ..., distill.folds - 1]`` (``teacher_outputs: oof``); ``[-1]`` when ``teacher_outputs: insample`` (its
    step trains nothing: an empty loop cannot be collected locally).

    The fold loop is nested in the scenario loop, and kfp.local 2.17 hands the inner loop's item to every outer loop
    item and task-output parameter used inside it: the fold step takes only its item, pipeline parameters and
    artifacts (the scenario comes from the config artifact)."""
    from cpfd.components import timing

    timing.start("fold_plan")
    from cpfd.components.common import fold_plan_items, read_scenario_config

    timing.mark("imports")
    project, scen = read_scenario_config(config)
    folds = fold_plan_items(project)
    timing.mark("plan", scenario=scen.name)
    print(
        f"fold plan {scen.name}: "
        + (f"{len(folds)} fold teacher(s)" if folds[0] >= 0 else "in-sample, no fold teacher")
    )
    return folds
