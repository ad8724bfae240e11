"""Serving logic without a server: config, request schema, limits, frame decoding, A/B arms.

The BentoML service (serving/service.py) is a thin shell around this module and
cpfd.serving_runtime, so every rule here is unit-testable in-process. Nothing here (or in the
runtime) imports Feast or reads a dense feature: the served students take frames and a title.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import Field, StrictInt, model_validator

from cpfd.config import StrictModel, read_yaml, validated
from cpfd.errors import ConfigError, CpfdError

CONFIG_ENV = "CPFD_SERVING_CONFIG"
FORBIDDEN_MODULES = ("feast",)


# ---- the serving config -------------------------------------------------------------------------


class ArmConfig(StrictModel):
    model: str = Field(min_length=1, description="BentoML model tag, name or name:version")
    traffic: float = Field(ge=0, le=1, description="share of video_ids hashed to this arm")


class ScenarioServing(StrictModel):
    experiment: str | None = Field(None, description="defaults to the top-level experiment")
    arms: dict[str, ArmConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _traffic_sums_to_one(self):
        total = sum(a.traffic for a in self.arms.values())
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"arm traffic shares sum to {total:g}, not 1")
        return self


class Limits(StrictModel):
    max_frames_per_video: int = Field(32, ge=1)
    max_frame_bytes: int = Field(1 << 20, ge=64, description="decoded bytes of one JPEG/PNG frame")
    max_request_bytes: int = Field(8 << 20, ge=1024, description="HTTP body bytes of one request")
    max_title_chars: int = Field(512, ge=1)
    max_batch_videos: int = Field(64, ge=1, description="videos in one batch request")
    max_frame_side: int = Field(1024, ge=8, description="pixels of a frame's longer side")


class Batching(StrictModel):
    enabled: bool = True
    max_batch_size: int = Field(64, ge=1, description="videos in one model call")
    max_wait_ms: float = Field(2.0, ge=0, description="wait for more videos after the first one")


class ServingConfig(StrictModel):
    experiment: str = Field("default", min_length=1)
    scenarios: dict[str, ScenarioServing] = Field(min_length=1)
    limits: Limits = Limits()
    batching: Batching = Batching()
    allow_frame_paths: bool = Field(False, description="accept local frame file paths (trusted deployments only)")
    prediction_log: str = Field("predictions.db", description="SQLite path (relative to this file) or SQLAlchemy URL")
    workers: int = Field(1, ge=1, description="server processes; each loads every model and batches on its own")
    access_log: bool = Field(False, description="BentoML per-request access log (costly at high request rates)")
    torch_threads: int = Field(
        1, ge=1, description="intra-op threads of a model call; >1 only on idle, dedicated cores"
    )

    def experiment_of(self, scenario: str) -> str:
        return self.scenarios[scenario].experiment or self.experiment

    def model_tags(self) -> list[str]:
        return sorted({a.model for s in self.scenarios.values() for a in s.arms.values()})


def load_serving_config(path: str | Path) -> ServingConfig:
    """Read and validate the YAML; a relative SQLite log path resolves against the file's folder."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"serving config {path} does not exist")
    cfg = validated(ServingConfig, read_yaml("serving config", path), str(path), every=True)
    if "://" not in cfg.prediction_log and not Path(cfg.prediction_log).is_absolute():
        cfg.prediction_log = str((path.resolve().parent / cfg.prediction_log).resolve())
    return cfg


# ---- requests -----------------------------------------------------------------------------------


class VideoRequest(StrictModel):
    """One video to classify. Unknown fields (a dense feature, say) are refused."""

    scenario: str
    video_id: StrictInt = Field(ge=-(2**63), le=2**63 - 1, description="int64, as in the videos table")
    title: str | None = Field(None, description="required for scenarios whose models read titles")
    frames: list[str] = Field(
        default_factory=list,
        description="base64 JPEG or PNG, one per frame; not needed (ignored) for title-only scenarios",
    )
    frame_paths: list[str] = Field(default_factory=list, description="local image files, if the deployment allows")
    arm: str | None = Field(None, description="set by the caller's experiment platform; else hashed")


class BatchRequest(StrictModel):
    videos: list[VideoRequest]


