"""Request bodies and query strings: the pydantic models of each route, and their validation errors as short
4xx messages that name the field and never echo the input."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, Field, StrictInt, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from cpfd.config import StrictModel
from cpfd.errors import CpfdError

from .config import HARD_MAX_ITEMS, Limits

M = TypeVar("M", bound=BaseModel)


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


def _integral(value: Any) -> Any:
    """A JSON number with no fraction (``42.0``) is an integer, as JSON Schema has it; a string or a bool is not."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class VideoRequest(RequestModel):
    """One video to classify. Unknown fields (a dense feature, say) are refused."""

    scenario: str = Field(description="a served scenario")
    video_id: Annotated[StrictInt, BeforeValidator(_integral)] = Field(
        ge=-(2**63), le=2**63 - 1, description="int64, as in the videos table"
    )
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


# list fields whose length has a configured limit: a longer list cites that limit (the models' own bound,
# HARD_MAX_ITEMS, only caps validation work)
LIST_LIMITS = {"frames": "max_frames_per_video", "frame_paths": "max_frames_per_video", "videos": "max_batch_videos"}


def input_error(e: ValidationError, where: str, limits: Limits | None = None) -> ServingInputError:
    """A request's first validation error as ``where.field: message``; no input, no class name. With ``limits``, a
    list longer than the models allow cites its configured limit."""
    err = e.errors(include_url=False, include_input=False)[0]
    msg = err["msg"][:160]
    if err["type"] == "json_invalid":
        return ServingInputError(f"body: not valid JSON ({msg.removeprefix('Invalid JSON: ')})")
    if err["type"] in ("model_type", "model_attributes_type", "dict_type"):
        msg = "must be a JSON object"
    more = f" (and {e.error_count() - 1} more errors)" if e.error_count() > 1 else ""
    field = (where + _loc(tuple(err["loc"]))).lstrip(".") or "body"
    limit = LIST_LIMITS.get(str(err["loc"][-1])) if err["loc"] else None
    if err["type"] == "too_long" and limits is not None and limit is not None:
        n = (err.get("ctx") or {}).get("actual_length")
        noun = "videos" if limit == "max_batch_videos" else "frames"
        count = f"{n} {noun}" if isinstance(n, int) else f"more than {HARD_MAX_ITEMS} {noun}"
        return ServingInputError(f"{field}: {count} exceeds limit {limit}={getattr(limits, limit)}")
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


def parse_request(model: type[M], body: bytes, where: str, limits: Limits | None = None) -> M:
    """A JSON body validated against ``model``; any failure is a ServingInputError."""
    try:
        return model.model_validate_json(body or b"{}")
    except ValidationError as e:
        raise input_error(e, where, limits) from None
