"""train_fold_teacher: the teacher of one cross-fitting fold, scoring only the training rows it never saw."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Output

from cpfd.components.image import project_image


@dsl.component(base_image=project_image(), install_kfp_package=False)
def train_fold_teacher(
    dataset: Input[Dataset],
    config: Input[Artifact],
    fold: int,
    fold_outputs: Output[Artifact],
    metrics: Output[Metrics],
):
    """Trains fold ``fold``'s teacher on the other distill.folds - 1 folds of the training split (validation split for
    early stopping) and writes its logits on the held-out fold and on validation
    (``fold_outputs/fold_outputs.safetensors``).

    Runs in this pod, or distributed as the task's CPFD_LAUNCH says (``cpfd.components.launch``). With
    distill.teacher_outputs ``insample`` (fold -1 from fold_plan) nothing is trained: the artifact is an empty
    folder marked ``skipped``."""
    from cpfd.components import timing

    timing.start("train_fold_teacher")
    import shutil
    from pathlib import Path

    from cpfd.components.common import read_scenario_config
    from cpfd.components.launch import Step, run_training
    from cpfd.errors import ConfigError
    from cpfd.teacher_outputs import FOLD_OUTPUTS_FILE

    project, scen = read_scenario_config(config)
    scenario, dcfg = scen.name, project.distill
    out = Path(fold_outputs.path)
    timing.mark("imports", scenario=scenario, fold=fold)
    if dcfg.teacher_outputs == "insample":
        out.mkdir(parents=True, exist_ok=True)
        fold_outputs.metadata.update({"scenario": scenario, "fold": fold, "num_folds": 0, "skipped": True})
        metrics.log_metric("skipped", 1)
        print(f"fold teacher {scenario}: skipped (distill.teacher_outputs is insample)")
        return
    if not 0 <= fold < dcfg.folds:
        raise ConfigError(
            f"scenario {scenario}: fold {fold} is outside 0..{dcfg.folds - 1} (distill.folds = {dcfg.folds})"
        )
    info = run_training(Step("fold-teacher", dataset.path, config.path, str(out), fold))
    shutil.rmtree(out / "checkpoint", ignore_errors=True)
    fold_outputs.metadata.update(
        {
            "scenario": scenario,
            "fold": fold,
            "num_folds": dcfg.folds,
            "skipped": False,
            "held_out": info["held_out"],
            "val_macro_f1": info["best_val_macro_f1"],
            "file": FOLD_OUTPUTS_FILE,
        }
    )
    metrics.log_metric("skipped", 0)
    for key in ("best_val_macro_f1", "best_epoch", "epochs_run", "held_out"):
        metrics.log_metric(key, info[key])
    timing.mark("write")
    print(
        f"fold teacher {scenario}: fold {fold + 1}/{dcfg.folds}, {info['held_out']} held-out rows, "
        f"val macro-F1 {info['best_val_macro_f1']:.4f} (epoch {info['best_epoch']})"
    )