class ServingInputError(CpfdError):
    """Bad input: answered with ``status`` (4xx) and a message naming the field and limit."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class ValidVideo:
    scenario: str
    video_id: int
    title: str
    frames: np.ndarray  # uint8 [T, H, W, 3]
    arm: str
    experiment: str


_MAGIC = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG"}


def decode_image(data: bytes, limits: Limits, where: str) -> np.ndarray:
    """JPEG or PNG bytes -> uint8 [H, W, 3]; refuses other formats, oversized and corrupt images."""
    from PIL import Image

    if len(data) > limits.max_frame_bytes:
        raise ServingInputError(
            f"{where}: {len(data)} bytes exceeds limit max_frame_bytes={limits.max_frame_bytes}", 413
        )
    fmt = next((f for magic, f in _MAGIC.items() if data.startswith(magic)), None)
    if fmt is None:
        raise ServingInputError(f"{where}: not a JPEG or PNG image")
    try:
        with Image.open(io.BytesIO(data), formats=[fmt]) as im:
            if max(im.size) > limits.max_frame_side:
                raise ServingInputError(
                    f"{where}: {im.size[0]}x{im.size[1]} pixels exceeds limit max_frame_side={limits.max_frame_side}",
                    413,
                )
            return np.asarray(im if im.mode == "RGB" else im.convert("RGB"), dtype=np.uint8)
    except ServingInputError:
        raise
    except Exception as e:
        raise ServingInputError(f"{where}: undecodable {fmt} image ({type(e).__name__}: {e})") from None


def _b64(text: str, where: str, limits: Limits) -> bytes:
    if len(text) > 4 * (limits.max_frame_bytes // 3 + 1) + 4:
        raise ServingInputError(f"{where}: exceeds limit max_frame_bytes={limits.max_frame_bytes}", 413)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ServingInputError(f"{where}: not valid base64") from None


def _read_path(path: str, where: str, limits: Limits) -> bytes:
    p = Path(path)
    if not p.is_file():
        raise ServingInputError(f"{where}: no such file {path!r}")
    if p.stat().st_size > limits.max_frame_bytes:
        raise ServingInputError(
            f"{where}: {p.stat().st_size} bytes exceeds limit max_frame_bytes={limits.max_frame_bytes}", 413
        )
    return p.read_bytes()


ALL_MODALITIES = ("frames", "title")


def validate_video(
    req: VideoRequest, cfg: ServingConfig, where: str = "video", modalities: dict[str, list[str]] | None = None
) -> ValidVideo:
    """Check one request against the config and limits; decode its frames; assign its arm.

    ``modalities`` (scenario -> the inputs its models read; default both) decides whether a title and frames
    are required; frames sent to a title-only scenario are ignored, not decoded.
    """
    lim = cfg.limits
    scen = cfg.scenarios.get(req.scenario)
    if scen is None:
        raise ServingInputError(f"{where}.scenario: unknown scenario {req.scenario!r}; served: {sorted(cfg.scenarios)}")
    reads = (modalities or {}).get(req.scenario, ALL_MODALITIES)
    if req.title is None and "title" in reads:
        raise ServingInputError(f"{where}.title: required for scenario {req.scenario!r} (its models read titles)")
    title = req.title or ""
    if len(title) > lim.max_title_chars:
        raise ServingInputError(
            f"{where}.title: {len(title)} characters exceeds limit max_title_chars={lim.max_title_chars}", 413
        )
    if req.frames and req.frame_paths:
        raise ServingInputError(f"{where}: give frames or frame_paths, not both")
    if req.frame_paths and not cfg.allow_frame_paths:
        raise ServingInputError(
            f"{where}.frame_paths: local frame paths are disabled on this deployment (allow_frame_paths)", 403
        )
    experiment = cfg.experiment_of(req.scenario)
    arm = _arm(req, scen, experiment, where)
    if "frames" not in reads:
        return ValidVideo(req.scenario, req.video_id, title, np.zeros((0, 0, 0, 3), np.uint8), arm, experiment)
    sources = req.frames or req.frame_paths
    field = "frames" if req.frames else "frame_paths"
    if not sources:
        raise ServingInputError(f"{where}.frames: empty, a video needs at least one frame")
    if len(sources) > lim.max_frames_per_video:
        raise ServingInputError(
            f"{where}.{field}: {len(sources)} frames exceeds limit max_frames_per_video={lim.max_frames_per_video}", 413
        )
    images = []
    for i, src in enumerate(sources):
        w = f"{where}.{field}[{i}]"
        data = _b64(src, w, lim) if req.frames else _read_path(src, w, lim)
        images.append(decode_image(data, lim, w))
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise ServingInputError(
            f"{where}.{field}: frames have different shapes {sorted(s[:2] for s in shapes)}; send one size"
        )
    return ValidVideo(req.scenario, req.video_id, title, np.stack(images), arm, experiment)


def _arm(req: VideoRequest, scen: ScenarioServing, experiment: str, where: str) -> str:
    """The caller's arm (checked) or a stable hash of (experiment, video_id)."""
    if req.arm is None:
        return assign_arm(experiment, req.video_id, {k: a.traffic for k, a in scen.arms.items()})
    if req.arm not in scen.arms:
        raise ServingInputError(
            f"{where}.arm: unknown arm {req.arm!r} for scenario {req.scenario!r}; arms: {list(scen.arms)}"
        )
    return req.arm


