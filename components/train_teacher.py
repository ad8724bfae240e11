"""train_teacher: DF-X-VLM (frames + title + privileged dense features) on the whole training split.

This is the teacher that is evaluated and gated. The soft targets for distillation come from the
``teacher_outputs`` step (out-of-fold fold teachers by default, this model only when
distill.teacher_outputs is ``insample``).
"""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from cpfd.components.image import project_image


@dsl.component(base_image=project_image(), install_kfp_package=False)
def train_teacher(dataset: Input[Dataset], config: Input[Artifact], model: Output[Model], metrics: Output[Metrics]):
    """Cross-entropy training with early stopping on validation macro-F1 (in this pod, or distributed as the task's
    CPFD_LAUNCH says: ``cpfd.components.launch``)."""
    from cpfd.components import timing

    timing.start("train_teacher")
    import shutil
    from pathlib import Path

    from cpfd.components.common import read_scenario_config
    from cpfd.components.launch import Step, run_training

    _, scen = read_scenario_config(config)
    scenario = scen.name
    timing.mark("imports", scenario=scenario)
    info = run_training(Step("teacher", dataset.path, config.path, model.path))
    shutil.rmtree(Path(model.path) / "checkpoint", ignore_errors=True)
    model.metadata.update(
        {
            "scenario": scenario,
            "role": "teacher",
            "method": "ce",
            "framework": "pytorch",
            "format": "safetensors",
            "val_macro_f1": info["best_val_macro_f1"],
        }
    )
    for key in ("best_val_macro_f1", "best_epoch", "epochs_run", "train_examples_per_s"):
        metrics.log_metric(key, info[key])
    timing.mark("write")
    print(f"teacher {scenario}: val macro-F1 {info['best_val_macro_f1']:.4f} (epoch {info['best_epoch']})")
