"""The HTTP front (serving/gate.py) in-process: every transport rule, on a stub app that records what reaches it."""

from __future__ import annotations

import asyncio
import json

import pytest

from cpfd.serving.config import Limits
from cpfd.serving.gate import Gate, Rejection, Route
from cpfd.serving.schemas import VideoRequest

TOKEN = "t0ken-0123456789abcdef"
ROUTES = {
    "/classify": Route(("POST",), "json", VideoRequest, "video", guarded=True),
    "/frames": Route(("POST",), "npy", guarded=True),
    "/livez": Route(("GET",)),
}


def make_gate(token: str | None = None, **limits) -> tuple[Gate, list[dict], list[Rejection]]:
    """A gate over a stub app that answers 200 with the body length and the request id it was given."""
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    seen: list[dict] = []
    rejected: list[Rejection] = []

    async def app(scope, receive, send):
        request = Request(scope, receive)
        body = await request.body()
        seen.append({"path": scope["path"], "body": body, "request_id": scope["state"]["request_id"]})
        if scope["path"] == "/classify" and b"slow" in body:
            await asyncio.sleep(0.5)
        await JSONResponse({"n": len(body)})(scope, receive, send)

    lim = Limits(**{"max_request_bytes": 2000, **limits})
    gate = Gate(app, ROUTES, lim, token, rejected.append, documents={"/docs.json": {"openapi": "3.1.0"}})
    return gate, seen, rejected


def client(gate):
    from starlette.testclient import TestClient

    return TestClient(gate)


VIDEO = {"scenario": "s", "video_id": 1, "title": "t"}
JSON_HEADERS = {"content-type": "application/json"}


