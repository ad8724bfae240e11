"""teacher_outputs: the soft targets for distillation (fan-in of the fold teachers, or the full teacher in-sample)."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from cpfd.components.image import project_image


@dsl.component(base_image=project_image(), install_kfp_package=False)
def teacher_outputs(
    dataset: Input[Dataset],
    teacher: Input[Model],
    fold_outputs: Input[list[Artifact]],
    config: Input[Artifact],
    train_logits: Output[Artifact],
    metrics: Output[Metrics],
):
    """distill.teacher_outputs ``oof``: the fold teachers' held-out logits combined (every training row scored by the
    teacher that never saw it); ``insample``: the full ``teacher`` on its own training rows. Either way one temperature
    is fitted on the validation split (distill.calibrate). The unlabelled pool, when the dataset has one and
    distill.pool_weight is above 0, is scored by the full ``teacher`` (same temperature). ``train_logits`` is the
    TeacherOutputs file."""
    from cpfd.components import timing

    timing.start("teacher_outputs")
    from cpfd.components.common import fold_output_paths, read_scenario_config
    from cpfd.data.tensors import prepare_data
    from cpfd.models import load_model
    from cpfd.training.recipes import combine_fold_outputs, insample_teacher_outputs, uses_pool, with_hints, with_pool

    project, scen = read_scenario_config(config)
    scenario, dcfg = scen.name, project.distill
    timing.mark("imports", scenario=scenario)
    data = prepare_data(dataset.path, project.model, project.train)
    timing.mark("load")
    full_teacher = load_model(teacher.path)
    if dcfg.teacher_outputs == "insample":
        out, used = insample_teacher_outputs(full_teacher, data, dcfg.calibrate), 0
    else:
        paths = fold_output_paths([(a.path, dict(a.metadata)) for a in fold_outputs], scenario, dcfg.folds)
        out, used = combine_fold_outputs(data, paths, dcfg.calibrate), len(paths)
    if dcfg.hint != "none":  # the full teacher's fused representation of every training row (distill.hint)
        out = with_hints(out, full_teacher, data)
    if uses_pool(data, dcfg):  # the full teacher never saw the pool
        out = with_pool(out, full_teacher, data)
    pool_rows = 0 if out.pool_logits is None else len(out.pool_logits)
    timing.mark("combine")
    out.save(train_logits.path)
    cal = out.calibration
    train_logits.metadata.update(
        {
            "scenario": scenario,
            "split": "train",
            "rows": len(data.splits["train"]),
            "pool_rows": pool_rows,
            "source": out.source,
            "fold_teachers": used,
            "calibrated": dcfg.calibrate,
            "temperature": out.temperature,
            **{k: cal[k] for k in ("nll_before", "nll_after", "ece_before", "ece_after")},
        }
    )
    metrics.log_metric("fold_teachers", used)
    metrics.log_metric("pool_rows", pool_rows)
    metrics.log_metric("temperature", out.temperature)
    for key in ("nll_before", "nll_after", "ece_before", "ece_after"):
        metrics.log_metric(f"val_{key}", cal[key])
    timing.mark("write")
    print(
        f"teacher outputs {scenario}: {out.source}"
        + (f" from {used} fold teachers" if used else "")
        + (f", {pool_rows} unlabelled pool videos scored by the full teacher" if pool_rows else "")
        + f", temperature {out.temperature:.2f}, validation NLL {cal['nll_before']:.3f} -> {cal['nll_after']:.3f}, "
        f"ECE {cal['ece_before']:.3f} -> {cal['ece_after']:.3f}"
    )
