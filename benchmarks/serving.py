"""Serving speed: real `bentoml serve` on loopback at 1, 8 and 32 concurrent clients (throughput, p50/p99 latency).

For each model size (untrained students: speed does not depend on the weights): JSON with base64 PNG frames
(/classify) and already-decoded frames as .npy (/classify_frames), next to the in-process batched model call of
the same model (the ceiling). In the same run, a no-op endpoint of the same framework (/noop) and BentoML's own
adaptive batching across services around a no-op model (/noop_batched, an upper bound of that design; see
benchmarks/noop_service.py)."""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import yaml

from cpfd.serving.launch import ServerProcess

Call = tuple[str, bytes, str]  # path (with query), body, content type
SCENARIO = "clickbait"
CEILING_BATCH = 64
NOOP_SERVICE = "cpfd.benchmarks.noop_service:NoopApi"


def encode_png(frame: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def encode_npy(frames: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, frames)
    return buf.getvalue()


def _video(spec, rng) -> tuple[np.ndarray, str]:
    frames = rng.integers(0, 256, (spec.num_frames, spec.image_size, spec.image_size, 3), dtype=np.uint8)
    return frames, " ".join(rng.choice(["ka", "lo", "mi", "ru", "te", "sa"], 6))


def ceiling(served, batch_size: int, seconds: float) -> float:
    """Videos/s of the in-process batched model call (preprocessing + forward), no HTTP."""
    rng = np.random.default_rng(0)
    items = [_video(served.spec, rng) for _ in range(batch_size)]
    served.predict(items)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        served.predict(items)
        n += batch_size
    return n / (time.perf_counter() - t0)


def load_clients(url: str, calls: Sequence[Call], clients: int, seconds: float) -> dict:
    """``clients`` threads, each on one keep-alive connection, POST the calls in turn until time is up."""
    host, port = url.removeprefix("http://").split(":")
    lat: list[float] = []
    status: dict[int, int] = {}
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def worker(k: int) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        mine: list[float] = []
        codes: dict[int, int] = {}
        i = k
        while time.perf_counter() < stop:
            path, body, content_type = calls[i % len(calls)]
            i += clients
            t = time.perf_counter()
            conn.request("POST", path, body, {"Content-Type": content_type})
            resp = conn.getresponse()
            resp.read()
            if resp.getheader("connection", "").lower() == "close":
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=60)
            mine.append(time.perf_counter() - t)
            codes[resp.status] = codes.get(resp.status, 0) + 1
        conn.close()
        with lock:
            lat.extend(mine)
            for c, v in codes.items():
                status[c] = status.get(c, 0) + v

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ms = np.array(lat) * 1000 if lat else np.zeros(1)
    ok = status.get(200, 0)
    return {
        "clients": clients,
        "requests": len(lat),
        "ok": ok,
        "status": status,
        "throughput": ok / wall,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
    }


def build_students(out: Path, sizes: Sequence[str], log=print) -> dict[str, Path]:
    """One untrained student per size, saved under ``out`` and packaged into ``out/bentoml`` as bench-<size>."""
    from cpfd.benchmarks.synthetic import generate
    from cpfd.config import load_config
    from cpfd.data.build import build_scenario_dataset
    from cpfd.data.tensors import prepare_data
    from cpfd.models import save_model
    from cpfd.training.recipes import new_model

    generate(out / "data", videos_per_scenario=40, seed=0, scenarios=[SCENARIO])
    folders = {}
    for size in sizes:
        project = load_config(out / "data" / "scenarios.yaml", [f"model.size={size}"])
        ds = out / "datasets" / size
        build_scenario_dataset(
            out / "data" / "videos.parquet", out / "data" / "features.parquet", SCENARIO, project, ds
        )
        data = prepare_data(ds, project.model)
        folders[size] = save_model(
            new_model(data, project.model, "student", 0),
            out / "models" / size,
            data.tokenizer,
            {"role": "student", "scenario": SCENARIO},
        )
    code = (
        "import sys; from pathlib import Path; from cpfd.components.packaging import package_model\n"
        "for d in sys.argv[1:]:\n    package_model(d, 'bench-' + Path(d).name)"
    )
    env = {**os.environ, "BENTOML_HOME": str(out / "bentoml"), "BENTOML_DO_NOT_TRACK": "True"}
    subprocess.run([sys.executable, "-c", code, *map(str, folders.values())], check=True, env=env, timeout=300)
    log(f"students {list(sizes)} packaged into {out / 'bentoml'}")
    return folders


def write_config(out: Path, size: str, max_clients: int) -> Path:
    """One scenario, one arm, the in-flight cap above the client count (the benchmark measures speed, not shedding)."""
    config = out / f"serving_{size}.yaml"
    cfg = {
        "experiment": "bench",
        "scenarios": {SCENARIO: {"arms": {"control": {"model": f"bench-{size}", "traffic": 1.0}}}},
        "limits": {"max_concurrent_requests": 2 * max_clients},
        "prediction_log": str((out / f"predictions_{size}.db").resolve()),
    }
    config.write_text(yaml.safe_dump(cfg))
    return config


