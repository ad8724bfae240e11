"""The service's OpenAPI 3.1 document, built from the serving config: the real constraints (served scenario
and arm names, the limits of serving/config.yaml) and every status an operation answers.

What a schema cannot say is in the descriptions: a frame must decode as a JPEG/PNG within the pixel limits
(else 400/413), a scenario whose models read titles needs a title, one that reads frames needs frames.
"""

from __future__ import annotations

from typing import Any

from serving.config import HARD_MAX_ITEMS, ServingConfig
from serving.gate import NPY, REQUEST_ID_RE, Route

INT64 = {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1}
REQUEST_ID = {
    "name": "X-Request-ID",
    "in": "header",
    "required": False,
    "description": "the caller's request id, returned in the answer and stored in the prediction log; "
    "one is made when absent",
    "schema": {"type": "string", "pattern": f"^{REQUEST_ID_RE.pattern}$"},
}
ID_HEADER = {"X-Request-ID": {"required": True, "schema": {"type": "string"}}}
ERROR_REF = {"$ref": "#/components/schemas/Error"}


def build_spec(cfg: ServingConfig, routes: dict[str, Route], auth: bool) -> dict[str, Any]:
    """The document for ``routes`` (the gate's table) under ``cfg``."""
    lim = cfg.limits
    b64_chars = 4 * ((lim.max_frame_bytes + 2) // 3)
    video = {
        "type": "object",
        "additionalProperties": False,
        "required": ["scenario", "video_id"],
        "properties": {
            "scenario": {"type": "string", "enum": sorted(cfg.scenarios)},
            "video_id": INT64,
            "title": {
                "type": ["string", "null"],
                "maxLength": lim.max_title_chars,
                "description": "required when the scenario's models read titles (else 400); longer: 413",
            },
            "frames": {
                "type": "array",
                "maxItems": lim.max_frames_per_video,
                "description": "required (at least one) when the scenario's models read frames; ignored otherwise. "
                f"Each a JPEG or PNG, all of one size, at most {lim.max_frame_side} pixels a side and "
                f"{lim.max_frame_pixels} pixels a frame, {lim.max_request_pixels} pixels in the whole request "
                "(read from the image headers before decoding: 413); an undecodable image: 400",
                "items": {"type": "string", "contentEncoding": "base64", "maxLength": b64_chars},
            },
            "arm": {
                "type": ["string", "null"],
                "enum": [*cfg.arm_names(), None],
                "description": "an arm of the scenario (else 400); absent: a stable hash of experiment and video_id",
            },
        },
    }
    if cfg.allow_frame_paths:
        video["properties"]["frame_paths"] = {  # type: ignore[index]
            "type": "array",
            "maxItems": lim.max_frames_per_video,
            "items": {"type": "string"},
            "description": "local image files instead of frames",
        }
    schemas = {
        "Video": video,
        "Batch": {
            "type": "object",
            "additionalProperties": False,
            "required": ["videos"],
            "properties": {
                "videos": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": min(lim.max_batch_videos, HARD_MAX_ITEMS),
                    "items": {"$ref": "#/components/schemas/Video"},
                }
            },
        },
        "Prediction": _prediction(),
        "Predictions": {
            "type": "object",
            "required": ["predictions"],
            "properties": {"predictions": {"type": "array", "items": {"$ref": "#/components/schemas/Prediction"}}},
        },
        "Error": {
            "type": "object",
            "required": ["error", "request_id"],
            "properties": {
                "error": {"type": "string", "description": "names the field and the limit; never echoes input"},
                "request_id": {"type": "string"},
            },
        },
    }
    example = example_video(cfg)
    operations = {
        "/classify": _post(
            "Classify one video (JSON, base64 frames)", _json_body("Video", example), _ok("Prediction"), cfg, auth
        ),
        "/classify_batch": _post(
            f"Classify up to {lim.max_batch_videos} videos (JSON)",
            _json_body("Batch", {"videos": [example, {**example, "video_id": 43}]}),
            _ok("Predictions"),
            cfg,
            auth,
        ),
        "/classify_frames": _post(
            "Classify one video whose frames are already decoded: the body is a .npy (NumPy format 1.0/2.0) of a "
            f"C-order uint8 array [frames, height, width, 3] (at most {lim.max_frames_per_video} frames; the "
            "pixel limits of /classify), the other fields are query parameters",
            {"required": True, "content": {NPY: {"schema": {"type": "string", "format": "binary"}}}},
            _ok("Prediction"),
            cfg,
            auth,
            parameters=_frames_query(cfg),
        ),
        "/info": _post(
            "Served scenarios, arms, model tags, modalities, batching, and the dense-feature guard",
            _json_body(None),
            {
                "description": "the deployment",
                "headers": ID_HEADER,
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            cfg,
            auth,
        ),
        "/livez": _get("the worker is alive", "text/plain"),
        "/healthz": _get("alias of /livez", "text/plain"),
        "/readyz": _get("every model is loaded and the prediction log takes writes (else 503)", "text/plain", 503),
        "/metrics": _get(
            "Prometheus metrics: cpfd_predictions{scenario, arm} and cpfd_rejected_requests{reason}",
            "text/plain",
            secured="/metrics" in routes and routes["/metrics"].authorized,
        ),
        "/docs.json": _get("this document", "application/json"),
        "/": _get("the framework's API browser", "text/html"),
    }
    unknown = set(operations) - set(routes) - {"/docs.json"}
    if unknown:
        raise ValueError(f"documented paths the gate does not route: {sorted(unknown)}")
    spec: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "cpfd_students",
            "version": "1",
            "description": "CPFD students behind one service: every configured scenario, A/B arms, a prediction log.",
        },
        "paths": operations,
        "components": {"schemas": schemas},
    }
    if auth:
        spec["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    return spec


def _prediction() -> dict[str, Any]:
    props = {
        "label": {"type": "string"},
        "label_index": {"type": "integer", "minimum": 0},
        "probabilities": {"type": "object", "additionalProperties": {"type": "number"}},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "scenario": {"type": "string"},
        "video_id": INT64,
        "experiment": {"type": "string"},
        "arm": {"type": "string"},
        "model_tag": {"type": "string"},
        "latency_ms": {"type": "number", "minimum": 0},
        "request_id": {"type": "string", "description": "this prediction's row in the log"},
    }
    return {"type": "object", "required": sorted(props), "properties": props}


def _json_body(schema: str | None, example: dict[str, Any] | None = None) -> dict[str, Any]:
    body = (
        {"$ref": f"#/components/schemas/{schema}"}
        if schema
        else {"type": "object", "additionalProperties": False, "maxProperties": 0}
    )
    media: dict[str, Any] = {"schema": body}
    if example is not None:
        media["example"] = example
    return {"required": True, "content": {"application/json": media}}


def example_video(cfg: ServingConfig) -> dict[str, Any]:
    """A request every served scenario answers: a title and two 8 x 8 PNG frames."""
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (120, 60, 30)).save(buf, format="PNG")
    frame = base64.b64encode(buf.getvalue()).decode()
    return {"scenario": sorted(cfg.scenarios)[0], "video_id": 42, "title": "a short title", "frames": [frame] * 2}


