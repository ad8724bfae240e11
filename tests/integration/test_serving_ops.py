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
from tests.servers import alive, descendants, free_port, port_is_free, wait_http, wait_until

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
    argv = [sys.executable, "-m", "cpfd.cli.main", "serve", "--config", str(config), "--port", str(port)]
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
        "import sys, time; from cpfd.serving.launch import ServerProcess\n"
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
    from cpfd.serving.launch import ServerProcess

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
        (worker,) = workers_of(server)
        yield {"url": server.url, "root": root, "worker": worker, "log_dir": root / "log"}
    assert "Traceback" not in (root / "server.log").read_text()


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def workers_of(server) -> list[int]:
    """The pids of a `bentoml serve`'s service workers."""
    return [p for p in descendants(server.proc.pid) if b"worker.service" in Path(f"/proc/{p}/cmdline").read_bytes()]


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) / 1024


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


def _raw_request(url: str, head: bytes, timeout: float = 30.0) -> bytes:
    """Send raw bytes on a new connection; the answer, read until the server closes it (at most 64 KB)."""
    import socket

    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(head)
        out = b""
        while len(out) < 65536 and (chunk := s.recv(4096)):
            out += chunk
        return out


def test_slow_bodies_on_every_slot_do_not_starve_normal_requests(guarded):
    """Twice max_concurrent_requests connections each send a Content-Length of 1000 and one byte of body: normal
    requests are still answered within 1 s (a slot is taken only once a body has arrived)."""
    import socket

    url = guarded["url"]
    host, port = url.removeprefix("http://").split(":")
    head = (
        f"POST /classify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
    ).encode()
    slow = []
    try:
        for _ in range(4):
            s = socket.create_connection((host, int(port)), timeout=30)
            s.sendall(head)
            slow.append(s)
        time.sleep(0.5)
        frames = [png_b64(np.full((32, 32, 3), 9, np.uint8))] * 2
        video = {"scenario": "clickbait", "video_id": 7, "title": "t", "frames": frames}
        for path, body in [("/info", {}), ("/classify", video)] * 3:
            t0 = time.monotonic()
            r = requests.post(url + path, json=body, headers=AUTH, timeout=10)
            assert r.status_code == 200 and time.monotonic() - t0 < 1.0, (path, r.status_code, r.text[:200])
        assert requests.get(url + "/readyz", timeout=10).status_code == 200
    finally:
        for s in slow:
            s.close()


