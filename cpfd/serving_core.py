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
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
from pydantic import BaseModel, Field, StrictInt, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from cpfd.config import ALL_MODALITIES, StrictModel, read_yaml, validated
from cpfd.errors import ConfigError, CpfdError

CONFIG_ENV = "CPFD_SERVING_CONFIG"
FORBIDDEN_MODULES = ("feast",)
HARD_MAX_ITEMS = 1024  # list lengths any request model refuses, whatever the config (bounds validation work)
MIN_TOKEN_CHARS = 16
M = TypeVar("M", bound=BaseModel)


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
    max_frames_per_video: int = Field(32, ge=1, le=HARD_MAX_ITEMS)
    max_frame_bytes: int = Field(1 << 20, ge=64, description="encoded bytes of one JPEG/PNG frame")
    max_frame_side: int = Field(1024, ge=8, description="pixels of a frame's longer side")
    max_frame_pixels: int = Field(1 << 20, ge=64, description="width x height of one frame, read from its header")
    max_request_pixels: int = Field(
        1 << 23, ge=64, description="width x height summed over every frame of a request, checked before decoding"
    )
    max_request_bytes: int = Field(8 << 20, ge=1024, description="HTTP body bytes of one request")
    max_title_chars: int = Field(512, ge=1)
    max_batch_videos: int = Field(64, ge=1, le=HARD_MAX_ITEMS, description="videos in one batch request")
    max_concurrent_requests: int = Field(
        32, ge=1, description="classify requests in flight per worker; more are answered 503 with Retry-After"
    )
    body_timeout_s: float = Field(10.0, gt=0, description="time to receive a request body; slower bodies get 408")

    @model_validator(mode="after")
    def _request_holds_a_frame(self):
        if self.max_request_pixels < self.max_frame_pixels:
            raise ValueError("max_request_pixels must be at least max_frame_pixels")
        return self


class Batching(StrictModel):
    enabled: bool = True
    max_batch_size: int = Field(64, ge=1, description="videos in one model call")
    max_wait_ms: float = Field(2.0, ge=0, description="wait for more videos after the first one")


class AuthConfig(StrictModel):
    """A bearer token required on /classify* and /info (never on /livez, /readyz, /metrics)."""

    token_env: str | None = Field(None, min_length=1, description="environment variable holding the token")
    token_file: str | None = Field(None, min_length=1, description="file holding the token (a mounted secret)")

    @model_validator(mode="after")
    def _one_source(self):
        if (self.token_env is None) == (self.token_file is None):
            raise ValueError("set exactly one of token_env and token_file")
        return self

    def token(self) -> str:
        """The configured token; a missing or empty one is a ConfigError naming its source."""
        if self.token_env is not None:
            value, source = os.environ.get(self.token_env, ""), f"environment variable {self.token_env}"
        else:
            source = f"token file {self.token_file}"
            try:
                value = Path(str(self.token_file)).read_text()
            except OSError as e:
                raise ConfigError(f"auth: {source} is not readable ({e.strerror})") from None
        value = value.strip()
        if len(value) < MIN_TOKEN_CHARS:
            raise ConfigError(f"auth: {source} is unset or shorter than {MIN_TOKEN_CHARS} characters")
        return value


class ServingConfig(StrictModel):
    experiment: str = Field("default", min_length=1)
    scenarios: dict[str, ScenarioServing] = Field(min_length=1)
    limits: Limits = Limits()
    batching: Batching = Batching()
    auth: AuthConfig | None = Field(None, description="bearer-token authentication; none when absent")
    allow_frame_paths: bool = Field(False, description="accept local frame file paths (trusted deployments only)")
    prediction_log: str = Field("predictions.db", description="SQLite path (relative to this file) or SQLAlchemy URL")
    log_synchronous: Literal["NORMAL", "FULL"] = Field(
        "NORMAL", description="SQLite synchronous mode of the log: FULL also survives a power loss, at a cost"
    )
    workers: int = Field(1, ge=1, description="server processes; each loads every model and batches on its own")
    access_log: bool = Field(False, description="BentoML per-request access log (costly at high request rates)")
    torch_threads: int = Field(
        1, ge=1, description="intra-op threads of a model call; >1 only on idle, dedicated cores"
    )

    def experiment_of(self, scenario: str) -> str:
        return self.scenarios[scenario].experiment or self.experiment

    def model_tags(self) -> list[str]:
        return sorted({a.model for s in self.scenarios.values() for a in s.arms.values()})

    def arm_names(self) -> list[str]:
        return sorted({arm for s in self.scenarios.values() for arm in s.arms})


