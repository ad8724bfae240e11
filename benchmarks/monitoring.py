"""Monitoring job time on a large prediction log: N predictions across S scenarios, two arms,
delayed labels on part of them, and an offline reference per scenario. Also the controlled
traffic generator the monitoring tests use."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from cpfd.conventions import ARMS

START = datetime(2026, 6, 1, tzinfo=UTC)


def _draw(n: int, k: int, accuracy: float, rng: np.random.Generator, drift: float) -> tuple[np.ndarray, ...]:
    """True class, predicted class and top-class confidence; ``drift`` > 0 lowers confidence only."""
    y = rng.integers(0, k, n)
    correct = rng.random(n) < accuracy
    pred = np.where(correct, y, (y + rng.integers(1, k, n)) % k)
    a, b = np.where(correct, 6.0, 3.0), np.where(correct, 2.0, 3.0)
    raw = rng.beta(a * (1 - drift) + 1.0 * drift, b * (1 - drift) + 4.0 * drift)
    return y, pred, 1.0 / k + (1 - 1.0 / k) * raw


def make_traffic(
    scenarios: dict[str, int],
    n_per_arm: int,
    seed: int = 0,
    accuracy: dict[str, float] | None = None,
    drift: dict[str, float] | None = None,
    label_share: float = 0.5,
    reference_n: int = 1000,
    reference_accuracy: float = 0.8,
    arms: tuple[str, ...] = ARMS,
    start: datetime = START,
    hours: float = 24.0,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Controlled (predictions, labels, reference) for scenarios {name: num_classes}.

    Predictions are in the prediction-log schema (``label`` = predicted class); ``accuracy`` per arm
    (default 0.8), ``drift`` per scenario (0..1, lowers the confidence of both arms).
    """
    rng = np.random.default_rng(seed)
    accuracy, drift = accuracy or {}, drift or {}
    preds, labels, refs = [], [], []
    for si, (s, k) in enumerate(scenarios.items()):
        y, p, c = _draw(reference_n, k, reference_accuracy, rng, 0.0)
        refs.append(
            pd.DataFrame(
                {
                    "scenario": s,
                    "arm": "",
                    "video_id": np.arange(reference_n) + 10**9,
                    "label": y,
                    "predicted": p,
                    "confidence": c,
                }
            )
        )
        for ai, arm in enumerate(arms):
            y, p, c = _draw(n_per_arm, k, accuracy.get(arm, 0.8), rng, drift.get(s, 0.0))
            vid = (si + 1) * 10**8 + ai * 10**7 + np.arange(n_per_arm)
            ts = pd.to_datetime(start) + pd.to_timedelta(np.sort(rng.uniform(0, hours * 3600, n_per_arm)), unit="s")
            preds.append(
                pd.DataFrame(
                    {
                        "request_id": [f"{s}-{arm}-{i}" for i in range(n_per_arm)],
                        "ts": ts.map(lambda t: t.isoformat(timespec="microseconds")),
                        "experiment": "ab",
                        "scenario": s,
                        "arm": arm,
                        "model_tag": f"{s}_{arm}:v1",
                        "video_id": vid,
                        "label": p,
                        "confidence": c,
                        "latency_ms": 5.0,
                        "true_label": y,
                    }
                )
            )
            lab = rng.random(n_per_arm) < label_share
            labels.append(pd.DataFrame({"video_id": vid[lab], "scenario": s, "label": y[lab]}))
    return pd.concat(preds, ignore_index=True), pd.concat(labels, ignore_index=True), pd.concat(refs, ignore_index=True)


def write_traffic(log, preds: pd.DataFrame, labels: pd.DataFrame, chunk: int = 200_000) -> None:
    """Append the predictions (probabilities: the confidence on the predicted class, the rest spread) and labels."""
    k = preds.groupby("scenario")["label"].transform("max").to_numpy() + 1
    for lo in range(0, len(preds), chunk):
        part = preds.iloc[lo : lo + chunk]
        rows = part.drop(columns=["true_label"]).to_dict("records")
        for r, kk in zip(rows, k[lo : lo + chunk], strict=True):
            kk = max(int(kk), 2)
            rest = (1 - r["confidence"]) / (kk - 1)
            r["probabilities"] = [r["confidence"] if j == r["label"] else rest for j in range(kk)]
        log.append(rows)
    for lo in range(0, len(labels), chunk):
        log.write_labels(labels.iloc[lo : lo + chunk].to_dict("records"))


def run_monitoring_bench(n: int, n_scenarios: int, out: Path, log=print) -> dict:
    """Fill a SQLite prediction log with n predictions, then time the whole monitoring job."""
    from cpfd.monitoring.analysis import run_monitor
    from cpfd.predlog import PredictionLog

    out.mkdir(parents=True, exist_ok=True)
    db = out / f"predictions_{n}_{n_scenarios}.db"
    scenarios = {f"scenario_{i:02d}": 2 + i % 3 for i in range(n_scenarios)}
    per_arm = n // (2 * n_scenarios)
    if db.exists() and PredictionLog(db).count() == per_arm * 2 * n_scenarios:  # same seed: the same log
        log(f"reusing {db}")
    else:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        t = time.perf_counter()
        preds, labels, reference = make_traffic(scenarios, per_arm, seed=0, drift={"scenario_00": 0.5}, label_share=0.3)
        reference.to_parquet(out / "reference.parquet", index=False)
        write_traffic(PredictionLog(db), preds, labels)
        log(
            f"wrote {len(preds)} predictions and {len(labels)} labels across {n_scenarios} scenarios "
            f"({time.perf_counter() - t:.0f}s, not timed)"
        )
    t, cpu = time.perf_counter(), time.process_time()
    summary = run_monitor(
        db, out / "reference.parquet", START.isoformat(), (START + timedelta(days=2)).isoformat(), out / "report"
    )
    seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    load = os.getloadavg()[0]
    result = {
        "predictions": int(summary["n_predictions"]),
        "labelled": int(summary["n_labelled"]),
        "scenarios": n_scenarios,
        "seconds": round(seconds, 1),
        "cpu_seconds": round(cpu, 1),
        "load_average_1min": round(load, 1),
        "stages": summary["seconds"],
        "status": summary["status"],
        "failed_checks": summary["failed_checks"],
    }
    (out / "monitoring_bench.json").write_text(json.dumps(result, indent=2))
    log(
        f"monitoring job: {result['predictions']} predictions, {n_scenarios} scenarios: {seconds:.1f}s wall, "
        f"{cpu:.1f}s CPU (load average {load:.1f} on {os.cpu_count()} cores) "
        f"(stages {summary['seconds']}); status {summary['status']} (drift injected in scenario_00: "
        f"{', '.join(result['failed_checks'])})"
    )
    return result