def _oversized_headers(url: str, clients: int, mb: int) -> list[bytes]:
    head = b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (mb << 20) + b"\r\n\r\n"
    answers: list[bytes] = []
    threads = [threading.Thread(target=lambda: answers.append(_raw_request(url, head, 60))) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def test_an_oversized_header_gets_431_and_the_worker_memory_stays_bounded(guarded):
    """Six rounds of four concurrent 20 MB headers on /livez: each a 431 naming max_header_bytes. uvicorn (under
    BentoML, which passes it no header limit) buffers a header in full before the gate sees it: the worker's
    resident memory (freed, kept by the allocator for reuse) grows by less than 5x the bytes of the headers in
    flight at once (80 MB here), whatever the number of rounds."""
    url, worker = guarded["url"], guarded["worker"]
    sizes = [rss_mb(worker)]
    for _ in range(6):
        answers = _oversized_headers(url, 4, 20)
        assert len(answers) == 4 and all(a.startswith(b"HTTP/1.1 431") for a in answers), [a[:80] for a in answers]
        assert all(b"exceeds limit max_header_bytes=16384" in a and b"aaaa" not in a for a in answers)
        time.sleep(0.5)
        sizes.append(rss_mb(worker))
    grown = [round(x - sizes[0]) for x in sizes[1:]]
    print(f"RSS growth after each round of 4 x 20 MB headers (MB): {grown}")
    assert max(grown) < 5 * 80, grown
    assert requests.get(url + "/livez", timeout=10).status_code == 200


def _probe(url: str, path: str, results: list, stop: threading.Event, t_kill: list[float], **kw) -> None:
    """POST ``path`` on a new connection each time until ``stop``: (sent after the kill in s, latency, status)."""
    while not stop.is_set():
        t = time.monotonic()
        try:
            code: int | None = requests.post(url + path, json={}, timeout=60, **kw).status_code
        except requests.RequestException:
            code = None
        results.append((t - t_kill[0] if t_kill else -1.0, time.monotonic() - t, code))
        time.sleep(0.05)


def _crash_run(server, clients: int, after_s: float, headers: dict | None = None) -> list[tuple]:
    """``clients`` probes of /info; kill -9 of the first worker; probing goes on until a 200 was sent more than
    ``after_s`` after the kill. Returns the probes."""
    results: list[tuple] = []
    stop, t_kill = threading.Event(), []
    threads = [
        threading.Thread(target=_probe, args=(server.url, "/info", results, stop, t_kill), kwargs={"headers": headers})
        for _ in range(clients)
    ]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        worker = workers_of(server)[0]
        t_kill.append(time.monotonic())
        os.kill(worker, signal.SIGKILL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any(t > after_s and c == 200 for t, _, c in list(results)):
            time.sleep(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join()
    return [r for r in results if r[0] >= 0]


def test_after_a_worker_crash_requests_get_503_fast_until_its_models_are_back(store, tmp_path):
    """workers: 1 and kill -9 of the worker: the supervisor starts another; from the moment it listens, requests
    get 503 + Retry-After within 1 s (never a queue) until its models are loaded. The window is measured."""
    from cpfd.serving.launch import ServerProcess

    config = write_config(tmp_path / "serving.yaml", {"clickbait": "cb-student"})
    with ServerProcess(config, log_path=tmp_path / "server.log", env={"BENTOML_HOME": str(store["home"])}) as server:
        after = _crash_run(server, clients=2, after_s=0.0)
        assert requests.get(server.url + "/readyz", timeout=10).status_code == 200
    codes = {c for _, _, c in after}
    assert codes <= {200, 503, None}, codes
    first_ok = min(t for t, _, c in after if c == 200)
    refused = [(t, lat) for t, lat, c in after if c == 503]
    listening = min((t + lat for t, lat in refused), default=first_ok)  # the new worker's first answer
    quick = [lat for t, lat in refused if t >= listening]
    assert all(lat < 1.0 for lat in quick), quick
    lost = [t for t, _, c in after if c is None]
    assert all(t < 0.5 for t in lost), lost  # only requests in flight at the kill
    print(
        f"restart window {first_ok:.1f} s: nothing listening {listening:.1f} s (requests queued), then "
        f"{len(quick)} requests answered 503 within 1 s for {first_ok - listening:.1f} s while the models loaded"
    )
    assert first_ok < 60 and "Traceback" not in (tmp_path / "server.log").read_text()


def test_with_two_workers_a_crash_costs_only_its_own_in_flight_requests(store, tmp_path):
    from cpfd.serving.launch import ServerProcess

    config = write_config(tmp_path / "serving.yaml", {"clickbait": "cb-student"}, workers=2)
    with ServerProcess(config, log_path=tmp_path / "server.log", env={"BENTOML_HOME": str(store["home"])}) as server:
        assert len(workers_of(server)) == 2
        after = _crash_run(server, clients=4, after_s=8.0)
        back = wait_until(lambda: len(workers_of(server)) == 2, 60, "the restarted worker")
    failed = [(t, c) for t, _, c in after if c != 200]
    assert len(failed) <= 4 and all(t < 0.5 for t, _ in failed), failed  # at most one in flight per client
    slow = sorted(lat for _, lat, c in after if c == 200)[-3:]
    print(
        f"2 workers, one killed: {len(after)} requests, {len(failed)} lost, slowest answers {slow}, "
        f"the worker back {back:.1f} s after the probes"
    )
    assert len(after) > 40
