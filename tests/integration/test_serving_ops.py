"""The service run as an operator runs it: `cpfd serve` and real HTTP, start-up faults, kill -9, memory, load
shedding, auth, readiness. Untrained tiny students (behaviour, not accuracy, is under test)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from tests.integration.serving_support import package_students, png_b64, read_only, write_config
from tests.servers import alive, descendants, free_port, port_is_free, wait_http

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TOKEN = "ops-test-token-0123456789"


@pytest.fixture(scope="module")
def store(clickbait_data, tiny_project, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("ops")
    home = root / "bentoml"
    tags = package_students(clickbait_data, tiny_project.model, root / "m", home, {"clickbait": "cb-student"})
    return {"home": home, "tag": tags["cb-student"]}


def cpfd_serve(config: Path, home: Path, port: int, **popen) -> subprocess.Popen:
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True", "CPFD_TEST_TOKEN": TOKEN}
    argv = [sys.executable, "-m", "cli.main", "serve", "--config", str(config), "--port", str(port)]
    return subprocess.Popen(argv, env=env, start_new_session=True, text=True, **popen)


def _break(fault: str, home: Path, tmp: Path, config: Path) -> tuple[str, list[Path]]:
    """Apply a start-up fault; returns the text its message must contain and the paths to make read-only."""
    (version,) = (home / "models" / "cb-student").glob("*/")
    weights, spec = version / "model.safetensors", version / "cpfd_model.json"
    if fault == "truncated weights":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size - 100])
        return f"{weights} is not a whole safetensors file", []
    if fault == "garbage weights":
        weights.write_bytes(np.random.default_rng(0).bytes(weights.stat().st_size))
        return f"{weights} is not a whole safetensors file", []
    if fault == "deleted spec":
        spec.unlink()
        return f"{spec} is missing", []
    if fault == "model not in the store":
        config.write_text(config.read_text().replace("cb-student", "cb-never-packaged"))
        return "model 'cb-never-packaged' is not in the BentoML model store", []
    log_dir = tmp / "log"
    log_dir.mkdir()
    config.write_text(config.read_text().replace("predictions.db", str(log_dir / "predictions.db")))
    return f"prediction log {log_dir / 'predictions.db'} is not writable", [log_dir]


@pytest.mark.parametrize(
    "fault", ["truncated weights", "garbage weights", "deleted spec", "model not in the store", "read-only log folder"]
)
def test_a_startup_fault_stops_cpfd_serve_within_30s_naming_the_file(store, tmp_path, fault):
    home = tmp_path / "bentoml"
    shutil.copytree(store["home"], home)
    config = write_config(tmp_path / "serving.yaml", {"clickbait": "cb-student"})
    needle, frozen = _break(fault, home, tmp_path, config)
    port = free_port()
    with read_only(*frozen):
        t0 = time.monotonic()
        proc = cpfd_serve(config, home, port, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"{fault}: cpfd serve still running after 30 s")
    assert time.monotonic() - t0 < 30
    assert proc.returncode == 3, err[-2000:]
    lines = [line for line in err.splitlines() if needle in line]
    assert len(lines) == 1 and lines[0].startswith("error: serving start-up failed: "), err[-2000:]
    assert "Traceback" not in err
    assert port_is_free(port)


def test_kill_9_of_cpfd_serve_leaves_no_process_and_frees_the_port(store, tmp_path):
    config = write_config(tmp_path / "serving.yaml", {"clickbait": "cb-student"})
    port = free_port()
    proc = cpfd_serve(config, store["home"], port, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", proc)
        tree = descendants(proc.pid)
        assert len(tree) >= 2  # bentoml serve and its worker
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 30
        while alive(tree) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert alive(tree) == [] and port_is_free(port)
    finally:
        for pid in alive(descendants(proc.pid)):
            os.kill(pid, signal.SIGKILL)


def test_the_test_helpers_server_dies_with_its_owner(store, tmp_path):
    config = write_config(tmp_path / "serving.yaml", {"clickbait": "cb-student"})
    port = free_port()
    code = (
        "import sys, time; from serving.launch import ServerProcess\n"
        f"with ServerProcess({str(config)!r}, port={port}, timeout=120):\n"
        "    print('ready', flush=True); time.sleep(600)\n"
    )
    env = {**os.environ, "BENTOML_HOME": str(store["home"]), "BENTOML_DO_NOT_TRACK": "True"}
    owner = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None and owner.stdout.readline().strip() == "ready"
        tree = descendants(owner.pid)
        assert tree
        owner.kill()
        owner.wait()
        deadline = time.monotonic() + 30
        while alive(tree) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert alive(tree) == [] and port_is_free(port)
    finally:
        owner.kill()


# ---- one guarded server: token, in-flight cap 2, the default pixel limits -----------------------


@pytest.fixture(scope="module")
def guarded(store, tmp_path_factory):
    from serving.launch import ServerProcess

    root = tmp_path_factory.mktemp("guarded")
    (root / "log").mkdir()
    config = write_config(
        root / "serving.yaml",
        {"clickbait": "cb-student"},
        prediction_log=str(root / "log" / "predictions.db"),
        auth={"token_env": "CPFD_TEST_TOKEN"},
        limits={"max_concurrent_requests": 2},
    )
    env = {"BENTOML_HOME": str(store["home"]), "CPFD_TEST_TOKEN": TOKEN}
    with ServerProcess(config, log_path=root / "server.log", env=env, timeout=120) as server:
        (worker,) = [
            p for p in descendants(server.proc.pid) if b"worker.service" in Path(f"/proc/{p}/cmdline").read_bytes()
        ]
        yield {"url": server.url, "root": root, "worker": worker, "log_dir": root / "log"}
    assert "Traceback" not in (root / "server.log").read_text()


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 1024


def bomb_frame() -> str:
    """A ~200-byte PNG that decodes to 1024 x 1024 RGB pixels (3 MiB)."""
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("1", (1024, 1024)).save(buf, format="PNG", optimize=True)
    assert len(buf.getvalue()) < 400
    return base64.b64encode(buf.getvalue()).decode()


def test_a_decompression_bomb_is_413_before_decoding_and_the_worker_stays_small(guarded):
    """The issue's request: 64 videos x 32 frames, each a tiny PNG of 1024 x 1024 pixels (6 GiB decoded)."""
    frame = bomb_frame()
    video = {"scenario": "clickbait", "title": "t", "frames": [frame] * 32}
    body = json.dumps({"videos": [{**video, "video_id": i} for i in range(64)]})
    assert len(body) < 1_000_000
    before = peak_rss_mb(guarded["worker"])
    for _ in range(3):
        r = requests.post(
            guarded["url"] + "/classify_batch",
            data=body,
            headers={**AUTH, "Content-Type": "application/json"},
            timeout=60,
        )
        assert r.status_code == 413 and "exceeds limit max_request_pixels=" in r.json()["error"], r.text
    r = requests.post(
        guarded["url"] + "/classify", json={**video, "video_id": 1, "frames": [frame] * 9}, headers=AUTH, timeout=60
    )
    assert r.status_code == 413 and "max_request_pixels" in r.json()["error"]
    assert peak_rss_mb(guarded["worker"]) - before < 200


