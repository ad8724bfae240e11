"""The CPFD students behind one BentoML service: every configured scenario, A/B arms, a prediction log.

Quick start (from the repository root)::

    cpfd package --model runs/demo/clickbait/cpfd --name clickbait-cpfd      # into BENTOML_HOME
    cpfd serve --config serving/config.yaml --port 3000                      # or: make serve
    curl -s localhost:3000/classify -H 'content-type: application/json' \
         -d '{"scenario": "clickbait", "video_id": 42, "title": "...", "frames": ["<base64 PNG>", ...]}'

``cpfd serve`` runs ``bentoml serve serving.service:CpfdService`` with CPFD_SERVING_CONFIG set
(default: serving/config.yaml, which documents the format: experiment, per-scenario arms with
model tags and traffic shares, limits, batching, the prediction log). ``bentoml build -f
serving/bentofile.yaml .`` makes a bento that bundles the configured models.

Endpoints (POST, JSON):
- /classify        one video: {scenario, video_id, title, frames: [base64 JPEG/PNG], arm?}
                   (a scenario whose models read only titles needs no frames; one reading only
                   frames no title)
                   -> {label, probabilities {name: p}, confidence, scenario, arm, experiment,
                       model_tag, latency_ms, request_id, video_id, label_index}
- /classify_batch  {"videos": [...]} -> {"predictions": [...]}
- /info            served scenarios, arms, model tags, mean batch sizes, and a check that no
                   dense-feature code is loaded in this worker
plus BentoML's /readyz, /livez and /metrics (with cpfd_predictions and cpfd_rejected_requests).

The arm is the caller's ``arm`` or a stable hash of (experiment, video_id). Every answered video
is a row of the prediction log (committed before the answer). Bad input gets a 4xx whose "error"
names the field and limit, never a 5xx. The service never imports Feast (an import hook refuses
it) and its models take no dense feature (teachers are refused when loading).
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import TypeVar

import bentoml
from starlette.responses import JSONResponse

from cpfd.serving_core import (
    CONFIG_ENV,
    BatchRequest,
    BodyLimit,
    ServingInputError,
    VideoRequest,
    forbid_imports,
    forbidden_loaded,
    load_serving_config,
    validate_batch,
    validate_video,
)

forbid_imports()
CONFIG_PATH = Path(os.environ.get(CONFIG_ENV) or Path(__file__).with_name("config.yaml"))
CONFIG = load_serving_config(CONFIG_PATH)

PREDICTIONS = bentoml.metrics.Counter(
    name="cpfd_predictions", documentation="videos classified", labelnames=["scenario", "arm"]
)
REJECTED = bentoml.metrics.Counter(
    name="cpfd_rejected_requests", documentation="requests refused for bad input", labelnames=["status"]
)

T = TypeVar("T")


def _declare_models(cls: type[T]) -> type[T]:
    """Models named in the config are declared on the class, so `bentoml build` bundles them."""
    for i, tag in enumerate(CONFIG.model_tags()):
        setattr(cls, f"model_{i}", bentoml.models.BentoModel(tag))
    return cls


@bentoml.service(
    name="cpfd_students",
    workers=CONFIG.workers,
    traffic={"timeout": 30},
    logging={"access": {"enabled": CONFIG.access_log}},
)
@_declare_models
class CpfdService:
    def __init__(self) -> None:
        from cpfd.serving_runtime import Classifier, resolve_store_models

        self.cfg = CONFIG
        self.runtime = Classifier(CONFIG, resolve_store_models(CONFIG.model_tags()))

    def __is_ready__(self) -> bool:
        return bool(self.runtime.models)

    async def _answer(self, videos: list[VideoRequest], single: bool = False) -> list[dict] | JSONResponse:
        t0 = time.perf_counter()
        try:
            if single:
                valid = [await asyncio.to_thread(validate_video, videos[0], self.cfg, "video", self.runtime.modalities)]
            else:
                valid = await asyncio.to_thread(validate_batch, videos, self.cfg, self.runtime.modalities)
        except ServingInputError as e:
            REJECTED.labels(status=str(e.status)).inc()
            return JSONResponse({"error": str(e)}, status_code=e.status)
        answers = await self.runtime.classify(valid, t0)
        for a in answers:
            PREDICTIONS.labels(scenario=a["scenario"], arm=a["arm"]).inc()
        return answers

    @bentoml.api(route="/classify")
    async def classify(self, video: VideoRequest, /) -> dict:
        out = await self._answer([video], single=True)
        # BentoML sends a starlette Response as it is; the annotation is the API's schema.
        return out if isinstance(out, JSONResponse) else out[0]  # type: ignore[return-value]

    @bentoml.api(route="/classify_batch")
    async def classify_batch(self, request: BatchRequest, /) -> dict:
        out = await self._answer(request.videos)
        return out if isinstance(out, JSONResponse) else {"predictions": out}  # type: ignore[return-value]

    @bentoml.api(route="/info")
    def info(self) -> dict:
        return {
            **self.runtime.describe(),
            "config": str(CONFIG_PATH),
            "pid": os.getpid(),
            "forbidden_modules_loaded": forbidden_loaded(),
        }


# mypy does not apply a class decorator's return type (python/mypy#3135): CpfdService is a bentoml Service here.
CpfdService.add_asgi_middleware(BodyLimit, max_bytes=CONFIG.limits.max_request_bytes)  # type: ignore[attr-defined]
