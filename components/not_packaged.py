"""not_packaged: the gate's other branch; hands over that nothing was packaged (KFP needs a value from each branch)."""

from kfp import dsl

from cpfd.components.image import project_image


@dsl.component(base_image=project_image(), install_kfp_package=False)
def not_packaged(gate_reason: str) -> str:
    """The handover of a scenario that failed its gate: ``{"packaged": false, "gate": reason}`` (JSON)."""
    from cpfd.components import timing

    timing.start("not_packaged")
    import json

    timing.mark("imports")
    return json.dumps({"packaged": False, "gate": gate_reason})