def test_over_the_in_flight_cap_requests_get_503_with_retry_after(guarded):
    frames = [png_b64(np.full((32, 32, 3), 9, np.uint8))] * 8
    body = {"videos": [{"scenario": "clickbait", "video_id": i, "title": "t", "frames": frames} for i in range(8)]}
    start = threading.Barrier(24)
    answers: list[requests.Response] = []

    def client() -> None:
        start.wait()
        answers.append(requests.post(guarded["url"] + "/classify_batch", json=body, headers=AUTH, timeout=60))

    threads = [threading.Thread(target=client) for _ in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = [r.status_code for r in answers]
    assert set(codes) <= {200, 503} and codes.count(200) >= 2 and codes.count(503) >= 1, codes
    shed = [r for r in answers if r.status_code == 503]
    assert all(r.headers["Retry-After"] == "1" and "max_concurrent_requests=2" in r.json()["error"] for r in shed)


def test_the_token_guards_the_api_and_not_the_probes(guarded):
    url = guarded["url"]
    r = requests.post(url + "/classify", json={"scenario": "clickbait", "video_id": 1}, timeout=10)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
    assert requests.post(url + "/info", json={}, timeout=10).status_code == 401
    info = requests.post(url + "/info", json={}, headers=AUTH, timeout=10)
    assert info.status_code == 200 and "pid" not in info.json() and "config" not in info.json()
    assert str(guarded["root"]) not in info.text and "/models/" not in info.text
    for path in ("/livez", "/readyz", "/metrics"):
        assert requests.get(url + path, timeout=10).status_code == 200
    for i in range(20):
        assert requests.get(f"{url}/probe-{i}-zzz", timeout=10).status_code == 404
    metrics = requests.get(url + "/metrics", timeout=10).text
    assert 'cpfd_rejected_requests_total{reason="unauthorized"}' in metrics
    assert 'cpfd_rejected_requests_total{reason="not_found"} 20.0' in metrics
    assert "zzz" not in metrics  # unknown paths never become labels


def test_readyz_is_503_while_the_log_cannot_take_a_write(guarded):
    url, log_dir = guarded["url"], guarded["log_dir"]

    def readyz_becomes(status: int) -> bool:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if requests.get(url + "/readyz", timeout=10).status_code == status:
                return True
            time.sleep(0.3)
        return False

    with read_only(log_dir, log_dir / "predictions.db"):  # the folder and the file (the open WAL stays as it is)
        assert readyz_becomes(503)
        r = requests.post(url + "/classify", json={"scenario": "clickbait", "video_id": 1}, headers=AUTH, timeout=30)
        assert r.status_code < 500 or r.status_code == 503
    assert readyz_becomes(200)
    assert alive([guarded["worker"]])  # probing never crashed the worker
