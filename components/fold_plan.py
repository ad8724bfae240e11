"""fold_plan: the fold-teacher steps a scenario needs, read from its distill config (the one place the fold count lives)."""

from typing import List

from kfp import dsl

from components.image import project_image


@dsl.component(base_image=project_image(), install_kfp_package=False)
def fold_plan(scenario: str, config_yaml: str) -> List[dict]:
    """``[{"scenario": s, "fold": k}, ...]`` for k in 0..distill.folds-1 (``teacher_outputs: oof``); one item with
    fold -1 when ``teacher_outputs: insample`` (its step trains nothing: an empty loop cannot be collected locally).

    The items carry the scenario because the fold loop is nested in the scenario loop: kfp.local 2.17 hands the
    inner loop's item to every outer loop item and task-output parameter used inside the inner loop."""
    from components.common import fold_plan_items, project_from_yaml

    items = fold_plan_items(project_from_yaml(config_yaml), scenario)
    print(f"fold plan {scenario}: " + (f"{len(items)} fold teacher(s)" if items[0]["fold"] >= 0 else "in-sample, no fold teacher"))
    return items
