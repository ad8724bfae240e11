"""`cpfd experiment`: plan from a reference, versioned ramp / promote / rollback with history, user errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def _serving(tmp_path: Path) -> Path:
    path = tmp_path / "serving.yaml"
    path.write_text(
        "# the team's comments stay in version 1\n"
        + yaml.safe_dump(
            {
                "experiment": "ab",
                "prediction_log": "predictions.db",
                "scenarios": {
                    "clickbait": {
                        "arms": {
                            "control": {"model": "cb-student", "traffic": 0.9},
                            "treatment": {"model": "cb-cpfd", "traffic": 0.1},
                        }
                    }
                },
            }
        )
    )
    return path


def _cli(*args):
    from typer.testing import CliRunner

    from cpfd.cli.main import app

    res = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


def _cpfd(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cpfd.cli.main", *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_ramp_promote_rollback_write_versions_with_history(tmp_path, monkeypatch):
    from cpfd.rollout import read_history, versions_dir
    from cpfd.serving.config import load_serving_config

    monkeypatch.setenv("CPFD_USER", "alice")
    cfg = _serving(tmp_path)
    original = cfg.read_text()
    _cli("experiment", "ramp", "--config", cfg, "--scenario", "clickbait", "--share", "0.5", "--why", "canary ok")
    assert {a: c.traffic for a, c in load_serving_config(cfg).scenarios["clickbait"].arms.items()} == {
        "control": 0.5,
        "treatment": 0.5,
    }
    _cli("experiment", "promote", "--config", cfg, "--scenario", "clickbait", "--why", "better", "--who", "bob")
    assert load_serving_config(cfg).scenarios["clickbait"].arms["treatment"].traffic == 1.0
    _cli("experiment", "rollback", "--config", cfg, "--scenario", "clickbait", "--why", "latency")
    assert load_serving_config(cfg).scenarios["clickbait"].arms["control"].traffic == 1.0
    history = read_history(cfg)
    assert [(r["version"], r["action"], r["who"]) for r in history] == [
        (1, "initial", "alice"),
        (2, "ramp", "alice"),
        (3, "promote", "bob"),
        (4, "rollback", "alice"),
    ]
    assert history[1]["traffic_before"] == {"control": 0.9, "treatment": 0.1} and history[1]["why"] == "canary ok"
    vdir = versions_dir(cfg)
    assert (vdir / "v0001.yaml").read_text() == original  # the file as it was, comments included
    assert (vdir / "v0004.yaml").read_text() == cfg.read_text()
    assert "v0003" in _cli("experiment", "history", "--config", cfg)


def test_plan_gives_labelled_predictions_per_arm_and_days(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 3000)
    pred = np.where(rng.random(3000) < 0.75, y, (y + rng.integers(1, 3, 3000)) % 3)
    ref = pd.DataFrame(
        {
            "scenario": "clickbait",
            "arm": "",
            "video_id": np.arange(3000),
            "label": y,
            "predicted": pred,
            "confidence": 0.8,
        }
    )
    ref.to_parquet(tmp_path / "ref.parquet", index=False)
    out = _cli(
        "experiment",
        "plan",
        "--scenario",
        "clickbait",
        "--min-effect",
        "0.02",
        "--reference",
        tmp_path / "ref.parquet",
        "--traffic-per-day",
        "10000",
        "--label-rate",
        "0.1",
    )
    n_control = int(out.split(" labelled predictions in control")[0].split(": ")[-1])
    # the fixed-horizon size for 0.02 at 80 % power is about 2 * 7.85 * var / 0.02^2; the sequence needs more
    assert 5000 < n_control < 40000, out
    assert "days at 10000 predictions/day" in out and "design_labelled" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["ramp", "--scenario", "nope", "--share", "0.5", "--why", "x"], "scenario 'nope' is not in"),
        (["ramp", "--scenario", "clickbait", "--share", "1.5", "--why", "x"], "--share must be between 0 and 1"),
        (["promote", "--scenario", "clickbait", "--why", " "], "--why is required"),
        (["promote", "--scenario", "clickbait", "--why", "x", "--treatment", "cpfd"], "no arm 'cpfd'"),
    ],
)
def test_user_errors_are_one_line_exit_2_and_change_nothing(tmp_path, args, message):
    cfg = _serving(tmp_path)
    before = cfg.read_text()
    out = _cpfd("experiment", *args, "--config", cfg)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and cfg.read_text() == before


def test_status_of_a_missing_state_folder_is_a_user_error(tmp_path):
    out = _cpfd("experiment", "status", "--state-dir", tmp_path / "none")
    assert out.returncode == 2 and "does not exist" in out.stderr and "Traceback" not in out.stderr


def test_status_prints_the_latest_look(tmp_path):
    from cpfd.monitoring.experiments import save_state

    look = {
        "until": "2026-01-02T00:00:00+00:00",
        "decision": "hold",
        "reason": "inconclusive",
        "f1": {"diff": 0.01, "low": -0.02, "high": 0.04, "status": "inconclusive"},
        "labelled": {"control": 900, "treatment": 910},
        "srm": {"status": "pass", "message": "sample ratio ok (p = 0.8)"},
        "guardrails": {"latency_p99": {"status": "pass"}},
    }
    state = {"scenario": "clickbait", "experiment": "ab", "start": "2026-01-01", "alpha": 0.05, "looks": [look]}
    save_state(tmp_path / "clickbait__ab.json", state)
    out = _cli("experiment", "status", "--state-dir", tmp_path)
    assert "decision HOLD" in out and "[-0.0200, +0.0400]" in out and "guardrail latency_p99: pass" in out
    assert json.loads(_cli("experiment", "status", "--state-dir", tmp_path, "--json"))["clickbait/ab"] == look
