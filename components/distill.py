"""distill: a student distilled from the teacher's cached outputs, PFD (uniform) or CPFD (confidence-weighted)."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from cpfd.components.image import project_image


@dsl.component(base_image=project_image(), install_kfp_package=False)
def distill(
    dataset: Input[Dataset],
    train_logits: Input[Artifact],
    config: Input[Artifact],
    model: Output[Model],
    metrics: Output[Metrics],
):
    """Two-stage distillation from ``train_logits`` (the teacher_outputs step's TeacherOutputs file, calibrated),
    as the resolved config's distill section says (its method: the run's ``method`` parameter when one was given);
    in this pod, or distributed as the task's CPFD_LAUNCH says (``cpfd.components.launch``)."""
    from cpfd.components import timing

    timing.start("distill")
    import shutil
    from pathlib import Path

    from cpfd.components.common import read_scenario_config
    from cpfd.components.launch import Step, run_training
    from cpfd.conventions import TREATMENT_ARM

    project, scen = read_scenario_config(config)
    scenario, dcfg = scen.name, project.distill
    method = dcfg.method
    timing.mark("imports", scenario=scenario)
    info = run_training(Step("distill", dataset.path, config.path, model.path, train_logits=train_logits.path))
    shutil.rmtree(Path(model.path) / "checkpoint", ignore_errors=True)
    cal = info["teacher_calibration"]
    model.metadata.update(
        {
            "scenario": scenario,
            "role": "student",
            "method": method,
            "arm": TREATMENT_ARM,
            "weighting": dcfg.weighting,
            "gamma": dcfg.gamma,
            "normalize": dcfg.normalize,
            "loss": dcfg.loss,
            "lam": dcfg.lam,
            "temperature": dcfg.temperature,
            "teacher_outputs": info["teacher_outputs"],
            "temperature_calibration": cal.get("temperature", 1.0),
            "framework": "pytorch",
            "format": "safetensors",
            "val_macro_f1": info["best_val_macro_f1"],
            "pool_rows": info["pool"]["rows"],
            "pool_rows_per_epoch": info["pool"]["per_epoch"],
            "pool_weight": dcfg.pool_weight,
        }
    )
    for key in ("best_val_macro_f1", "best_epoch", "epochs_run", "mean_weight"):
        metrics.log_metric(key, info[key])
    metrics.log_metric("pool_rows", info["pool"]["rows"])
    for key in ("temperature", "nll_before", "nll_after", "ece_before", "ece_after"):
        if key in cal:
            metrics.log_metric(f"teacher_{key}", cal[key])
    timing.mark("write")
    print(
        f"{method} student {scenario}: val macro-F1 {info['best_val_macro_f1']:.4f}, "
        f"mean weight {info['mean_weight']:.3f}, "
        + (
            f"{info['pool']['rows']} pool videos ({info['pool']['per_epoch']} an epoch), "
            if info["pool"]["rows"]
            else ""
        )
        + f"{info['teacher_outputs']} teacher outputs (temperature {cal.get('temperature', 1.0):.2f})"
    )
