"""The CPFD students behind one BentoML service: every configured scenario, A/B arms, a prediction log.

Quick start (from the repository root)::

    cpfd package --model runs/demo/clickbait/cpfd --name clickbait-cpfd      # into BENTOML_HOME
    cpfd serve --config serving/config.yaml --port 3000                      # or: make serve
    curl -s localhost:3000/classify -H 'content-type: application/json' \\
         -d '{"scenario": "clickbait", "video_id": 42, "title": "...", "frames": ["<base64 PNG>", ...]}'

``cpfd serve`` runs ``bentoml serve serving.service:CpfdService`` with CPFD_SERVING_CONFIG set
(default: serving/config.yaml, which documents the format: experiment, per-scenario arms with
model tags and traffic shares, limits, batching, auth, the prediction log) and stops it when a
start-up fault is reported. ``bentoml build -f serving/bentofile.yaml .`` makes a bento that
bundles the configured models.

Endpoints (the OpenAPI document at /docs.json states every constraint and status):
- POST /classify         one video, JSON: {scenario, video_id, title, frames: [base64 JPEG/PNG], arm?}
                         (a scenario whose models read only titles needs no frames; one reading only
                         frames no title)
                         -> {label, probabilities {name: p}, confidence, scenario, arm, experiment,
                             model_tag, latency_ms, request_id, video_id, label_index}
- POST /classify_batch   {"videos": [...]} -> {"predictions": [...]}
- POST /classify_frames  one video whose frames are already decoded: the body is a .npy of uint8
                         [frames, height, width, 3] (Content-Type: application/x-npy), the other
                         fields are query parameters (?scenario=...&video_id=...&title=...&arm=...)
- POST /info             served scenarios, arms, model tags, modalities, mean batch sizes, and a
                         check that no dense-feature code is loaded in this worker
- GET /livez, /readyz (503 while a model is missing or the log cannot take a write), /metrics
  (cpfd_predictions, cpfd_rejected_requests by reason), /docs.json

serving/gate.py applies the transport rules first (allowlisted paths, JSON only, size and time
limits, bearer token, in-flight cap, X-Request-ID). The arm is the caller's ``arm`` or a stable
hash of (experiment, video_id). Every answered video is a row of the prediction log, committed
before the answer, with the request's id. Bad input gets a 4xx whose "error" names the field and
limit, never a 5xx. The service never imports Feast (an import hook refuses it) and its models
take no dense feature (teachers are refused when loading).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import bentoml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route as StarletteRoute

from cpfd.errors import CpfdError
from cpfd.predlog import open_log
from serving.config import CONFIG_ENV, load_serving_config
from serving.gate import Gate, Rejection, Route, error_payload, log_rejection
from serving.guards import forbid_imports, forbidden_loaded
from serving.launch import die_with_parent, startup_fault
from serving.openapi import build_spec
from serving.schemas import BatchRequest, InfoRequest, ServingInputError, VideoRequest, parse_query
from serving.startup import resolve_store_models
from serving.videos import ValidVideo, validate_batch, validate_frames, validate_video

forbid_imports()
CONFIG_PATH = Path(os.environ.get(CONFIG_ENV) or Path(__file__).with_name("config.yaml"))
try:  # every cheap start-up check, here so that `bentoml serve` itself stops on a fault, before any worker
    CONFIG = load_serving_config(CONFIG_PATH)
    MODEL_DIRS = resolve_store_models(CONFIG.model_tags())
    TOKEN = CONFIG.auth.token() if CONFIG.auth is not None else None
    open_log(CONFIG.prediction_log, CONFIG.log_synchronous).engine.dispose()
except CpfdError as e:
    startup_fault(str(e))

PREDICTIONS = bentoml.metrics.Counter(
    name="cpfd_predictions", documentation="videos classified", labelnames=["scenario", "arm"]
)
REJECTED = bentoml.metrics.Counter(
    name="cpfd_rejected_requests", documentation="requests refused, by reason", labelnames=["reason"]
)
POST = ("POST",)
ROUTES = {
    "/classify": Route(POST, "json", VideoRequest, "video", guarded=True),
    "/classify_batch": Route(POST, "json", BatchRequest, "", guarded=True),
    "/classify_frames": Route(POST, "npy", guarded=True),
    "/info": Route(POST, "json", InfoRequest, "", guarded=True),
    **{path: Route(methods=("GET",)) for path in ("/livez", "/healthz", "/readyz", "/metrics", "/")},
}
SPEC = build_spec(CONFIG, ROUTES, auth=TOKEN is not None)

T = TypeVar("T")


def _declare_models(cls: type[T]) -> type[T]:
    """Models named in the config are declared on the class, so `bentoml build` bundles them."""
    for i, tag in enumerate(CONFIG.model_tags()):
        setattr(cls, f"model_{i}", bentoml.models.BentoModel(tag))
    return cls


def _count(rejection: Rejection) -> None:
    REJECTED.labels(reason=rejection.reason).inc()


def refused(status: int, reason: str, message: str, request_id: str, headers: dict[str, str] | None = None) -> Response:
    """A refusal decided inside the service: logged and counted as the gate's are."""
    rejection = Rejection(status, reason, message, request_id, "service")
    log_rejection(rejection)
    _count(rejection)
    return Response(error_payload(message, request_id), status, headers, media_type="application/json")