def test_a_valid_request_reaches_the_app_with_its_request_id():
    gate, seen, rejected = make_gate()
    c = client(gate)
    r = c.post("/classify", json=VIDEO, headers={"x-request-id": "abc-1.2:3"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "abc-1.2:3"
    assert seen[-1]["request_id"] == "abc-1.2:3" and json.loads(seen[-1]["body"]) == VIDEO
    r = c.get("/livez")
    assert (
        r.status_code == 200
        and len(r.headers["x-request-id"]) == 32
        and seen[-1]["request_id"] == r.headers["x-request-id"]
    )
    assert c.get("/docs.json").json() == {"openapi": "3.1.0"} and rejected == []


@pytest.mark.parametrize(
    "method, path, body, headers, status, reason, needle",
    [
        ("GET", "/nope" + "x" * 500, None, {}, 404, "not_found", "not found"),
        ("DELETE", "/classify", None, {}, 405, "method_not_allowed", "allowed: POST"),
        (
            "POST",
            "/classify",
            b"a=b",
            {"content-type": "application/x-www-form-urlencoded"},
            415,
            "unsupported_media_type",
            "application/json",
        ),
        (
            "POST",
            "/classify",
            b"--x\r\n",
            {"content-type": "multipart/form-data"},
            415,
            "unsupported_media_type",
            "application/json",
        ),
        ("POST", "/classify", b"{}", {}, 415, "unsupported_media_type", "application/json"),
        ("POST", "/frames", b"{}", JSON_HEADERS, 415, "unsupported_media_type", "application/x-npy"),
        ("POST", "/classify", b"x" * 2001, JSON_HEADERS, 413, "too_large", "max_request_bytes=2000"),
        ("POST", "/classify", b"{bad", JSON_HEADERS, 400, "bad_input", "body: not valid JSON"),
        (
            "POST",
            "/classify",
            json.dumps({**VIDEO, "dense_00": 1}).encode(),
            JSON_HEADERS,
            400,
            "bad_input",
            "video: unknown field 'dense_00'",
        ),
        (
            "POST",
            "/classify",
            json.dumps(VIDEO).encode(),
            {**JSON_HEADERS, "x-request-id": "a b"},
            400,
            "bad_request_id",
            "X-Request-ID",
        ),
    ],
)
def test_each_transport_error_is_its_4xx_counted_and_never_reaches_the_app(
    method, path, body, headers, status, reason, needle
):
    gate, seen, rejected = make_gate()
    r = client(gate).request(method, path, content=body, headers=headers)
    assert r.status_code == status and needle in r.json()["error"], r.text
    assert r.json()["request_id"] == r.headers["x-request-id"]
    assert "x" * 50 not in r.text and 'dense_00": 1' not in r.text  # no input echoed
    assert seen == [] and [x.reason for x in rejected] == [reason]
    assert rejected[0].route in ("-", path)  # an unknown path is never a label


def test_chunked_bodies_are_bounded_too():
    gate, seen, _ = make_gate()
    c = client(gate)
    r = c.post("/classify", content=iter([b"x" * 1500, b"x" * 1500]), headers=JSON_HEADERS)
    assert r.status_code == 413
    r = c.post(
        "/classify", content=iter([b'{"scenario": "s", ', b'"video_id": 1, "title": "t"}']), headers=JSON_HEADERS
    )
    assert r.status_code == 200 and seen


def test_bearer_token_guards_the_api_but_not_the_probes():
    gate, seen, rejected = make_gate(token=TOKEN)
    c = client(gate)
    for headers in ({}, {"authorization": "Bearer wrong-token"}, {"authorization": f"Basic {TOKEN}"}):
        r = c.post("/classify", json=VIDEO, headers=headers)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert c.post("/classify", json=VIDEO, headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert c.get("/livez").status_code == 200 and c.get("/docs.json").status_code == 200
    assert [r.reason for r in rejected] == ["unauthorized"] * 3


def test_in_flight_cap_sheds_load_with_503_and_retry_after():
    gate, seen, rejected = make_gate(max_concurrent_requests=2)

    async def main():
        import httpx

        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gate), base_url="http://t") as c:
            body = json.dumps({**VIDEO, "title": "slow"})
            return await asyncio.gather(*(c.post("/classify", content=body, headers=JSON_HEADERS) for _ in range(5)))

    answers = asyncio.run(main())
    codes = sorted(r.status_code for r in answers)
    assert codes == [200, 200, 503, 503, 503]
    shed = [r for r in answers if r.status_code == 503]
    assert all(r.headers["retry-after"] == "1" and "max_concurrent_requests=2" in r.json()["error"] for r in shed)
    assert gate.in_flight == 0 and [r.reason for r in rejected] == ["overloaded"] * 3


def test_a_body_shorter_than_its_length_gets_408_in_body_timeout_s():
    gate, seen, rejected = make_gate(body_timeout_s=0.3)
    sent: list[dict] = []
    first = [{"type": "http.request", "body": b'{"scen', "more_body": True}]

    async def receive():
        if first:
            return first.pop()
        await asyncio.sleep(3600)  # the rest never comes

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/classify",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"100")],
    }
    asyncio.run(asyncio.wait_for(gate(scope, receive, send), 5))
    start = sent[0]
    assert start["status"] == 408 and (b"connection", b"close") in start["headers"]
    assert "body_timeout_s=0.3" in json.loads(sent[1]["body"])["error"] and seen == []


def test_the_service_attaches_the_gate_as_asgi_middleware_without_a_class_swap():
    from pathlib import Path

    serving = Path(__file__).resolve().parents[2] / "serving"
    for f in serving.glob("*.py"):
        assert "__class__ =" not in f.read_text(), f
    source = (serving / "service.py").read_text()
    assert "CpfdService.add_asgi_middleware(" in source and "to_asgi" not in source


def test_a_json_body_is_validated_once_and_handed_on_parsed():
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    handed: list = []

    async def app(scope, receive, send):
        handed.append(Request(scope, receive).state.parsed)
        await JSONResponse({})(scope, receive, send)

    gate = Gate(app, ROUTES, Limits())
    assert client(gate).post("/classify", json=VIDEO).status_code == 200
    assert isinstance(handed[0], VideoRequest) and handed[0].video_id == 1


