"""The service's Prometheus metrics: predictions by scenario and arm, refusals by reason, and the exposition
that /metrics answers (every worker's values merged, no per-process label).

The framework's own request metrics are off (serving/service.py): they label each request by its raw path, so
probes of unknown paths would grow the label set. Every label here takes values from a fixed set. Metrics are
made on first use, after BentoML has set PROMETHEUS_MULTIPROC_DIR in the worker.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any


@cache
def _metrics() -> dict[str, Any]:
    from prometheus_client import Counter

    return {
        "predictions": Counter("cpfd_predictions", "videos classified", ["scenario", "arm"]),
        "rejected": Counter("cpfd_rejected_requests", "requests refused, by reason", ["reason"]),
    }


def count_prediction(scenario: str, arm: str) -> None:
    _metrics()["predictions"].labels(scenario=scenario, arm=arm).inc()


def count_rejection(reason: str) -> None:
    _metrics()["rejected"].labels(reason=reason).inc()


def exposition() -> tuple[bytes, str]:
    """The text format of every worker's metrics (their multiprocess files merged) and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

    _metrics()
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return generate_latest(registry), CONTENT_TYPE_LATEST
