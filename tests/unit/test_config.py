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
