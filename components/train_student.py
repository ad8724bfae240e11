"""train_student: the X-VLM baseline (frames + title only), also the A/B experiment's control arm."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from cpfd.components.image import project_image


@dsl.component(base_image=project_image(), install_kfp_package=False)
def train_student(dataset: Input[Dataset], config: Input[Artifact], model: Output[Model], metrics: Output[Metrics]):
    """Cross-entropy training of the student without privileged features (in this pod, or distributed as the task's
    CPFD_LAUNCH says: ``cpfd.components.launch``)."""
    from cpfd.components import timing

    timing.start("train_student")
    import shutil
    from pathlib import Path

    from cpfd.components.common import read_scenario_config
    from cpfd.components.launch import Step, run_training
    from cpfd.conventions import CONTROL_ARM

    _, scen = read_scenario_config(config)
    scenario = scen.name
    timing.mark("imports", scenario=scenario)
    info = run_training(Step("student", dataset.path, config.path, model.path))
    shutil.rmtree(Path(model.path) / "checkpoint", ignore_errors=True)
    model.metadata.update(
        {
            "scenario": scenario,
            "role": "student",
            "method": "ce",
            "arm": CONTROL_ARM,
            "framework": "pytorch",
            "format": "safetensors",
            "val_macro_f1": info["best_val_macro_f1"],
        }
    )
    for key in ("best_val_macro_f1", "best_epoch", "epochs_run", "train_examples_per_s"):
        metrics.log_metric(key, info[key])
    timing.mark("write")
    print(f"baseline student {scenario}: val macro-F1 {info['best_val_macro_f1']:.4f} (epoch {info['best_epoch']})")