def _scope(path: str = "/classify", length: int = 100, extra: list | None = None) -> dict:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(length).encode())]
    return {"type": "http", "method": "POST", "path": path, "headers": headers + (extra or []), "query_string": b""}


def test_slow_bodies_take_no_in_flight_slot_and_normal_requests_pass():
    """max_concurrent_requests bodies that never finish arriving; a normal request is still answered at once."""
    gate, seen, rejected = make_gate(max_concurrent_requests=2, body_timeout_s=2.0)

    async def never():
        await asyncio.sleep(3600)

    async def slow(sent: list) -> None:
        first = [{"type": "http.request", "body": b"{", "more_body": True}]

        async def receive():
            return first.pop() if first else await never()

        async def send(message):
            sent.append(message)

        await gate(_scope(), receive, send)

    async def main():
        import httpx

        slow_sent: list[list] = [[] for _ in range(6)]
        tasks = [asyncio.create_task(slow(s)) for s in slow_sent]
        await asyncio.sleep(0.1)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gate), base_url="http://t") as c:
            t0 = asyncio.get_running_loop().time()
            r = await c.post("/classify", json=VIDEO)
            elapsed = asyncio.get_running_loop().time() - t0
        assert gate.in_flight == 0  # the slow ones hold no slot
        await asyncio.gather(*tasks)
        return r, elapsed, slow_sent

    r, elapsed, slow_sent = asyncio.run(main())
    assert r.status_code == 200 and elapsed < 1.0
    assert all(sent[0]["status"] == 408 for sent in slow_sent)
    assert [x.reason for x in rejected] == ["body_timeout"] * 6


@pytest.mark.parametrize(
    "headers, path, status, needle",
    [
        ({"x-big": "a" * 20_000}, "/livez", 431, "exceeds limit max_header_bytes=16384"),
        ({f"x-h{i}": "v" for i in range(120)}, "/livez", 431, "exceeds limit max_header_count=100"),
        ({}, "/livez?" + "q" * 20_000, 414, "URL: "),
    ],
)
def test_oversized_request_heads_get_431_or_414_naming_the_limit(headers, path, status, needle):
    gate, seen, rejected = make_gate()
    r = client(gate).get(path, headers=headers)
    assert r.status_code == status and needle in r.json()["error"] and r.headers["connection"] == "close", r.text
    assert seen == [] and "aaaa" not in r.text


def test_guarded_routes_are_503_with_retry_after_while_the_models_load():
    loading = ["starting: the models are loading"]
    gate, seen, rejected = make_gate()
    gate.unavailable = lambda: loading[0] if loading else None
    c = client(gate)
    r = c.post("/classify", json=VIDEO)
    assert r.status_code == 503 and r.headers["retry-after"] == "1" and "models are loading" in r.json()["error"]
    assert c.get("/livez").status_code == 200  # probes still answer
    loading.clear()
    assert c.post("/classify", json=VIDEO).status_code == 200


def test_too_many_frames_cite_the_configured_limit_not_the_models_hard_cap():
    gate, seen, rejected = make_gate(max_request_bytes=1 << 20, max_frames_per_video=32)
    r = client(gate).post("/classify", json={**VIDEO, "frames": ["AAAA"] * 2048})
    assert (
        r.status_code == 400 and r.json()["error"] == "video.frames: 2048 frames exceeds limit max_frames_per_video=32"
    )
    assert "1024" not in r.text and seen == []


def test_metrics_behind_the_token_when_configured():
    from starlette.responses import PlainTextResponse

    async def app(scope, receive, send):
        await PlainTextResponse("cpfd_predictions 1")(scope, receive, send)

    routes = {**ROUTES, "/metrics": Route(("GET",), authorized=True)}
    c = client(Gate(app, routes, Limits(), TOKEN))
    assert c.get("/metrics").status_code == 401
    assert c.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"}).text == "cpfd_predictions 1"
    assert c.get("/livez").status_code == 200