def load_serving_config(path: str | Path) -> ServingConfig:
    """Read and validate the YAML; a relative SQLite log path resolves against the file's folder."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"serving config {path} does not exist")
    cfg = validated(ServingConfig, read_yaml("serving config", path), str(path), every=True)
    if "://" not in cfg.prediction_log and not Path(cfg.prediction_log).is_absolute():
        cfg.prediction_log = str((path.resolve().parent / cfg.prediction_log).resolve())
    if cfg.auth is not None and cfg.auth.token_file is not None and not Path(cfg.auth.token_file).is_absolute():
        cfg.auth.token_file = str((path.resolve().parent / cfg.auth.token_file).resolve())
    return cfg


# ---- requests -----------------------------------------------------------------------------------


class RequestModel(StrictModel):
    """A request body: an unknown field is one short error, however many there are."""

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = [k for k in data if k not in cls.model_fields]
            if unknown:
                more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
                raise PydanticCustomError("unknown_field", f"unknown field {_short(unknown[0])}{more}")
        return data


class VideoRequest(RequestModel):
    """One video to classify. Unknown fields (a dense feature, say) are refused."""

    scenario: str = Field(description="a served scenario")
    video_id: StrictInt = Field(ge=-(2**63), le=2**63 - 1, description="int64, as in the videos table")
    title: str | None = Field(None, description="required for scenarios whose models read titles")
    frames: list[str] = Field(
        default_factory=list,
        max_length=HARD_MAX_ITEMS,
        description="base64 JPEG or PNG, one per frame; not needed (ignored) for title-only scenarios",
    )
    frame_paths: list[str] = Field(
        default_factory=list, max_length=HARD_MAX_ITEMS, description="local image files, if the deployment allows"
    )
    arm: str | None = Field(None, description="set by the caller's experiment platform; else hashed")


class BatchRequest(RequestModel):
    videos: list[VideoRequest] = Field(max_length=HARD_MAX_ITEMS)


class InfoRequest(RequestModel):
    """/info takes an empty JSON object."""


class FramesQuery(RequestModel):
    """The query of /classify_frames: the video's fields; its frames are the body (a .npy)."""

    scenario: str = Field(description="a served scenario")
    video_id: int = Field(ge=-(2**63), le=2**63 - 1, description="int64, as in the videos table")
    title: str | None = Field(None, description="required for scenarios whose models read titles")
    arm: str | None = Field(None, description="set by the caller's experiment platform; else hashed")


class ServingInputError(CpfdError):
    """Bad input: answered with ``status`` (4xx) and a message naming the field and limit, never the input."""

    def __init__(self, message: str, status: int = 400, reason: str = "bad_input"):
        super().__init__(message)
        self.status, self.reason = status, reason


def too_large(message: str) -> ServingInputError:
    return ServingInputError(message, 413, "too_large")


def _short(value: object, n: int = 40) -> str:
    """A field name from the input, quoted, cut and stripped of control characters (never the whole input)."""
    text = "".join(c if c.isprintable() else "?" for c in str(value)[:n])
    return repr(text + ("..." if len(str(value)) > n else ""))


