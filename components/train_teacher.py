"""train_teacher: DF-X-VLM (frames + title + privileged dense features), and its logits on the train split."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from components.image import project_image


@dsl.component(base_image=project_image(), install_kfp_package=False)
def train_teacher(dataset: Input[Dataset], scenario: str, config_yaml: str,
                  model: Output[Model], train_logits: Output[Artifact], metrics: Output[Metrics]):
    """Cross-entropy training; the teacher's outputs on the training split are computed once for distillation."""
    import shutil
    from pathlib import Path

    from components.common import project_from_yaml
    from cpfd.models import load_model
    from cpfd.train import compute_teacher_outputs, prepare_data, train_classifier

    project = project_from_yaml(config_yaml)
    data = prepare_data(dataset.path, project.model)
    info = train_classifier(data, "teacher", project, model.path, progress=False)
    shutil.rmtree(Path(model.path) / "checkpoint", ignore_errors=True)
    compute_teacher_outputs(load_model(model.path), data, train_logits.path)
    train_logits.metadata.update({"scenario": scenario, "split": "train", "rows": len(data.splits["train"])})
    model.metadata.update({"scenario": scenario, "role": "teacher", "method": "ce", "framework": "pytorch",
                           "format": "safetensors", "val_macro_f1": info["best_val_macro_f1"]})
    for key in ("best_val_macro_f1", "best_epoch", "epochs_run", "train_examples_per_s"):
        metrics.log_metric(key, info[key])
    print(f"teacher {scenario}: val macro-F1 {info['best_val_macro_f1']:.4f} (epoch {info['best_epoch']})")
