"""scenario_result: the scenario's row of the run's table, the gate's summary with the packaging handover."""

from kfp import dsl

from cpfd.components.image import project_image


@dsl.component(base_image=project_image(), install_kfp_package=False)
def scenario_result(summary: str, handover: str) -> str:
    """``summary``: the evaluate step's JSON row; ``handover``: make_reference's JSON when the gate passed,
    not_packaged's otherwise (one of the two branches, ``dsl.OneOf``). Returns the row with ``package`` set to the
    handover (tags, store, reference folder) or null."""
    from cpfd.components import timing

    timing.start("scenario_result")
    import json

    timing.mark("imports")
    row, got = json.loads(summary), json.loads(handover)
    row["package"] = got if got.get("packaged", True) else None
    timing.mark("write", scenario=row["scenario"])
    return json.dumps(row)
