"""serving/live.py: a running worker takes new traffic shares from its config file, and nothing else."""

from __future__ import annotations

import os

import pytest
import yaml

pytestmark = pytest.mark.unit


def _write(path, control: float, model: str = "cb-student", extra: dict | None = None) -> None:
    arms = {
        "control": {"model": "cb-student", "traffic": control},
        "treatment": {"model": model, "traffic": 1 - control},
    }
    path.write_text(yaml.safe_dump({"scenarios": {"clickbait": {"arms": arms}}, **(extra or {})}))
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a new mtime even within the clock's resolution


def test_traffic_reloads_other_changes_and_broken_files_are_refused(tmp_path, caplog):
    from cpfd.serving.arms import assign_arm
    from cpfd.serving.config import load_serving_config
    from cpfd.serving.live import LiveConfig

    path = tmp_path / "serving.yaml"
    _write(path, 0.5)
    live = LiveConfig(path, load_serving_config(path), interval_s=0)
    seen = []
    live.listeners.append(seen.append)
    _write(path, 0.0)
    assert live.current().scenarios["clickbait"].arms["treatment"].traffic == 1.0 and len(seen) == 1
    traffic = {a: c.traffic for a, c in live.current().scenarios["clickbait"].arms.items()}
    assert {assign_arm("e", v, traffic) for v in range(2000)} == {"treatment"}  # a zero share is never assigned
    _write(path, 0.3, model="another-model")
    assert live.current().scenarios["clickbait"].arms["treatment"].traffic == 1.0
    assert "changed beyond traffic shares" in caplog.text
    path.write_text("scenarios: [")
    assert live.current().scenarios["clickbait"].arms["treatment"].traffic == 1.0
    assert "was not reloaded" in caplog.text
    _write(path, 1.0)
    assert live.current().scenarios["clickbait"].arms["control"].traffic == 1.0 and live.reloads == 2
