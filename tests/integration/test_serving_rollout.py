"""Promotion and rollback on a running `bentoml serve` under load: `cpfd experiment promote|rollback` writes a new
config version, the service takes the new shares without a restart, no request fails, and the prediction log
records the arm each request was served by."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests
import yaml

from tests.integration.serving_support import npy_bytes, package_students, write_config
from tests.servers import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
CLIENTS = 16


@pytest.fixture(scope="module")
def store(clickbait_data, tiny_project, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("rollout")
    home = root / "bentoml"
    package_students(clickbait_data, tiny_project.model, root / "m", home, {"clickbait": "cb-student"})
    return {"home": home}


def _cpfd(*args) -> None:
    env = {**os.environ, "CPFD_USER": "rollout-test"}
    done = subprocess.run(
        [sys.executable, "-m", "cpfd.cli.main", *map(str, args)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def _shares(url: str) -> dict:
    arms = requests.post(url + "/info", json={}, timeout=10).json()["scenarios"]["clickbait"]["arms"]
    return {a: v["traffic"] for a, v in arms.items()}


def test_promote_then_rollback_under_16_clients_fails_no_request(store, tmp_path):
    from cpfd.predlog import PredictionLog
    from cpfd.rollout import read_history
    from cpfd.serving.launch import ServerProcess

    config = write_config(tmp_path / "serving.yaml", {"clickbait": "cb-student"}, experiment="rollout")
    data = yaml.safe_load(config.read_text())
    data["scenarios"]["clickbait"]["arms"] = {  # one student behind both arms: the arm is what is under test
        "control": {"model": "cb-student", "traffic": 0.5},
        "treatment": {"model": "cb-student", "traffic": 0.5},
    }
    config.write_text(yaml.safe_dump(data))
    ids = itertools.count(1)
    results: list[tuple[float, int, int | None, str | None, str | None]] = []  # sent, video, status, arm, request
    stop = threading.Event()
    body = npy_bytes(np.zeros((2, 16, 16, 3), np.uint8))

    def client() -> None:
        session = requests.Session()
        while not stop.is_set():
            vid, sent = next(ids), time.monotonic()
            try:
                r = session.post(
                    server.url + "/classify_frames",
                    params={"scenario": "clickbait", "video_id": vid, "title": "a video"},
                    data=body,
                    headers={"Content-Type": "application/x-npy"},
                    timeout=60,
                )
                ok = r.status_code == 200
                results.append(
                    (sent, vid, r.status_code, r.json()["arm"] if ok else None, r.json()["request_id"] if ok else None)
                )
            except requests.RequestException:
                results.append((sent, vid, None, None, None))

    marks: dict[str, float] = {}
    env = {"BENTOML_HOME": str(store["home"])}
    with ServerProcess(config, log_path=tmp_path / "server.log", env=env, timeout=120) as server:
        threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
        for t in threads:
            t.start()
        try:
            time.sleep(3)
            marks["promote"] = time.monotonic()
            _cpfd("experiment", "promote", "--config", config, "--scenario", "clickbait", "--why", "better F1")
            wait_until(lambda: _shares(server.url)["treatment"] == 1.0, 30, "the promotion to be live")
            marks["promoted"] = time.monotonic()
            time.sleep(3)
            marks["rollback"] = time.monotonic()
            _cpfd("experiment", "rollback", "--config", config, "--scenario", "clickbait", "--why", "guardrail")
            wait_until(lambda: _shares(server.url)["control"] == 1.0, 30, "the rollback to be live")
            marks["rolled_back"] = time.monotonic()
            time.sleep(3)
        finally:
            stop.set()
            for t in threads:
                t.join()
    failed = [r for r in results if r[2] != 200]
    assert not failed, f"{len(failed)} of {len(results)} requests failed: {failed[:5]}"
    before = {r[3] for r in results if r[0] < marks["promote"]}
    promoted = {r[3] for r in results if marks["promoted"] < r[0] < marks["rollback"]}
    rolled_back = {r[3] for r in results if r[0] > marks["rolled_back"]}
    assert before == {"control", "treatment"} and promoted == {"treatment"} and rolled_back == {"control"}
    served = dict(
        PredictionLog(tmp_path / "predictions.db").read_predictions()[["request_id", "arm"]].itertuples(index=False)
    )
    assert {rid: arm for *_, arm, rid in results} == served  # the log's arm is the arm that answered
    assert [r["action"] for r in read_history(config)] == ["initial", "promote", "rollback"]
    assert "Traceback" not in (tmp_path / "server.log").read_text()
    print(f"{len(results)} requests from {CLIENTS} clients through a promotion and a rollback: 0 failed")
