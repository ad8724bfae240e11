import pytest

from cpfd.config import load_config
from cpfd.errors import ConfigError


def test_default_config_has_five_scenarios_with_distinct_label_sets():
    cfg = load_config()
    assert len(cfg.scenarios) == 5
    assert {s.num_classes for s in cfg.scenarios} >= {2, 3, 4}


def test_overrides_are_typed_and_scenario_overrides_merge(tmp_path):
    cfg = load_config(None, ["train.epochs=3", "distill.lam=0.25", "model.size=small"])
    assert (cfg.train.epochs, cfg.distill.lam, cfg.model.size) == (3, 0.25, "small")
    path = tmp_path / "c.yaml"
    path.write_text(
        "train: {epochs: 5}\nscenarios:\n  - name: a\n    label_names: [x, y]\n    train: {epochs: 9}\n"
        "    distill: {weighting: max_prob}\n"
    )
    cfg = load_config(path)
    assert cfg.train_for("a").epochs == 9 and cfg.train.epochs == 5
    assert cfg.distill_for("a").weighting == "max_prob"


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("distill.weighting=median", "distill.weighting"),
        ("distill.confidence=max_prob", "renamed to distill.weighting"),
        ("distill.mode=joint", "distill.mode: removed: .*`cpfd train joint`"),
        ("train.epochs=0", "train.epochs"),
        ("nope", "key.path=value"),
    ],
)
def test_bad_overrides_name_the_field(override, fragment):
    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.").replace(r"\.*", ".*")):
        load_config(None, [override])


def test_removed_distill_mode_is_named_in_a_scenario_override_too(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("scenarios:\n  - name: a\n    label_names: [x, y]\n    distill: {mode: joint}\n")
    with pytest.raises(ConfigError, match=r"scenario a distill: mode: removed: .*`cpfd train joint`"):
        load_config(path).distill_for("a")


def test_unknown_scenario_lists_known_ones():
    with pytest.raises(
        ConfigError, match="unknown scenario 'nope'.*clickbait.*embedded default.*pass another with --config"
    ):
        load_config().scenario("nope")


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_a_scenarios_only_yaml_inherits_the_embedded_defaults(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("scenarios:\n  - name: a\n    label_names: [x, y]\n")
    cfg, embedded = load_config(path), load_config()
    assert [s.name for s in cfg.scenarios] == ["a"]
    assert cfg.train == embedded.train and cfg.distill == embedded.distill and cfg.model == embedded.model
    path.write_text("train: {lr: 0.01}\nscenarios:\n  - name: a\n    label_names: [x, y]\n")
    cfg = load_config(path)
    assert cfg.train.lr == 0.01 and cfg.train.epochs == embedded.train.epochs  # section merged, not replaced


def test_a_pretrained_text_tower_is_frozen_unless_said_otherwise():
    cfg = load_config(None, ["model.text_pretrained=minilm"]).model
    assert cfg.text_pretrained == "minilm" and cfg.text_frozen  # the name stays a name: no machine path in configs
    assert not load_config(None, ["model.text_pretrained=minilm", "model.freeze_text=false"]).model.text_frozen
    assert not load_config().model.text_frozen and load_config().model.max_title_tokens is None  # auto length
    with pytest.raises(ConfigError, match="freeze_text needs model.text_pretrained"):
        load_config(None, ["model.freeze_text=true"])


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["train.epocs=3"], "--set train.epocs=3: train.epocs: unknown field; did you mean train.epochs?"),
        (
            ["train.epochs=2", "distill.lamb=0.2"],
            "--set distill.lamb=0.2: distill.lamb: unknown field; did you mean distill.lam?",
        ),
        (["trian.epochs=3"], "--set trian.epochs=3: trian: unknown field; did you mean train?"),
        (["train.epochs=0"], "--set train.epochs=0: train.epochs: Input should be greater than or equal to 1"),
    ],
)
def test_an_override_error_names_the_set_item_and_the_closest_field(overrides, message):
    with pytest.raises(ConfigError) as caught:
        load_config(None, overrides)
    assert str(caught.value) == message
    assert "project.yaml" not in str(caught.value)


def test_an_unknown_key_in_a_file_is_blamed_on_the_file_with_a_suggestion(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  batch_sise: 8\n")
    with pytest.raises(
        ConfigError, match=r"c\.yaml: train\.batch_sise: unknown field; did you mean train\.batch_size\?"
    ):
        load_config(path, ["train.epochs=2"])


def test_every_setting_is_described_for_the_configuration_reference():
    """docs/hooks.py renders each field's description into the docs site's configuration reference."""
    from cpfd.config import DistillConfig, GateConfig, ModelConfig, ScenarioConfig, TrainConfig

    sections = (ModelConfig, TrainConfig, DistillConfig, ScenarioConfig, GateConfig)
    bare = [f"{c.__name__}.{n}" for c in sections for n, f in c.model_fields.items() if not f.description]
    assert bare == []