def _ok(schema: str) -> dict[str, Any]:
    return {
        "description": "answered; the prediction is in the log",
        "headers": ID_HEADER,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {**ID_HEADER, **(headers or {})},
        "content": {"application/json": {"schema": ERROR_REF}},
    }


def _post(
    summary: str,
    body: dict[str, Any],
    ok: dict[str, Any],
    cfg: ServingConfig,
    auth: bool,
    parameters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    lim = cfg.limits
    retry = {"Retry-After": {"required": True, "schema": {"type": "string"}}}
    responses = {
        "200": ok,
        "400": _error("invalid input: the error names the field"),
        "403": _error("frame_paths sent while the deployment does not allow them"),
        "408": _error(f"the body did not arrive within {lim.body_timeout_s:g} s"),
        "413": _error(
            f"a size limit: body {lim.max_request_bytes} bytes, title {lim.max_title_chars} characters, "
            f"{lim.max_frames_per_video} frames, {lim.max_batch_videos} videos, frame and request pixels"
        ),
        "415": _error("the body is not of the operation's media type"),
        "431": _error(f"request headers over {lim.max_header_bytes} bytes or {lim.max_header_count} headers"),
        "503": _error(
            f"overloaded ({lim.max_concurrent_requests} requests in flight), the worker's models still loading "
            "(after a start or a restart), or the prediction log unavailable",
            retry,
        ),
    }
    if auth:
        responses["401"] = _error(
            "no valid bearer token", {"WWW-Authenticate": {"required": True, "schema": {"type": "string"}}}
        )
    op: dict[str, Any] = {
        "summary": summary,
        "parameters": [REQUEST_ID, *(parameters or [])],
        "requestBody": body,
        "responses": responses,
    }
    if auth:
        op["security"] = [{"bearer": []}]
    return {"post": op}


def _get(summary: str, media: str, other: int | None = None, secured: bool = False) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": {"description": summary, "content": {media: {"schema": {"type": "string"}}}}}
    if other is not None:
        responses[str(other)] = {"description": "not ready", "content": {media: {"schema": {"type": "string"}}}}
    responses["400"] = _error("an invalid X-Request-ID")
    responses["431"] = _error("request headers over the limits max_header_bytes and max_header_count")
    op: dict[str, Any] = {"summary": summary, "parameters": [REQUEST_ID], "responses": responses}
    if secured:
        responses["401"] = _error(
            "no valid bearer token", {"WWW-Authenticate": {"required": True, "schema": {"type": "string"}}}
        )
        op["security"] = [{"bearer": []}]
    return {"get": op}


def _frames_query(cfg: ServingConfig) -> list[dict[str, Any]]:
    lim = cfg.limits
    return [
        {
            "name": "scenario",
            "in": "query",
            "required": True,
            "schema": {"type": "string", "enum": sorted(cfg.scenarios)},
        },
        {"name": "video_id", "in": "query", "required": True, "schema": INT64},
        {
            "name": "title",
            "in": "query",
            "required": False,
            "schema": {"type": "string", "maxLength": lim.max_title_chars},
        },
        {"name": "arm", "in": "query", "required": False, "schema": {"type": "string", "enum": cfg.arm_names()}},
    ]