def validate_batch(
    videos: list[VideoRequest], cfg: ServingConfig, modalities: dict[str, list[str]] | None = None
) -> list[ValidVideo]:
    if not videos:
        raise ServingInputError("videos: empty, send at least one video")
    if len(videos) > cfg.limits.max_batch_videos:
        raise ServingInputError(
            f"videos: {len(videos)} videos exceeds limit max_batch_videos={cfg.limits.max_batch_videos}", 413
        )
    return [validate_video(v, cfg, f"videos[{i}]", modalities) for i, v in enumerate(videos)]


# ---- A/B arms -----------------------------------------------------------------------------------


def hash_unit(experiment: str, video_id: int) -> float:
    """A stable number in [0, 1) from (experiment, video_id): same video, same arm, every process."""
    digest = hashlib.sha256(f"{experiment}\x1f{int(video_id)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign_arm(experiment: str, video_id: int, traffic: dict[str, float]) -> str:
    """Walk the arms in config order; the hash falls in one arm's share of [0, 1)."""
    u = hash_unit(experiment, video_id)
    edge = 0.0
    for arm, share in traffic.items():
        edge += share
        if u < edge:
            return arm
    return next(reversed(traffic))


# ---- process guards -----------------------------------------------------------------------------


class _ForbidImports:
    """A meta-path finder that refuses the dense-feature stack inside the serving process."""

    def __init__(self, names: tuple[str, ...]):
        self.names = names

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in self.names:
            raise ImportError(
                f"{fullname} may not be imported in the serving process: served students need no dense feature"
            )
        return None


def forbid_imports(names: tuple[str, ...] = FORBIDDEN_MODULES) -> None:
    loaded = [m for m in sys.modules if m.split(".")[0] in names]
    if loaded:
        raise CpfdError(f"the serving process already imported {sorted(loaded)[:3]}")
    if not any(isinstance(f, _ForbidImports) for f in sys.meta_path):
        sys.meta_path.insert(0, _ForbidImports(names))


def forbidden_loaded(names: tuple[str, ...] = FORBIDDEN_MODULES) -> list[str]:
    return sorted(m for m in sys.modules if m.split(".")[0] in names)


class BodyLimit:
    """ASGI middleware: a body over ``max_bytes`` gets a 413 before it is parsed."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await self._reject(send, int(length))
        if length is not None:
            return await self.app(scope, receive, send)
        chunks, seen, more = [], 0, True  # no Content-Length (chunked): buffer up to the limit, then replay
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return
            chunks.append(message.get("body", b""))
            seen += len(chunks[-1])
            more = message.get("more_body", False)
            if seen > self.max_bytes:
                return await self._reject(send, seen)
        replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replay_receive():
            return replay.pop() if replay else await receive()

        return await self.app(scope, replay_receive, send)

    async def _reject(self, send, length: int):
        import json

        body = json.dumps(
            {"error": f"request body ({length} bytes or more) exceeds limit max_request_bytes={self.max_bytes}"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