def _loc(parts: tuple[int | str, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p if p.isidentifier() else _short(p)}" for p in parts)


def input_error(e: ValidationError, where: str) -> ServingInputError:
    """A request's first validation error as ``where.field: message``; no input, no class name."""
    err = e.errors(include_url=False, include_context=False, include_input=False)[0]
    msg = err["msg"][:160]
    if err["type"] == "json_invalid":
        return ServingInputError(f"body: not valid JSON ({msg.removeprefix('Invalid JSON: ')})")
    if err["type"] in ("model_type", "model_attributes_type", "dict_type"):
        msg = "must be a JSON object"
    more = f" (and {e.error_count() - 1} more errors)" if e.error_count() > 1 else ""
    field = (where + _loc(tuple(err["loc"]))).lstrip(".") or "body"
    return ServingInputError(f"{field}: {msg}{more}")


def parse_query(items: list[tuple[str, str]]) -> FramesQuery:
    """The query of /classify_frames (each field at most once) as a FramesQuery; failures are ServingInputError."""
    seen: set[str] = set()
    for key, _ in items:
        if key in seen:
            raise ServingInputError(f"query{_loc((key,))}: given more than once")
        seen.add(key)
    try:
        return FramesQuery.model_validate(dict(items))
    except ValidationError as e:
        raise input_error(e, "query") from None


def parse_request(model: type[M], body: bytes, where: str) -> M:
    """A JSON body validated against ``model``; any failure is a ServingInputError."""
    try:
        return model.model_validate_json(body or b"{}")
    except ValidationError as e:
        raise input_error(e, where) from None


@dataclass
class ValidVideo:
    scenario: str
    video_id: int
    title: str
    frames: np.ndarray  # uint8 [T, H, W, 3]
    arm: str
    experiment: str


_MAGIC = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG"}


@dataclass
class EncodedFrame:
    """A JPEG/PNG frame whose header was read (size known), not decoded yet."""

    data: bytes
    fmt: str
    width: int
    height: int
    where: str

    @property
    def pixels(self) -> int:
        return self.width * self.height


def read_header(data: bytes, limits: Limits, where: str) -> EncodedFrame:
    """Format and size from the image header only (PIL's open does not decode); size limits checked here."""
    from PIL import Image

    if len(data) > limits.max_frame_bytes:
        raise too_large(f"{where}: {len(data)} bytes exceeds limit max_frame_bytes={limits.max_frame_bytes}")
    fmt = next((f for magic, f in _MAGIC.items() if data.startswith(magic)), None)
    if fmt is None:
        raise ServingInputError(f"{where}: not a JPEG or PNG image")
    try:
        with Image.open(io.BytesIO(data), formats=[fmt]) as im:
            width, height = im.size
    except Image.DecompressionBombError:
        raise too_large(f"{where}: exceeds limit max_frame_pixels={limits.max_frame_pixels}") from None
    except Exception:
        raise ServingInputError(f"{where}: undecodable {fmt} image header") from None
    _check_frame_size(width, height, limits, where)
    return EncodedFrame(data, fmt, width, height, where)


def _check_frame_size(width: int, height: int, limits: Limits, where: str) -> None:
    if max(width, height) > limits.max_frame_side:
        raise too_large(f"{where}: {width}x{height} pixels exceeds limit max_frame_side={limits.max_frame_side}")
    if width * height > limits.max_frame_pixels:
        raise too_large(f"{where}: {width}x{height} pixels exceeds limit max_frame_pixels={limits.max_frame_pixels}")


def decode_frame(frame: EncodedFrame) -> np.ndarray:
    """A frame whose header passed the limits -> uint8 [H, W, 3]."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(frame.data), formats=[frame.fmt]) as im:
            if im.size != (frame.width, frame.height):
                raise ValueError("size changed")
            return np.asarray(im if im.mode == "RGB" else im.convert("RGB"), dtype=np.uint8)
    except Exception:
        raise ServingInputError(f"{frame.where}: undecodable {frame.fmt} image") from None


def decode_image(data: bytes, limits: Limits, where: str) -> np.ndarray:
    """JPEG or PNG bytes -> uint8 [H, W, 3]; refuses other formats, oversized and corrupt images."""
    return decode_frame(read_header(data, limits, where))


def read_npy_frames(body: bytes, limits: Limits, where: str = "body") -> np.ndarray:
    """A ``.npy`` of uint8 [T, H, W, 3] -> the array; header (dtype, shape, sizes) checked before any copy."""
    import numpy.lib.format as npy

    f = io.BytesIO(body)
    try:
        version = npy.read_magic(f)
        read = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
        shape, fortran, dtype = read(f, max_header_size=1024)
    except Exception:
        raise ServingInputError(f"{where}: not a .npy array (NumPy format 1.0 or 2.0)") from None
    if dtype != np.dtype(np.uint8) or fortran or len(shape) != 4 or shape[3] != 3:
        raise ServingInputError(f"{where}: must be a C-order uint8 array of shape [frames, height, width, 3]")
    frames, height, width = shape[:3]
    if frames < 1:
        raise ServingInputError(f"{where}: empty, a video needs at least one frame")
    if frames > limits.max_frames_per_video:
        raise too_large(f"{where}: {frames} frames exceeds limit max_frames_per_video={limits.max_frames_per_video}")
    _check_frame_size(width, height, limits, where)
    if frames * width * height > limits.max_request_pixels:
        raise too_large(
            f"{where}: {frames * width * height} pixels exceeds limit max_request_pixels={limits.max_request_pixels}"
        )
    data = body[f.tell() :]
    if len(data) != frames * height * width * 3:
        raise ServingInputError(
            f"{where}: {len(data)} data bytes, the header's shape needs {frames * height * width * 3}"
        )
    return np.frombuffer(data, np.uint8).reshape(shape).copy()


def _b64(text: str, where: str, limits: Limits) -> bytes:
    if len(text) > 4 * (limits.max_frame_bytes // 3 + 1) + 4:
        raise too_large(f"{where}: exceeds limit max_frame_bytes={limits.max_frame_bytes}")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ServingInputError(f"{where}: not valid base64") from None


def _read_path(path: str, where: str, limits: Limits) -> bytes:
    p = Path(path)
    if not p.is_file():
        raise ServingInputError(f"{where}: not a readable file")
    if p.stat().st_size > limits.max_frame_bytes:
        raise too_large(f"{where}: {p.stat().st_size} bytes exceeds limit max_frame_bytes={limits.max_frame_bytes}")
    return p.read_bytes()


@dataclass
class CheckedVideo:
    """A request that passed every check but decoding: its frames' headers are read, pixels counted."""

    video: ValidVideo
    encoded: list[EncodedFrame]

    @property
    def pixels(self) -> int:
        return sum(f.pixels for f in self.encoded)

    def decode(self) -> ValidVideo:
        if self.encoded:
            images = [decode_frame(f) for f in self.encoded]
            self.video.frames = np.stack(images)
        return self.video


def check_video(
    req: VideoRequest, cfg: ServingConfig, where: str = "video", modalities: dict[str, list[str]] | None = None
) -> CheckedVideo:
    """Every check of one video short of decoding its frames; the arm is assigned here."""
    lim = cfg.limits
    video, reads = _check_fields(req, cfg, where, modalities)
    if req.frames and req.frame_paths:
        raise ServingInputError(f"{where}: give frames or frame_paths, not both")
    if req.frame_paths and not cfg.allow_frame_paths:
        raise ServingInputError(
            f"{where}.frame_paths: local frame paths are disabled on this deployment (allow_frame_paths)",
            403,
            "forbidden",
        )
    if "frames" not in reads:
        return CheckedVideo(video, [])
    sources = req.frames or req.frame_paths
    field = "frames" if req.frames else "frame_paths"
    if not sources:
        raise ServingInputError(f"{where}.frames: empty, a video needs at least one frame")
    if len(sources) > lim.max_frames_per_video:
        raise too_large(
            f"{where}.{field}: {len(sources)} frames exceeds limit max_frames_per_video={lim.max_frames_per_video}"
        )
    encoded = []
    for i, src in enumerate(sources):
        w = f"{where}.{field}[{i}]"
        encoded.append(read_header(_b64(src, w, lim) if req.frames else _read_path(src, w, lim), lim, w))
    sizes = sorted({(f.height, f.width) for f in encoded})
    if len(sizes) > 1:
        raise ServingInputError(f"{where}.{field}: frames have different sizes {sizes[:4]}; send one size")
    return CheckedVideo(video, encoded)


def _check_fields(
    req: VideoRequest | FramesQuery, cfg: ServingConfig, where: str, modalities: dict[str, list[str]] | None
) -> tuple[ValidVideo, tuple[str, ...] | list[str]]:
    """Scenario, title and arm of a request (frames not yet); returns the video and what its models read."""
    scen = cfg.scenarios.get(req.scenario)
    if scen is None:
        raise ServingInputError(f"{where}.scenario: not a served scenario; served: {sorted(cfg.scenarios)}")
    reads = (modalities or {}).get(req.scenario, ALL_MODALITIES)
    if req.title is None and "title" in reads:
        raise ServingInputError(f"{where}.title: required for scenario {req.scenario!r} (its models read titles)")
    title = req.title or ""
    if len(title) > cfg.limits.max_title_chars:
        raise too_large(
            f"{where}.title: {len(title)} characters exceeds limit max_title_chars={cfg.limits.max_title_chars}"
        )
    experiment = cfg.experiment_of(req.scenario)
    arm = _arm(req, scen, experiment, where)
    return ValidVideo(req.scenario, req.video_id, title, np.zeros((0, 0, 0, 3), np.uint8), arm, experiment), reads


def validate_frames(
    query: FramesQuery, body: bytes, cfg: ServingConfig, modalities: dict[str, list[str]] | None = None
) -> ValidVideo:
    """A /classify_frames request: the query's fields and the body's .npy frames (ignored for title-only models)."""
    video, reads = _check_fields(query, cfg, "query", modalities)
    if "frames" in reads:
        video.frames = read_npy_frames(body, cfg.limits)
    return video


def _within_request_pixels(checked: list[CheckedVideo], cfg: ServingConfig, where: str) -> None:
    total = sum(c.pixels for c in checked)
    if total > cfg.limits.max_request_pixels:
        raise too_large(
            f"{where}: {total} pixels in all frames exceeds limit max_request_pixels={cfg.limits.max_request_pixels}"
        )


def validate_video(
    req: VideoRequest, cfg: ServingConfig, where: str = "video", modalities: dict[str, list[str]] | None = None
) -> ValidVideo:
    """Check one request against the config and limits; decode its frames; assign its arm.

    ``modalities`` (scenario -> the inputs its models read; default both) decides whether a title and frames
    are required; frames sent to a title-only scenario are ignored, not decoded.
    """
    checked = check_video(req, cfg, where, modalities)
    _within_request_pixels([checked], cfg, f"{where}.frames")
    return checked.decode()


def _arm(req: VideoRequest | FramesQuery, scen: ScenarioServing, experiment: str, where: str) -> str:
    """The caller's arm (checked) or a stable hash of (experiment, video_id)."""
    if req.arm is None:
        return assign_arm(experiment, req.video_id, {k: a.traffic for k, a in scen.arms.items()})
    if req.arm not in scen.arms:
        raise ServingInputError(f"{where}.arm: not an arm of scenario {req.scenario!r}; arms: {list(scen.arms)}")
    return req.arm


def validate_batch(
    videos: list[VideoRequest], cfg: ServingConfig, modalities: dict[str, list[str]] | None = None
) -> list[ValidVideo]:
    """Every video checked, the request's pixels counted from the headers, and only then decoded."""
    if not videos:
        raise ServingInputError("videos: empty, send at least one video")
    if len(videos) > cfg.limits.max_batch_videos:
        raise too_large(f"videos: {len(videos)} videos exceeds limit max_batch_videos={cfg.limits.max_batch_videos}")
    checked = [check_video(v, cfg, f"videos[{i}]", modalities) for i, v in enumerate(videos)]
    _within_request_pixels(checked, cfg, "videos")
    return [c.decode() for c in checked]


# ---- start-up checks ----------------------------------------------------------------------------


def short_reason(e: BaseException, n: int = 160) -> str:
    """An exception as one short line (start-up messages name the file; this says why)."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= n else text[: n - 3] + "..."


def resolve_store_models(tags: list[str]) -> dict[str, tuple[str, Path]]:
    """Config tag -> (full tag, folder) from the local BentoML model store (BENTOML_HOME), whose files are
    checked (check_model_files); never a remote store."""
    import bentoml
    from bentoml.exceptions import BentoMLException

    out = {}
    for tag in tags:
        try:
            m = bentoml.models.get(tag)
        except BentoMLException:
            home = os.environ.get("BENTOML_HOME", "~/bentoml")
            raise ConfigError(
                f"model {tag!r} is not in the BentoML model store ({home}); run `cpfd package` first"
            ) from None
        check_model_files(str(m.tag), Path(m.path))
        out[tag] = (str(m.tag), Path(m.path))
    return out


def check_model_files(tag: str, folder: Path) -> None:
    """The cheap checks of a packaged student before anything loads it: its JSON spec parses and its safetensors
    file is whole (header readable, data exactly as long as the header says). A CpfdError names tag and file."""
    from cpfd.conventions import CONFIG_FILE, WEIGHTS_FILE

    spec, weights = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    for f in (spec, weights, folder / "tokenizer"):
        if not f.exists():
            raise CpfdError(f"model {tag}: {f} is missing")
    try:
        json.loads(spec.read_text())
    except (OSError, ValueError) as e:
        raise CpfdError(f"model {tag}: {spec} is not readable JSON ({short_reason(e)})") from None
    try:
        _check_safetensors(weights)
    except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
        raise CpfdError(f"model {tag}: {weights} is not a whole safetensors file ({short_reason(e)})") from None


def _check_safetensors(path: Path) -> None:
    """Header length, JSON header, and file size = 8 + header + the largest tensor end offset."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"{size} bytes, shorter than a header")
        n = int.from_bytes(head, "little")
        if n > size - 8:
            raise ValueError("invalid header length")
        header = json.loads(f.read(n))
    end = max((int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end != size:
        raise ValueError(f"{size} bytes, the header describes {8 + n + end}: truncated or padded")


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
