"""Serving speed: a real `bentoml serve` on loopback, with and without adaptive batching, at
1, 8 and 32 concurrent clients (throughput, p50/p99 latency), next to the in-process batched
model call of the same model in the same run (the ceiling)."""

from __future__ import annotations

import base64
import http.client
import io
import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import yaml

from cpfd.config import read_yaml
from cpfd.serving_core import load_serving_config
from serving.launch import ServerProcess


def encode_png(frame: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


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


def load_clients(url: str, bodies: list[bytes], clients: int, seconds: float) -> dict:
    """``clients`` threads, each on one keep-alive connection, POST /classify until time is up."""
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
            body = bodies[i % len(bodies)]
            i += clients
            t = time.perf_counter()
            conn.request("POST", "/classify", body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
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


def run_serving_bench(
    config: str | Path,
    out: str | Path,
    scenario: str | None = None,
    seconds: float = 8.0,
    clients: Sequence[int] = (1, 8, 32),
    log=print,
) -> dict:
    from cpfd.serving_runtime import load_served_model, resolve_store_models

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = load_serving_config(config)
    scenario = scenario or next(iter(cfg.scenarios))
    arm, arm_cfg = next(iter(cfg.scenarios[scenario].arms.items()))
    tag, path = resolve_store_models([arm_cfg.model])[arm_cfg.model]
    import torch

    torch.set_num_threads(cfg.torch_threads)
    served = load_served_model(path, tag, scenario)
    ceil = ceiling(served, cfg.batching.max_batch_size, seconds)
    log(f"in-process ceiling ({tag}, batch {cfg.batching.max_batch_size}): {ceil:.0f} videos/s")

    rng = np.random.default_rng(1)
    bodies = []
    for i in range(256):
        frames, title = _video(served.spec, rng)
        bodies.append(
            json.dumps(
                {
                    "scenario": scenario,
                    "video_id": i,
                    "title": title,
                    "arm": arm,
                    "frames": [encode_png(f) for f in frames],
                }
            ).encode()
        )
    rows = []
    for batching in (True, False):
        raw = read_yaml("serving config", config)
        raw.setdefault("batching", {})["enabled"] = batching
        raw["prediction_log"] = str((out / f"predictions_{'batched' if batching else 'unbatched'}.db").resolve())
        bench_cfg = out / f"config_{'batched' if batching else 'unbatched'}.yaml"
        bench_cfg.write_text(yaml.safe_dump(raw))
        with ServerProcess(bench_cfg, log_path=out / "server.log") as server:
            load_clients(server.url, bodies[:8], 4, 1.0)  # warm-up
            for n in clients:
                r = {"batching": batching, **load_clients(server.url, bodies, n, seconds)}
                r["ratio_to_ceiling"] = r["throughput"] / ceil
                rows.append(r)
                log(
                    f"batching={batching!s:5} clients={n:2d}: {r['throughput']:7.1f} req/s  p50 {r['p50_ms']:6.1f} ms  "
                    f"p99 {r['p99_ms']:6.1f} ms  ratio {r['ratio_to_ceiling']:.2f}  status {r['status']}"
                )
    result = {"model_tag": tag, "scenario": scenario, "ceiling_videos_per_s": ceil, "seconds": seconds, "rows": rows}
    (out / "serving.json").write_text(json.dumps(result, indent=2))
    (out / "serving.md").write_text(to_markdown(result))
    log(to_markdown(result))
    return result


def to_markdown(result: dict) -> str:
    lines = [
        f"In-process batched model call ({result['model_tag']}): "
        f"{result['ceiling_videos_per_s']:.0f} videos/s (ceiling)",
        "",
        "| batching | clients | req/s | p50 ms | p99 ms | non-200 | / ceiling |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        bad = r["requests"] - r["ok"]
        lines.append(
            f"| {'adaptive' if r['batching'] else 'off'} | {r['clients']} | {r['throughput']:.1f} | "
            f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {bad} | {r['ratio_to_ceiling']:.0%} |"
        )
    top = [r for r in result["rows"] if r["batching"] and r["clients"] == max(x["clients"] for x in result["rows"])]
    if top:
        lines += [
            "",
            f"Adaptive batching at {top[0]['clients']} clients: {top[0]['ratio_to_ceiling']:.0%} of the ceiling "
            "(target >= 50%).",
        ]
    return "\n".join(lines) + "\n"
