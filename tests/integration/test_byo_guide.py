"""docs/bring_your_own_data.md, run as written: every `cpfd` and `curl` line of its bash blocks, in order, on
tables built here (tests/byo_data.py, not the synthetic generator's), with the guide's own scenarios YAML.

Only speed-ups are added to that YAML (two epochs, two folds, a gate every scenario passes, so that both are
served); a text-only scenario goes through the local Kubeflow pipeline and is served without frames."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cpfd.config import deep_merge
from tests.byo_data import CONFIG, write_byo_tables
from tests.servers import free_port, wait_http

pytestmark = [pytest.mark.integration, pytest.mark.slow]
GUIDE = Path(__file__).resolve().parents[2] / "docs" / "bring_your_own_data.md"
SPEED_UPS = {
    "train": {"epochs": 2, "batch_size": 32, "threads": 1},
    "distill": {"folds": 2},
}
PERMISSIVE_GATE = {"min_gain_over_baseline": -1.0, "max_gap_to_teacher": 1.0}


def guide_blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", GUIDE.read_text(), flags=re.S)


def guide_commands() -> list[str]:
    """The guide's `cpfd ...` and `curl ...` lines, continuation lines joined; `export` lines are the test's env."""
    commands = []
    for block in guide_blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = " ".join(line.split())
            if line.startswith(("cpfd ", "curl ")):
                commands.append(line)
    return commands


def _wait_ready(port: int, server: subprocess.Popen, timeout: float = 180.0) -> None:
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", server, timeout)
    except AssertionError as e:
        stderr = server.stderr.read()[-2000:] if server.poll() is not None and server.stderr else ""
        raise AssertionError(f"cpfd serve: {e} {stderr}") from None


def test_the_guides_yaml_declares_what_the_tables_hold():
    (config,) = guide_blocks("yaml")
    declared = yaml.safe_load(config)
    assert declared["feature_store"] == CONFIG["feature_store"]
    keys = ("name", "label_names", "feature_service", "modalities")
    strip = [{k: s[k] for k in keys if k in s} for s in declared["scenarios"]]
    assert strip == [{k: s[k] for k in keys if k in s} for s in CONFIG["scenarios"]]


def test_every_command_of_the_guide(tmp_path):
    data, runs, port = tmp_path / "my_data", tmp_path / "runs" / "byo", free_port()
    write_byo_tables(data)
    (config,) = guide_blocks("yaml")
    scenarios_yaml = deep_merge(yaml.safe_load(config), SPEED_UPS)
    for s in scenarios_yaml["scenarios"]:
        s["gate"] = PERMISSIVE_GATE
    (data / "scenarios.yaml").write_text(yaml.safe_dump(scenarios_yaml))
    env = {
        **os.environ,
        "DATA": str(data),
        "RUNS": str(runs),
        "PORT": str(port),
        "BENTOML_HOME": str(runs / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "True",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # this venv's `cpfd`
    }
    commands = guide_commands()
    assert [c.split()[1] for c in commands if c.startswith("cpfd ")] == [
        "config",
        "features",
        "dataset",
        "dataset",
        "pipeline",
        "models",
        "serve",
        "simulate",
        "monitor",
    ]
    server = None
    outputs = {}
    try:
        for command in commands:
            if command.endswith("&"):
                server = subprocess.Popen(
                    ["bash", "-c", "exec " + command.rstrip("&")],
                    cwd=tmp_path,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                    start_new_session=True,
                )
                _wait_ready(port, server)
                continue
            done = subprocess.run(
                ["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
            )
            outputs[command.split()[1] if command.startswith("cpfd") else "curl"] = done
            allowed = (0, 1) if command.startswith("cpfd monitor") else (0,)  # 1 = a monitoring check failed
            assert done.returncode in allowed, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            assert "Traceback" not in done.stderr, done.stderr
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)

    assert yaml.safe_load(outputs["config"].stdout)["scenario"]["modalities"] == ["title"]
    manifest = json.loads((runs / "datasets" / "topic" / "manifest.json").read_text())
    assert manifest["feature_names"] == ["t_channel_score", "t_click_rate"] and manifest["modalities"] == ["title"]
    served = yaml.safe_load((runs / "pipeline" / "serving" / "config.yaml").read_text())
    assert set(served["scenarios"]) == {"moderation", "topic"}
    # the service's store was empty before the import: every served model came through the run's artifacts
    imported = outputs["models"].stdout
    for scenario in served["scenarios"].values():
        for arm in scenario["arms"].values():
            assert f"{arm['model']}: imported" in imported
            name, version = arm["model"].split(":")
            assert (runs / "bentoml" / "models" / name / version / "model.safetensors").exists()
    answer = json.loads(outputs["curl"].stdout)  # topic, answered without frames
    assert answer["scenario"] == "topic" and answer["label"] in ("sports", "music", "politics")
    summary = json.loads((runs / "monitoring" / "summary.json").read_text())
    assert set(summary["scenarios"]) == {"moderation", "topic"}
    assert (runs / "monitoring" / "index.html").exists()
