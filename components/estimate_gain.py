"""estimate_gain: the distilled student's gain over X-VLM predicted before any fold teacher is trained
(``cpfd.training.estimate``: two probe students on the validation split), and the config the later steps read."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from cpfd.components.image import project_image


@dsl.component(base_image=project_image(), install_kfp_package=False)
def estimate_gain(
    dataset: Input[Dataset],
    teacher: Input[Model],
    config: Input[Artifact],
    decided: Output[Artifact],
    estimate: Output[Artifact],
    metrics: Output[Metrics],
):
    """``estimate``: the prediction with its interval and verdict (JSON; off when distill.estimate_gain is false).
    ``decided``: the resolved config the fold teachers, teacher outputs and distillation read: the same, or with
    in-sample teacher outputs when the verdict is "no gain" and distill.skip_folds_when_no_gain is on (the step says
    so; the fold teacher steps then train nothing)."""
    from cpfd.components import timing

    timing.start("estimate_gain")
    import json
    from pathlib import Path

    from cpfd.components.common import read_scenario_config, write_scenario_config
    from cpfd.data.tensors import prepare_data
    from cpfd.models import load_model
    from cpfd.training.estimate import estimate_gain as run_estimate
    from cpfd.training.run import estimate_refused, resolve_outputs_source

    project, scen = read_scenario_config(config)
    dcfg = project.distill
    timing.mark("imports", scenario=scen.name)
    Path(estimate.path).mkdir(parents=True, exist_ok=True)
    if not dcfg.estimate_gain:
        write_scenario_config(project, decided, config.metadata.get("method_source", "config"))
        estimate.metadata.update({"scenario": scen.name, "estimated": False})
        print(f"gain estimate {scen.name}: off (distill.estimate_gain: false)")
        return
    data = prepare_data(dataset.path, project.model, project.train)
    timing.mark("load")
    refused = estimate_refused(data, dcfg)
    if refused:
        write_scenario_config(project, decided, config.metadata.get("method_source", "config"))
        estimate.metadata.update({"scenario": scen.name, "estimated": False, "refused": refused})
        print(f"gain estimate {scen.name}: {refused}")
        return
    est = run_estimate(data, load_model(teacher.path), project, Path(estimate.path) / "probes", dcfg)
    timing.mark("probes")
    resolved = resolve_outputs_source(dcfg, est, lambda m: print(f"{scen.name}: {m}"))
    decided_project = project.model_copy(update={"distill": resolved})
    write_scenario_config(decided_project, decided, config.metadata.get("method_source", "config"))
    (Path(estimate.path) / "gain_estimate.json").write_text(json.dumps(est.to_dict(), indent=2))
    estimate.metadata.update(
        {
            "scenario": scen.name,
            "estimated": True,
            "verdict": est.verdict,
            "predicted": est.predicted,
            "low": est.low,
            "high": est.high,
            "skipped_folds": resolved is not dcfg,
        }
    )
    for key in ("predicted", "low", "high", "probe_gain", "seconds"):
        metrics.log_metric(f"gain_{key}" if key != "seconds" else "probe_seconds", getattr(est, key))
    timing.mark("write")
