"""The BentoML service of the CPFD students: every configured scenario and A/B arm behind one HTTP API, each
answer logged to the prediction log before it is sent.

Run it with ``cpfd serve --config serving/config.yaml`` (a supervisor that stops on a start-up fault), or with
BentoML's own command from the repository root::

    CPFD_SERVING_CONFIG=serving/config.yaml bentoml serve serving.service:CpfdService --port 3000

The routes are plain Starlette routes mounted on the service; serving/gate.py, attached with
``add_asgi_middleware``, applies every transport rule first and hands each route its validated body. The API,
with every constraint and status, is the OpenAPI document at /docs.json (serving/openapi.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import bentoml
from bentoml.exceptions import BentoMLException
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route as StarletteRoute

from cpfd.errors import CpfdError
from cpfd.predlog import open_log

from . import metrics
from .config import CONFIG_ENV, load_serving_config
from .gate import Gate, Rejection, Route, error_payload, log_rejection
from .guards import forbid_imports, forbidden_loaded
from .launch import die_with_parent, startup_fault
from .live import LiveConfig
from .openapi import build_spec
from .schemas import BatchRequest, InfoRequest, ServingInputError, VideoRequest, parse_query
from .startup import resolve_store_models, scenario_inputs
from .videos import ValidVideo, validate_batch, validate_frames, validate_video

forbid_imports()
CONFIG_PATH = Path(os.environ.get(CONFIG_ENV) or Path(__file__).with_name("config.yaml"))
try:  # every cheap start-up check, here so that `bentoml serve` itself stops on a fault, before any worker
    CONFIG = load_serving_config(CONFIG_PATH)
    MODEL_DIRS = resolve_store_models(CONFIG.model_tags())
    INPUTS = scenario_inputs(CONFIG, MODEL_DIRS)
    TOKEN = CONFIG.auth.token() if CONFIG.auth is not None else None
    open_log(CONFIG.prediction_log, CONFIG.log_synchronous).engine.dispose()
except CpfdError as e:
    startup_fault(str(e))

POST = ("POST",)
METRICS_NEED_TOKEN = CONFIG.auth is not None and CONFIG.auth.metrics
ROUTES = {
    "/classify": Route(POST, "json", VideoRequest, "video", guarded=True),
    "/classify_batch": Route(POST, "json", BatchRequest, "", guarded=True),
    "/classify_frames": Route(POST, "npy", guarded=True),
    "/info": Route(POST, "json", InfoRequest, "", guarded=True),
    "/metrics": Route(("GET",), authorized=METRICS_NEED_TOKEN),
    **{path: Route(methods=("GET",)) for path in ("/livez", "/healthz", "/readyz", "/")},
}
SPEC = build_spec(CONFIG, ROUTES, auth=TOKEN is not None, inputs=INPUTS)
LIVE = LiveConfig(CONFIG_PATH, CONFIG)  # traffic shares reload without a restart (serving/live.py)

T = TypeVar("T")
logger = logging.getLogger("cpfd.serving")
if TYPE_CHECKING:
    from .runtime import Classifier


def _declare_models(cls: type[T]) -> type[T]:
    """Models named in the config are declared on the class, so `bentoml build` bundles them."""
    for i, tag in enumerate(CONFIG.model_tags()):
        setattr(cls, f"model_{i}", bentoml.models.BentoModel(tag))
    return cls


def _count(rejection: Rejection) -> None:
    metrics.count_rejection(rejection.reason)


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
    metrics={"enabled": False},  # its per-path labels grow with every probed path: serving/metrics.py instead
)
@_declare_models
class CpfdService:
    """One worker. The only worker (``workers: 1``) loads its models on a thread, so that after a start or a
    restart it answers (503 + Retry-After, /readyz 503) from the moment it listens instead of leaving requests
    queued; with more workers a restarting one loads first and listens after, so its siblings take every request
    meanwhile."""

    def __init__(self) -> None:
        die_with_parent()  # the worker goes when `bentoml serve` goes, even on SIGKILL
        self.runtime: Classifier | None = None
        if CONFIG.workers == 1:
            threading.Thread(target=self._load, name="cpfd-load", daemon=True).start()
        else:
            self._load()

    def _load(self) -> None:
        from .runtime import Classifier

        t0 = time.monotonic()
        try:
            runtime = Classifier(CONFIG, MODEL_DIRS)
        except CpfdError as e:
            startup_fault(str(e))
        except Exception:  # not a fault of the files: this worker exits and its supervisor starts another
            logger.exception("loading the models failed")
            os._exit(1)
        LIVE.listeners.append(lambda cfg: setattr(runtime, "cfg", cfg))  # /info shows the live shares
        runtime.cfg = LIVE.current()
        self.runtime = runtime
        logger.info("models loaded in %.1f s (pid %d)", time.monotonic() - t0, os.getpid())

    def __is_ready__(self) -> bool:
        return self.runtime is not None and self.runtime.not_ready() is None

    def loaded(self) -> Classifier:
        """The runtime; the gate answers guarded routes only once it is loaded."""
        if self.runtime is None:
            raise RuntimeError("the models are not loaded yet")
        return self.runtime

    async def answer(
        self, make_videos: Callable[[], list[ValidVideo]], request_id: str, offload: bool = True
    ) -> list[dict] | Response:
        """Validate (decoding off the event loop when ``offload``), classify, log; refusals as JSON errors."""
        from .runtime import LogUnavailable

        t0 = time.perf_counter()
        try:
            videos = await asyncio.to_thread(make_videos) if offload else make_videos()
            answers = await self.loaded().classify(videos, t0, request_id)
        except ServingInputError as e:
            return refused(e.status, e.reason, str(e), request_id)
        except LogUnavailable:
            retry = {"retry-after": "5"}
            return refused(503, "log_unavailable", "prediction log unavailable; retry later", request_id, retry)
        for a in answers:
            metrics.count_prediction(a["scenario"], a["arm"])
        return answers


def _service() -> CpfdService:
    return bentoml.get_current_service()


def _unavailable() -> str | None:
    """Why this worker cannot answer a guarded route now (its models are loading), or None."""
    try:
        loading = _service().runtime is None
    except BentoMLException:  # not instantiated yet
        loading = True
    return "starting: the models are loading" if loading else None


async def classify(request: Request) -> Response:
    """POST /classify: one video; the gate has validated the body (``state.parsed``)."""
    service, video = _service(), request.state.parsed
    modalities, cfg = service.loaded().modalities, LIVE.current()  # the arm is chosen with the config of now
    out = await service.answer(lambda: [validate_video(video, cfg, "video", modalities)], request.state.request_id)
    return out if isinstance(out, Response) else JSONResponse(out[0])


async def classify_batch(request: Request) -> Response:
    """POST /classify_batch: {"videos": [...]} -> {"predictions": [...]}."""
    service, batch = _service(), request.state.parsed
    modalities, cfg = service.loaded().modalities, LIVE.current()
    out = await service.answer(lambda: validate_batch(batch.videos, cfg, modalities), request.state.request_id)
    return out if isinstance(out, Response) else JSONResponse({"predictions": out})


async def classify_frames(request: Request) -> Response:
    """POST /classify_frames: a .npy body of uint8 [frames, height, width, 3]; the other fields in the query."""
    service = _service()
    body = await request.body()
    query = list(request.query_params.multi_items())
    cfg = LIVE.current()

    def videos() -> list[ValidVideo]:
        return [validate_frames(parse_query(query), body, cfg, service.loaded().modalities)]

    out = await service.answer(videos, request.state.request_id, offload=False)  # no decoding: cheap enough inline
    return out if isinstance(out, Response) else JSONResponse(out[0])


async def info(request: Request) -> Response:
    """POST /info: served scenarios, arms, model tags, modalities, batching, and the dense-feature guard."""
    LIVE.current()  # the traffic shares shown are the live ones
    return JSONResponse({**_service().loaded().describe(), "forbidden_modules_loaded": forbidden_loaded()})


async def metrics_page(request: Request) -> Response:
    body, media_type = metrics.exposition()
    return Response(body, media_type=media_type)


API = Starlette(
    routes=[
        StarletteRoute("/classify", classify, methods=["POST"]),
        StarletteRoute("/classify_batch", classify_batch, methods=["POST"]),
        StarletteRoute("/classify_frames", classify_frames, methods=["POST"]),
        StarletteRoute("/info", info, methods=["POST"]),
        StarletteRoute("/metrics", metrics_page, methods=["GET"]),
    ]
)
# mypy does not apply a class decorator's return type (python/mypy#3135): CpfdService is a bentoml Service here.
CpfdService.mount_asgi_app(API)  # type: ignore[attr-defined]
CpfdService.add_asgi_middleware(  # type: ignore[attr-defined]
    Gate,
    routes=ROUTES,
    limits=CONFIG.limits,
    token=TOKEN,
    on_reject=_count,
    open_prefixes=("/static_content/",),
    documents={"/docs.json": SPEC},
    unavailable=_unavailable,
)
