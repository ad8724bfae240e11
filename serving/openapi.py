"""The service's OpenAPI 3.1 document, built from the serving config: the real constraints (served scenario
and arm names, the limits of serving/config.yaml) and every status an operation answers.

Each scenario's request is its own schema (``oneOf`` on ``scenario``): its arms, and a title and frames required
exactly when its models read them. Every bound the service enforces on a field is in the schema (a violation is a
400); what JSON Schema cannot state is a named format (``cpfd-frame``, ``cpfd-npy-frames``) with its constraints in
the description, and the limits summed over a request (body bytes, pixels: 413).
"""

from __future__ import annotations

from typing import Any

from cpfd.config import ALL_MODALITIES

from .config import HARD_MAX_ITEMS, ServingConfig
from .frames import b64_chars
from .gate import NPY, REQUEST_ID_RE, Route

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


FRAME_FORMAT = "cpfd-frame"  # a base64 JPEG or PNG within the frame limits (what a schema cannot spell out)
NPY_FORMAT = "cpfd-npy-frames"  # a .npy of uint8 [frames, height, width, 3] within the limits


def build_spec(
    cfg: ServingConfig, routes: dict[str, Route], auth: bool, inputs: dict[str, list[str]] | None = None
) -> dict[str, Any]:
    """The document for ``routes`` (the gate's table) under ``cfg``; ``inputs`` (scenario -> what its models read,
    default both) decides which fields each scenario's request requires."""
    lim = cfg.limits
    inputs = inputs or {s: list(ALL_MODALITIES) for s in cfg.scenarios}
    per_scenario = {f"Video_{s}": _video(cfg, s, inputs[s]) for s in sorted(cfg.scenarios)}
    video: dict[str, Any] = {
        "oneOf": [{"$ref": f"#/components/schemas/{name}"} for name in per_scenario],
        "discriminator": {
            "propertyName": "scenario",
            "mapping": {s: f"#/components/schemas/Video_{s}" for s in sorted(cfg.scenarios)},
        },
        "description": "one video; which fields are required depends on what the scenario's models read",
    }
    schemas = {
        "Video": video,
        **per_scenario,
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
    operations = _operations(cfg, routes, auth, inputs)
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


def _video(cfg: ServingConfig, scenario: str, reads: list[str]) -> dict[str, Any]:
    """The request of one scenario: its arms, and a title and frames required exactly when its models read them."""
    lim = cfg.limits
    title: dict[str, Any] = {"type": "string", "maxLength": lim.max_title_chars}
    if "title" not in reads:
        title = {"type": ["string", "null"], "maxLength": lim.max_title_chars, "description": "ignored"}
    frame: dict[str, Any] = {
        "type": "string",
        "format": FRAME_FORMAT,
        "contentEncoding": "base64",
        "maxLength": b64_chars(lim),
        "description": f"a JPEG or PNG of at most {lim.max_frame_bytes} bytes, {lim.max_frame_side} pixels a side "
        f"and {lim.max_frame_pixels} pixels (read from its header before decoding: 413); undecodable: 400",
    }
    frames: dict[str, Any] = {
        "type": "array",
        "maxItems": lim.max_frames_per_video,
        "items": frame if "frames" in reads else {"type": "string"},
        "description": f"all of one size, {lim.max_request_pixels} pixels in the whole request (else 413)"
        if "frames" in reads
        else "ignored: this scenario's models read no frames",
    }
    required = ["scenario", "video_id"]
    if "title" in reads:
        required.append("title")
    if "frames" in reads and not cfg.allow_frame_paths:
        frames["minItems"] = 1
        required.append("frames")
    arms = list(cfg.scenarios[scenario].arms)
    props: dict[str, Any] = {
        "scenario": {"type": "string", "enum": [scenario]},
        "video_id": INT64,
        "title": title,
        "frames": frames,
        "arm": {
            "type": ["string", "null"],
            "enum": [*arms, None],
            "description": "absent or null: a stable hash of experiment and video_id",
        },
    }
    if cfg.allow_frame_paths:
        props["frame_paths"] = {
            "type": "array",
            "maxItems": lim.max_frames_per_video,
            "items": {"type": "string"},
            "description": "local image files instead of frames (one of the two is required: else 400)",
        }
    return {"type": "object", "additionalProperties": False, "required": required, "properties": props}


def _operations(
    cfg: ServingConfig, routes: dict[str, Route], auth: bool, inputs: dict[str, list[str]]
) -> dict[str, Any]:
    lim = cfg.limits
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
            {"required": True, "content": {NPY: {"schema": _npy_body(cfg)}}},
            _ok("Prediction"),
            cfg,
            auth,
            parameters=_frames_query(cfg, inputs),
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
    return operations


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
        "400": _error(
            "invalid input, a bound of this document included (title length, frames, videos): the error names "
            "the field and the limit"
        ),
        "403": _error("frame_paths sent while the deployment does not allow them"),
        "408": _error(f"the body did not arrive within {lim.body_timeout_s:g} s"),
        "413": _error(
            f"a limit no schema states: body {lim.max_request_bytes} bytes, a frame's {lim.max_frame_side} pixels a "
            f"side or {lim.max_frame_pixels} pixels, {lim.max_request_pixels} pixels in the request, "
            f"{lim.max_frames_per_video} frames in a .npy"
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


def _npy_body(cfg: ServingConfig) -> dict[str, Any]:
    lim = cfg.limits
    return {
        "type": "string",
        "format": NPY_FORMAT,
        "contentMediaType": NPY,
        "description": "a .npy file, NumPy format 1.0 or 2.0, of a C-order uint8 array [frames, height, width, 3]: "
        f"1 to {lim.max_frames_per_video} frames of at least 1 x 1 pixel, at most {lim.max_frame_side} pixels a "
        f"side, {lim.max_frame_pixels} a frame and {lim.max_request_pixels} in all (else 413), the data exactly as "
        "long as the header's shape needs; any other body: 400",
    }


def _frames_query(cfg: ServingConfig, inputs: dict[str, list[str]]) -> list[dict[str, Any]]:
    """The query of /classify_frames; title is required when every scenario's models read titles."""
    lim = cfg.limits
    title_needed = all("title" in reads for reads in inputs.values())
    mixed = not title_needed and any("title" in reads for reads in inputs.values())
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
            "required": title_needed,
            "schema": {"type": "string", "maxLength": lim.max_title_chars},
            **({"description": "required for the scenarios whose models read titles (else 400)"} if mixed else {}),
        },
        {
            "name": "arm",
            "in": "query",
            "required": False,
            "schema": {"type": "string", "enum": cfg.arm_names()},
            "description": "an arm of the scenario (else 400)",
        },
    ]
