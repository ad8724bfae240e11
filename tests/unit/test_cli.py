"""The core CLI end to end on tiny data: build, teacher, student, distil (cached teacher outputs), evaluate."""

import json

from typer.testing import CliRunner

from cpfd.cli.main import app
from tests.conftest import TINY

runner = CliRunner()


def _ok(args):
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def test_train_distill_evaluate_from_the_cli(synthetic_dir, tmp_path):
    cfg = ["--config", str(synthetic_dir / "scenarios.yaml")]
    sets = [x for s in TINY for x in ("--set", s)]
    ds = tmp_path / "ds"
    _ok(
        [
            "dataset",
            "build",
            "--videos",
            str(synthetic_dir / "videos.parquet"),
            "--features",
            str(synthetic_dir / "features.parquet"),
            "--scenario",
            "originality",
            "--out",
            str(ds),
            *cfg,
        ]
    )
    manifest = json.loads((ds / "manifest.json").read_text())
    assert manifest["label_names"] == ["original", "reupload", "compilation", "ai_generated"]
    assert len(manifest["feature_names"]) == 32
    _ok(["train", "teacher", "--dataset", str(ds), "--out", str(tmp_path / "teacher"), "-q", *cfg, *sets])
    out = _ok(
        [
            "train",
            "distill",
            "--dataset",
            str(ds),
            "--teacher",
            str(tmp_path / "teacher"),
            "--out",
            str(tmp_path / "cpfd"),
            "-q",
            *cfg,
            *sets,
            "--set",
            "distill.weighting=max_prob",
        ]
    )
    assert "cpfd student saved" in out and "teacher outputs (oof)" in out
    assert "titles (validation split): 16 tokens, [UNK] 0.00 %, truncated 0.0 %" in out
    assert out.strip().splitlines()[-1].startswith("val_macro_f1=")  # what a Katib trial reads
    # out-of-fold outputs kept beside the teacher, with the fold teachers; reused by the next distillation
    stages = tmp_path / "teacher" / "outputs"
    (outputs,) = stages.glob("outputs-*/teacher_outputs.safetensors")
    (folds,) = stages.glob("folds-*")
    assert sorted(p.name for p in folds.iterdir()) == ["fold0", "fold1", "fold2"]
    kept = {p.name: p.stat().st_mtime_ns for p in stages.iterdir()}
    _ok(
        [
            "train",
            "distill",
            "--dataset",
            str(ds),
            "--teacher",
            str(tmp_path / "teacher"),
            "--out",
            str(tmp_path / "pfd"),
            "-q",
            *cfg,
            *sets,
            "--set",
            "distill.method=pfd",
        ]
    )
    meta = json.loads((tmp_path / "pfd" / "cpfd_model.json").read_text())
    assert meta["method"] == "pfd" and meta["spec"]["dense_features"] == []
    assert {p.name: p.stat().st_mtime_ns for p in stages.iterdir()} == kept  # nothing recomputed
    _ok(["evaluate", "--model", str(tmp_path / "cpfd"), "--dataset", str(ds), "--out", str(tmp_path / "m.json")])
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert 0 <= metrics["macro_f1"] <= 1 and len(metrics["confusion_matrix"]) == 4
    assert sum(map(sum, metrics["confusion_matrix"])) == manifest["rows"]["test"]


def test_config_show_resolves_defaults_file_and_overrides(tmp_path):
    import yaml

    path = tmp_path / "mine.yaml"
    path.write_text("scenarios:\n  - name: ads\n    label_names: [organic, ad]\n    distill: {weighting: true_class}\n")
    out = _ok(["config", "show", "--config", str(path), "--set", "train.lr=0.01", "--scenario", "ads"])
    shown = yaml.safe_load(out)
    assert shown["train"]["epochs"] == 20 and shown["train"]["lr"] == 0.01  # embedded default, then --set
    assert shown["distill"]["weighting"] == "true_class" and shown["distill"]["teacher_outputs"] == "oof"
    assert yaml.safe_load(_ok(["config", "show", "--config", str(path)]))["scenarios"][0]["name"] == "ads"


def _cpfd(*args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "cpfd.cli", *args], capture_output=True, text=True, timeout=120)


def test_version_and_short_help_exit_0():
    from importlib.metadata import version

    shown = _cpfd("--version")
    assert shown.returncode == 0 and shown.stdout.strip() == f"cpfd {version('cpfd')}", shown.stderr
    for args in (["-h"], ["train", "-h"], ["config", "show", "-h"]):
        helped = runner.invoke(app, args)
        assert helped.exit_code == 0 and "Usage:" in helped.output, (args, helped.output)
    assert "Exit codes: 0 done; 1 a check failed" in " ".join(runner.invoke(app, ["-h"]).output.split())


def test_a_misspelt_override_is_one_line_naming_the_set_item_exit_2():
    failed = _cpfd("config", "show", "--set", "train.epocs=3")
    assert failed.returncode == 2
    assert failed.stderr.strip() == "error: --set train.epocs=3: train.epocs: unknown field; did you mean train.epochs?"