def video_calls(spec, n: int = 256) -> dict[str, list[Call]]:
    """The same ``n`` videos as /classify JSON with PNG frames and as /classify_frames .npy bodies."""
    rng = np.random.default_rng(1)
    json_calls, npy_calls = [], []
    for i in range(n):
        frames, title = _video(spec, rng)
        fields = {"scenario": SCENARIO, "video_id": i, "title": title, "arm": "control"}
        body = json.dumps({**fields, "frames": [encode_png(f) for f in frames]}).encode()
        json_calls.append(("/classify", body, "application/json"))
        npy_calls.append((f"/classify_frames?{urlencode(fields)}", encode_npy(frames), "application/x-npy"))
    return {"json+png": json_calls, "npy": npy_calls}


def run_serving_bench(
    out: str | Path,
    sizes: Sequence[str] = ("tiny", "small"),
    seconds: float = 8.0,
    clients: Sequence[int] = (1, 8, 32),
    log=print,
) -> dict:
    import torch

    from cpfd.serving.runtime import load_served_model

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    folders = build_students(out, sizes, log)
    env = {"BENTOML_HOME": str(out / "bentoml")}
    torch.set_num_threads(1)  # as the server's default torch_threads
    rows, ceilings = [], {}
    for size in sizes:
        served = load_served_model(folders[size], f"bench-{size}", SCENARIO)
        ceilings[size] = ceiling(served, CEILING_BATCH, seconds)
        log(f"{size}: in-process ceiling (batch {CEILING_BATCH}) {ceilings[size]:.0f} videos/s")
        config = write_config(out, size, max(clients))
        with ServerProcess(config, log_path=out / f"server_{size}.log", env=env, timeout=180) as server:
            for endpoint, calls in video_calls(served.spec).items():
                load_clients(server.url, calls[:8], 4, 1.0)  # warm-up
                for n in clients:
                    rows.append(_row(size, endpoint, load_clients(server.url, calls, n, seconds), log))
    noop = [
        ("/noop", json.dumps({"scenario": SCENARIO, "video_id": i, "title": "ka lo"}).encode(), "application/json")
        for i in range(64)
    ]
    config = write_config(out, sizes[0], max(clients))
    with ServerProcess(config, log_path=out / "server_noop.log", env=env, timeout=180, service=NOOP_SERVICE) as server:
        for path in ("/noop", "/noop_batched"):
            calls = [(path, body, kind) for _, body, kind in noop]
            load_clients(server.url, calls, 4, 1.0)
            for n in clients:
                rows.append(_row("-", path, load_clients(server.url, calls, n, seconds), log))
    result = {"ceilings": ceilings, "seconds": seconds, "rows": rows, "load": os.getloadavg()}
    (out / "serving.json").write_text(json.dumps(result, indent=2))
    (out / "serving.md").write_text(to_markdown(result))
    log(to_markdown(result))
    return result


def _row(size: str, endpoint: str, r: dict, log) -> dict:
    row = {"size": size, "endpoint": endpoint, **r}
    log(
        f"{size:5} {endpoint:13} clients={r['clients']:2d}: {r['throughput']:7.1f} req/s  p50 {r['p50_ms']:6.1f} ms  "
        f"p99 {r['p99_ms']:6.1f} ms  status {r['status']}"
    )
    return row


def to_markdown(result: dict) -> str:
    rows, ceilings = result["rows"], result["ceilings"]
    noop = {r["clients"]: r["throughput"] for r in rows if r["endpoint"] == "/noop"}
    top = max(r["clients"] for r in rows)
    lines = [
        "| model | endpoint | clients | req/s | p50 ms | p99 ms | non-200 | / ceiling | / no-op |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ceil = ceilings.get(r["size"])
        ratio = f"{r['throughput'] / ceil:.0%}" if ceil else "-"
        lines.append(
            f"| {r['size']} | {r['endpoint']} | {r['clients']} | {r['throughput']:.1f} | {r['p50_ms']:.1f} | "
            f"{r['p99_ms']:.1f} | {r['requests'] - r['ok']} | {ratio} | {r['throughput'] / noop[r['clients']]:.0%} |"
        )
    lines += ["", f"In-process ceilings (batched model call, batch {CEILING_BATCH}): "]
    lines[-1] += ", ".join(f"{size} {c:.0f} videos/s" for size, c in ceilings.items())
    for size, ceil in ceilings.items():
        (npy,) = [r for r in rows if r["size"] == size and r["endpoint"] == "npy" and r["clients"] == top]
        lines.append(
            f"- {size}, .npy at {top} clients: {npy['throughput'] / ceil:.0%} of the ceiling, "
            f"{npy['throughput'] / noop[top]:.0%} of the no-op endpoint, p99/p50 {npy['p99_ms'] / npy['p50_ms']:.1f}"
        )
    load = result.get("load")
    if load:
        lines.append(f"- machine load average during the run: {load[0]:.2f} (1 min), {load[1]:.2f} (5 min)")
    return "\n".join(lines) + "\n"