@bentoml.service(
    name="cpfd_students",
    workers=CONFIG.workers,
    traffic={"timeout": 30},
    logging={"access": {"enabled": CONFIG.access_log}},
)
@_declare_models
class CpfdService:
    def __init__(self) -> None:
        from serving.runtime import Classifier

        die_with_parent()  # the worker goes when `bentoml serve` goes, even on SIGKILL
        try:
            self.runtime = Classifier(CONFIG, MODEL_DIRS)
        except CpfdError as e:
            startup_fault(str(e))

    def __is_ready__(self) -> bool:
        return self.runtime.not_ready() is None

    async def answer(
        self, make_videos: Callable[[], list[ValidVideo]], request_id: str, offload: bool = True
    ) -> list[dict] | Response:
        """Validate (decoding off the event loop when ``offload``), classify, log; refusals as JSON errors."""
        from serving.runtime import LogUnavailable

        t0 = time.perf_counter()
        try:
            videos = await asyncio.to_thread(make_videos) if offload else make_videos()
            answers = await self.runtime.classify(videos, t0, request_id)
        except ServingInputError as e:
            return refused(e.status, e.reason, str(e), request_id)
        except LogUnavailable:
            retry = {"retry-after": "5"}
            return refused(503, "log_unavailable", "prediction log unavailable; retry later", request_id, retry)
        for a in answers:
            PREDICTIONS.labels(scenario=a["scenario"], arm=a["arm"]).inc()
        return answers

    @bentoml.api(route="/classify")
    async def classify(self, video: VideoRequest, /) -> dict:
        modalities = self.runtime.modalities
        out = await self.answer(lambda: [validate_video(video, CONFIG, "video", modalities)], _request_id())
        # BentoML sends a starlette Response as it is; the annotation is the API's schema.
        return out if isinstance(out, Response) else out[0]  # type: ignore[return-value]

    @bentoml.api(route="/classify_batch")
    async def classify_batch(self, request: BatchRequest, /) -> dict:
        modalities = self.runtime.modalities
        out = await self.answer(lambda: validate_batch(request.videos, CONFIG, modalities), _request_id())
        return out if isinstance(out, Response) else {"predictions": out}  # type: ignore[return-value]

    @bentoml.api(route="/info")
    def info(self) -> dict:
        return {**self.runtime.describe(), "forbidden_modules_loaded": forbidden_loaded()}


def _request_id() -> str:
    """The gate's request id of the request being answered (the service context holds the request)."""
    context: bentoml.Context = CpfdService.context  # type: ignore[attr-defined]
    return context.request.state.request_id


async def classify_frames(request: Request) -> Response:
    """POST /classify_frames: a .npy body of uint8 [frames, height, width, 3]; the other fields in the query."""
    service: CpfdService = bentoml.get_current_service()
    body = await request.body()
    query = list(request.query_params.multi_items())

    def videos() -> list[ValidVideo]:
        return [validate_frames(parse_query(query), body, CONFIG, service.runtime.modalities)]

    out = await service.answer(videos, request.state.request_id, offload=False)  # no decoding: cheap enough inline
    return out if isinstance(out, Response) else JSONResponse(out[0])


def _gated(app: Callable) -> Gate:
    return Gate(
        app,
        ROUTES,
        CONFIG.limits,
        TOKEN,
        _count,
        open_prefixes=("/static_content/",),
        documents={"/docs.json": SPEC},
    )


class _GatedService(bentoml.Service):
    """BentoML's service whose ASGI app is wrapped in the Gate: the one extension point used, so that the gate
    sees every request first (unknown paths never reach the framework's per-path metrics)."""

    __slots__ = ()

    def to_asgi(self, is_main: bool = True) -> Gate:
        return _gated(super().to_asgi(is_main))


# mypy does not apply a class decorator's return type (python/mypy#3135): CpfdService is a bentoml Service here.
FRAMES_APP = Starlette(routes=[StarletteRoute("/classify_frames", classify_frames, methods=["POST"])])
CpfdService.mount_asgi_app(FRAMES_APP)  # type: ignore[attr-defined]
CpfdService.__class__ = _GatedService  # type: ignore[method-assign]
