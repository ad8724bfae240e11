"""Per-scenario modalities: a [title] model has no vision tower and a [frames] model no text tower; each ignores
the input it does not read, learns from the one it does, and serves through the serving runtime."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cpfd.config import TrainConfig, load_config
from cpfd.data.build import build_scenario_dataset
from cpfd.data.tensors import prepare_data
from cpfd.models import load_model
from cpfd.training.recipes import train_classifier
from tests.byo_data import write_byo_tables


@pytest.fixture(scope="module")
def byo(tmp_path_factory):
    root = tmp_path_factory.mktemp("byo_modalities")
    paths = write_byo_tables(root, n=200)
    import yaml

    raw = yaml.safe_load(paths["config"].read_text())
    raw["scenarios"][0]["modalities"] = ["frames"]  # moderation: frames only (its frames carry the label)
    paths["config"].write_text(yaml.safe_dump(raw))
    config = load_config(paths["config"])
    return root, paths, config


@pytest.mark.parametrize("scenario, reads", [("topic", ["title"]), ("moderation", ["frames"])])
def test_a_model_reads_only_its_modalities(byo, tmp_path, scenario, reads):
    root, paths, config = byo
    manifest = build_scenario_dataset(paths["videos"], root, scenario, config, tmp_path / "ds")
    assert manifest["modalities"] == reads
    data = prepare_data(tmp_path / "ds", config.model)
    train_classifier(
        data, "student", config, tmp_path / "m", progress=False, train_cfg=TrainConfig(epochs=4, batch_size=32, lr=5e-3)
    )
    model = load_model(tmp_path / "m")
    assert model.spec.modalities == reads
    assert (model.backbone.vision is None) == ("frames" not in reads)
    assert (model.backbone.text is None) == ("title" not in reads)
    test = data.splits["test"]
    with torch.inference_mode():
        base = model(test.frames, test.input_ids, test.attention_mask)
        if "frames" in reads:  # titles do not matter to a frames-only model
            other = model(test.frames, torch.roll(test.input_ids, 1, 0), torch.roll(test.attention_mask, 1, 0))
        else:  # nor frames (there are none) to a title-only one: any frame tensor gives the same answer
            other = model(torch.zeros((len(test), 0, 0, 0, 3), dtype=torch.uint8), test.input_ids, test.attention_mask)
    torch.testing.assert_close(base, other)
    if "frames" in reads:  # the frames carry the moderation label: the model learned it
        from cpfd.evaluate import classification_metrics

        probs = base.softmax(-1).numpy()
        assert classification_metrics(probs, test.labels.numpy(), data.label_names)["macro_f1"] > 0.8

    from cpfd.serving.runtime import load_served_model

    served = load_served_model(tmp_path / "m", "tag", scenario)
    frames = test.frames[0].numpy() if "frames" in reads else np.zeros((0, 0, 0, 3), np.uint8)
    np.testing.assert_allclose(served.predict([(frames, "")])[0].sum(), 1.0, rtol=1e-5)
