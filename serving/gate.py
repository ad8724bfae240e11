"""The service's HTTP front: every transport rule, applied before the framework sees a request.

``Gate`` is an ASGI middleware (serving/service.py attaches it with BentoML's ``add_asgi_middleware``). In order:

- the request head: headers over ``max_header_bytes`` or ``max_header_count`` get 431, a longer URL 414 (the
  server in front, uvicorn under BentoML, has read them by then: it buffers a header in full, no limit is passed);
- a path allowlist: an unknown path is a 404 here, before any route or metric sees it;
- methods: 405 with ``Allow``;
- request ids: ``X-Request-ID`` is honoured (1-128 of ``A-Za-z0-9._:-``, else 400) or made, returned on every
  answer and passed on in ``scope["state"]["request_id"]``;
- bearer-token auth on guarded routes: 401 with ``WWW-Authenticate``;
- guarded routes while the worker cannot answer them (its models still loading): 503 with ``Retry-After``;
- the body: its media type (415), size (413, from ``Content-Length`` or while reading) and arrival time (408),
  and a JSON body validated against the route's model (400 naming the field), once: the parsed model is passed
  on in ``scope["state"]["parsed"]``;
- a cap on guarded requests in flight, taken once the body has arrived (a slow client holds its own connection,
  never a slot): 503 with ``Retry-After`` (load shedding, no queue).

Every refusal is one short JSON ``{"error", "request_id"}`` that never echoes the input, one log line and one
call of ``on_reject`` (the service counts it by reason).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from .config import Limits
from .schemas import ServingInputError, parse_request

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REQUEST_ID_HEADER = "x-request-id"
REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
JSON = "application/json"
NPY = "application/x-npy"
RETRY_AFTER_S = 1
LARGE_BODY = 64 << 10  # JSON bodies above this are validated off the event loop
logger = logging.getLogger("cpfd.serving")


@dataclass(frozen=True)
class Route:
    """What a path accepts: methods, a body kind (and the JSON body's model), and whether it is guarded."""

    methods: tuple[str, ...]
    body: Literal["none", "json", "npy"] = "none"
    model: type[BaseModel] | None = None
    where: str = "body"  # the prefix of field names in error messages
    guarded: bool = False  # needs the token (when one is configured) and counts against the in-flight cap
    authorized: bool = False  # needs the token, not counted against the cap (/metrics when auth.metrics)


@dataclass(frozen=True)
class Rejection:
    status: int
    reason: str  # one of a fixed set: a metrics label
    message: str
    request_id: str
    route: str  # the matched route, or "-" for an unknown path (never the raw path)


class Refused(Exception):
    def __init__(self, status: int, reason: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.reason, self.message, self.headers = status, reason, message, headers or {}


def error_payload(message: str, request_id: str) -> bytes:
    return json.dumps({"error": message, "request_id": request_id}).encode()


class Gate:
    def __init__(
        self,
        app: ASGIApp,
        routes: dict[str, Route],
        limits: Limits,
        token: str | None = None,
        on_reject: Callable[[Rejection], None] | None = None,
        open_prefixes: tuple[str, ...] = (),
        documents: dict[str, dict] | None = None,
        unavailable: Callable[[], str | None] | None = None,
    ):
        self.app, self.routes, self.limits, self.token = app, dict(routes), limits, token
        self.on_reject = on_reject or (lambda r: None)
        self.unavailable = unavailable or (lambda: None)  # why guarded routes cannot be answered now (loading)
        self.open_prefixes = open_prefixes
        self.documents = {path: json.dumps(doc).encode() for path, doc in (documents or {}).items()}
        self.routes.update({path: Route(methods=("GET",)) for path in self.documents})
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        oversized = self._oversized_head(scope)  # before anything reads a header
        headers = {} if oversized else _headers(scope)
        given = headers.get(REQUEST_ID_HEADER)
        request_id = given if given is not None and REQUEST_ID_RE.fullmatch(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        send = _with_request_id(send, request_id)
        name = "-"
        try:
            if oversized is not None:
                raise oversized
            name, route = self._route(scope)
            if given is not None and given != request_id:
                raise Refused(400, "bad_request_id", "X-Request-ID: must be 1-128 characters of A-Za-z0-9._:-")
            if route is None:
                return await self.app(scope, receive, send)
            if name in self.documents:
                return await _send_json(send, self.documents[name])
            if route.guarded or route.authorized:
                self._authorize(headers)
            if route.guarded:
                self._check_available()
            if route.body != "none":  # read before taking a slot: a slow body holds only its own connection
                receive = await self._body(scope, headers, route, receive)
            if route.guarded:
                self._check_capacity()
            self.in_flight += route.guarded
            try:
                await self.app(scope, receive, send)
            finally:
                self.in_flight -= route.guarded
        except Refused as r:
            await self.refuse(send, Rejection(r.status, r.reason, r.message, request_id, name), r.headers)

    def _oversized_head(self, scope: Scope) -> Refused | None:
        """431 for headers over max_header_bytes or max_header_count, 414 for a longer URL; counted on the raw
        bytes, before any header is decoded."""
        lim = self.limits
        raw = scope.get("headers") or []
        if len(raw) > lim.max_header_count:
            message = f"request headers: {len(raw)} headers exceeds limit max_header_count={lim.max_header_count}"
            return Refused(431, "headers_too_large", message, {"connection": "close"})
        size = sum(len(k) + len(v) + 4 for k, v in raw)
        if size > lim.max_header_bytes:
            message = f"request headers: {size} bytes exceeds limit max_header_bytes={lim.max_header_bytes}"
            return Refused(431, "headers_too_large", message, {"connection": "close"})
        url = len(scope.get("raw_path") or scope["path"].encode()) + len(scope.get("query_string") or b"")
        if url > lim.max_header_bytes:
            message = f"URL: {url} bytes exceeds limit max_header_bytes={lim.max_header_bytes}"
            return Refused(414, "uri_too_long", message, {"connection": "close"})
        return None

    def _check_available(self) -> None:
        reason = self.unavailable()
        if reason is not None:
            raise Refused(503, "starting", f"{reason}; retry later", {"retry-after": str(RETRY_AFTER_S)})

    def _check_capacity(self) -> None:
        cap = self.limits.max_concurrent_requests
        if self.in_flight >= cap:
            raise Refused(
                503,
                "overloaded",
                f"overloaded: {self.in_flight} requests in flight, limit max_concurrent_requests={cap}; retry later",
                {"retry-after": str(RETRY_AFTER_S)},
            )

    def _route(self, scope: Scope) -> tuple[str, Route | None]:
        """(route name, route); None for an open prefix (passed on as it is). Unknown path: 404."""
        path, method = scope["path"], scope["method"]
        route = self.routes.get(path)
        if route is None:
            if path.startswith(self.open_prefixes):
                return "-", None
            raise Refused(404, "not_found", "not found: see /docs.json for the API")
        if method not in route.methods and not (method == "HEAD" and "GET" in route.methods):
            allow = ", ".join(route.methods)
            raise Refused(405, "method_not_allowed", f"method not allowed; allowed: {allow}", {"allow": allow})
        return path, route

    def _authorize(self, headers: dict[str, str]) -> None:
        if self.token is None:
            return
        scheme, _, given = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.token.encode()):
            raise Refused(
                401, "unauthorized", "Authorization: a valid bearer token is required", {"www-authenticate": "Bearer"}
            )

    async def _body(self, scope: Scope, headers: dict[str, str], route: Route, receive: Receive) -> Receive:
        """Checks and reads the body; returns a receive that replays it."""
        media = headers.get("content-type", "").split(";")[0].strip().lower()
        expected = JSON if route.body == "json" else NPY
        if media != expected:
            raise Refused(415, "unsupported_media_type", f"Content-Type: must be {expected}", {"connection": "close"})
        limit = self.limits.max_request_bytes
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            raise Refused(413, "too_large", f"body: exceeds limit max_request_bytes={limit}", {"connection": "close"})
        body = await self._read(receive, limit)
        if route.model is not None:  # validated once, here: the route reads the parsed model from the scope
            try:
                if len(body) > LARGE_BODY:
                    parsed = await asyncio.to_thread(parse_request, route.model, body, route.where, self.limits)
                else:
                    parsed = parse_request(route.model, body, route.where, self.limits)
            except ServingInputError as e:
                raise Refused(e.status, e.reason, str(e)) from None
            scope["state"]["parsed"] = parsed
        replay = [{"type": "http.request", "body": body, "more_body": False}]

        async def replay_receive() -> Message:
            return replay.pop() if replay else await receive()

        return replay_receive

    async def _read(self, receive: Receive, limit: int) -> bytes:
        timeout = self.limits.body_timeout_s
        deadline = time.monotonic() + timeout
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            try:
                message = await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0.0))
            except TimeoutError:
                raise Refused(
                    408,
                    "body_timeout",
                    f"body: not received within body_timeout_s={timeout:g}",
                    {"connection": "close"},
                ) from None
            if message["type"] == "http.disconnect":
                raise Refused(400, "disconnected", "body: the client disconnected", {"connection": "close"})
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise Refused(
                    413, "too_large", f"body: exceeds limit max_request_bytes={limit}", {"connection": "close"}
                )
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)

    async def refuse(self, send: Send, rejection: Rejection, headers: dict[str, str] | None = None) -> None:
        """Answer a refusal: JSON error, its headers, one log line, the callback."""
        body = error_payload(rejection.message, rejection.request_id)
        raw = [(b"content-type", JSON.encode()), (b"content-length", str(len(body)).encode())]
        raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
        await send({"type": "http.response.start", "status": rejection.status, "headers": raw})
        await send({"type": "http.response.body", "body": body})
        log_rejection(rejection)
        self.on_reject(rejection)


def log_rejection(r: Rejection) -> None:
    """One line per refused request (WARNING for a client error, ERROR for the server's own), no traceback."""
    level = logging.ERROR if r.status >= 500 and r.reason != "overloaded" else logging.WARNING
    logger.log(
        level, "refused %s request_id=%s route=%s reason=%s: %s", r.status, r.request_id, r.route, r.reason, r.message
    )


async def _send_json(send: Send, body: bytes) -> None:
    headers = [(b"content-type", JSON.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}


def _with_request_id(send: Send, request_id: str) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers") or [] if k.lower() != REQUEST_ID_HEADER.encode()]
            message = {**message, "headers": [*headers, (REQUEST_ID_HEADER.encode(), request_id.encode())]}
        await send(message)

    return wrapped
