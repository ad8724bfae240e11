"""Serving logic without a server: config, limits, decoding, arms, batching, packaging, preprocessing parity."""

from __future__ import annotations

import asyncio
import base64
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cpfd.errors import ConfigError, CpfdError
from cpfd.serving_core import (
    BodyLimit,
    ServingConfig,
    ServingInputError,
    VideoRequest,
    assign_arm,
    decode_image,
    load_serving_config,
    validate_batch,
    validate_video,
)

REPO = Path(__file__).resolve().parents[2]


def b64_image(arr: np.ndarray, fmt: str = "PNG") -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return base64.b64encode(buf.getvalue()).decode()


def frames_b64(n=4, size=16, seed=0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [b64_image(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(n)]


@pytest.fixture
def cfg() -> ServingConfig:
    return ServingConfig.model_validate(
        {
            "experiment": "exp1",
            "scenarios": {
                "clickbait": {
                    "arms": {"control": {"model": "a", "traffic": 0.5}, "treatment": {"model": "b", "traffic": 0.5}}
                },
                "originality": {
                    "experiment": "exp2",
                    "arms": {"control": {"model": "c", "traffic": 0.8}, "treatment": {"model": "d", "traffic": 0.2}},
                },
            },
            "limits": {
                "max_frames_per_video": 6,
                "max_frame_bytes": 4000,
                "max_title_chars": 50,
                "max_batch_videos": 3,
                "max_frame_side": 64,
                "max_request_bytes": 100_000,
            },
        }
    )


def test_example_config_is_valid():
    cfg = load_serving_config(REPO / "serving" / "config.yaml")
    assert set(cfg.scenarios) == {"clickbait", "originality"}
    assert Path(cfg.prediction_log).is_absolute() and not cfg.allow_frame_paths


@pytest.mark.parametrize(
    "text, needle",
    [
        (
            "scenarios: {s: {arms: {control: {model: a, traffic: 0.6}, treatment: {model: b, traffic: 0.6}}}}",
            "sum to 1.2",
        ),
        ("scenarios: {s: {arms: {control: {model: a, traffic: 1}}}}\nbogus: 1", "bogus"),
        ("scenarios: {}", "scenarios"),
    ],
)
def test_bad_config_is_named(tmp_path, text, needle):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load_serving_config(p)


@pytest.mark.parametrize(
    "traffic",
    [{"control": 0.5, "treatment": 0.5}, {"control": 0.8, "treatment": 0.2}, {"control": 0.1, "treatment": 0.9}],
)
def test_arm_split_matches_traffic_and_is_stable(traffic):
    arms = [assign_arm("exp", vid, traffic) for vid in range(1000)]
    share = arms.count("treatment") / 1000
    assert abs(share - traffic["treatment"]) <= 0.03
    assert arms == [assign_arm("exp", vid, traffic) for vid in range(1000)]
    other = [assign_arm("another-exp", vid, traffic) for vid in range(1000)]
    assert other != arms  # the experiment name reshuffles the assignment


def test_valid_video_and_caller_arm(cfg):
    v = validate_video(VideoRequest(scenario="originality", video_id=7, title="hi", frames=frames_b64()), cfg)
    assert v.frames.shape == (4, 16, 16, 3) and v.frames.dtype == np.uint8
    assert v.experiment == "exp2" and v.arm == assign_arm("exp2", 7, {"control": 0.8, "treatment": 0.2})
    v = validate_video(
        VideoRequest(scenario="clickbait", video_id=7, title="", frames=frames_b64(), arm="treatment"), cfg
    )
    assert v.arm == "treatment" and v.experiment == "exp1"


def test_jpeg_and_grayscale_decode(cfg):
    from PIL import Image

    jpeg = base64.b64decode(b64_image(np.full((16, 16, 3), 200, np.uint8), "JPEG"))
    assert decode_image(jpeg, cfg.limits, "f").shape == (16, 16, 3)
    buf = io.BytesIO()
    Image.fromarray(np.zeros((16, 16), np.uint8), mode="L").save(buf, format="PNG")
    assert decode_image(buf.getvalue(), cfg.limits, "f").shape == (16, 16, 3)


def _bad_cases():
    ok = {"scenario": "clickbait", "video_id": 1, "title": "t", "frames": frames_b64()}
    big = b64_image(np.random.default_rng(0).integers(0, 256, (60, 60, 3), dtype=np.uint8))
    gif = base64.b64encode(b"GIF89a" + b"\0" * 20).decode()
    truncated = base64.b64encode(base64.b64decode(ok["frames"][0])[:30]).decode()
    return [
        ({**ok, "scenario": "nope"}, 400, "unknown scenario 'nope'"),
        ({**ok, "title": "x" * 51}, 413, "max_title_chars=50"),
        ({**ok, "frames": []}, 400, "frames: empty"),
        ({**ok, "frames": frames_b64(7)}, 413, "max_frames_per_video=6"),
        ({**ok, "frames": ["not base64!"]}, 400, "frames[0]: not valid base64"),
        ({**ok, "frames": [gif]}, 400, "not a JPEG or PNG"),
        ({**ok, "frames": [truncated]}, 400, "undecodable PNG"),
        ({**ok, "frames": [big]}, 413, "max_frame_bytes=4000"),
        ({**ok, "frames": [b64_image(np.zeros((65, 8, 3), np.uint8))]}, 413, "max_frame_side=64"),
        ({**ok, "frames": [ok["frames"][0], b64_image(np.zeros((8, 8, 3), np.uint8))]}, 400, "different shapes"),
        ({**ok, "arm": "zzz"}, 400, "unknown arm 'zzz'"),
        ({**ok, "frames": [], "frame_paths": ["/etc/hostname"]}, 403, "allow_frame_paths"),
    ]


@pytest.mark.parametrize("body, status, needle", _bad_cases())
def test_bad_video_is_refused_with_its_reason(cfg, body, status, needle):
    with pytest.raises(ServingInputError) as e:
        validate_video(VideoRequest(**body), cfg)
    assert e.value.status == status and needle in str(e.value)


def test_batch_limits(cfg):
    ok = VideoRequest(scenario="clickbait", video_id=1, title="t", frames=frames_b64())
    with pytest.raises(ServingInputError, match="videos: empty"):
        validate_batch([], cfg)
    with pytest.raises(ServingInputError, match="max_batch_videos=3"):
        validate_batch([ok] * 4, cfg)
    with pytest.raises(ServingInputError, match=r"videos\[1\].scenario"):
        validate_batch([ok, ok.model_copy(update={"scenario": "x"})], cfg)


def test_extra_fields_like_dense_features_are_refused():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="dense_00"):
        VideoRequest(scenario="clickbait", video_id=1, title="t", frames=frames_b64(), dense_00=1.0)


def test_frame_paths_when_enabled(cfg, tmp_path):
    p = tmp_path / "f.png"
    p.write_bytes(base64.b64decode(frames_b64(1)[0]))
    cfg = cfg.model_copy(update={"allow_frame_paths": True})
    v = validate_video(VideoRequest(scenario="clickbait", video_id=1, title="t", frame_paths=[str(p)] * 2), cfg)
    assert v.frames.shape == (2, 16, 16, 3)
    with pytest.raises(ServingInputError, match="no such file"):
        validate_video(
            VideoRequest(scenario="clickbait", video_id=1, title="t", frame_paths=[str(tmp_path / "x.png")]), cfg
        )


def test_body_limit_middleware():
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    async def echo(request: Request):
        return JSONResponse({"n": len(await request.body())})

    app = Starlette(routes=[Route("/", echo, methods=["POST"])])
    client = TestClient(BodyLimit(app, max_bytes=1000))
    assert client.post("/", content=b"x" * 1000).json() == {"n": 1000}
    r = client.post("/", content=b"x" * 1001)
    assert r.status_code == 413 and "max_request_bytes=1000" in r.json()["error"]
    r = client.post("/", content=iter([b"x" * 600, b"x" * 600]))  # chunked: no Content-Length
    assert r.status_code == 413
    assert client.post("/", content=iter([b"x" * 300, b"x" * 300])).json() == {"n": 600}


def test_import_guard_refuses_feast():
    code = (
        "from cpfd.serving_core import forbid_imports, forbidden_loaded\nforbid_imports()\n"
        "try:\n    import feast\nexcept ImportError as e:\n    print('refused:', e)\nprint(forbidden_loaded())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "refused: feast may not be imported in the serving process" in out.stdout and "[]" in out.stdout


def test_micro_batcher_merges_and_survives_errors():
    import time
    from concurrent.futures import ThreadPoolExecutor

    from cpfd.serving_runtime import MicroBatcher

    calls = []

    def fn(items):
        calls.append(len(items))
        time.sleep(0.02)
        if "boom" in items:
            raise ValueError("boom")
        return [x * 10 for x in items]

    async def main():
        with ThreadPoolExecutor(1) as ex:
            b = MicroBatcher(fn, ex, max_batch_size=8)
            outs = await asyncio.gather(*(b.submit([i, i + 100]) for i in range(12)))
            assert outs == [[i * 10, (i + 100) * 10] for i in range(12)]
            assert max(calls) <= 8 and len(calls) < 12
            res = await asyncio.gather(b.submit(["boom"]), b.submit([1]), return_exceptions=True)
            assert any(isinstance(r, ValueError) for r in res)
            assert await b.submit([3]) == [30]
            off = MicroBatcher(fn, ex, enabled=False)
            calls.clear()
            await asyncio.gather(*(off.submit([i]) for i in range(4)))
            assert calls == [1, 1, 1, 1]

    asyncio.run(main())


# ---- packaging and preprocessing parity (real model folders, no training) -----------------------


@pytest.fixture(scope="module")
def fresh_models(clickbait_data, tiny_project, tmp_path_factory):
    from cpfd.models import save_model
    from cpfd.training.recipes import new_model

    out = tmp_path_factory.mktemp("fresh")
    for role in ("student", "teacher"):
        save_model(
            new_model(clickbait_data, tiny_project.model, role, 0),
            out / role,
            clickbait_data.tokenizer,
            {"role": role, "scenario": "clickbait", "method": "ce"},
        )
    return out


def _run_cli(args, home):
    import os

    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True"}
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_package_refuses_teacher_and_pickles(fresh_models, tmp_path):
    import shutil

    from cpfd.packaging import package_model

    out = _run_cli(["package", "--model", str(fresh_models / "teacher"), "--name", "t1"], tmp_path / "home")
    assert out.returncode == 2 and "is a teacher" in out.stderr and "Traceback" not in out.stderr
    bad = tmp_path / "student_with_pickle"
    shutil.copytree(fresh_models / "student", bad)
    (bad / "tokenizer" / "extra.pkl").write_bytes(b"\x80\x04.")
    with pytest.raises(CpfdError, match="extra.pkl"):
        package_model(bad, "s1")
    with pytest.raises(CpfdError, match="not a valid BentoML name"):
        package_model(fresh_models / "student", "Bad Name")
    with pytest.raises(CpfdError, match="missing"):
        package_model(tmp_path, "s2")


def test_package_student_copies_only_serving_files(fresh_models, tmp_path):
    out = _run_cli(
        ["package", "--model", str(fresh_models / "student"), "--name", "clickbait-student"], tmp_path / "home"
    )
    assert out.returncode == 0, out.stderr
    name, version = out.stdout.strip().splitlines()[-1].split(":")
    stored = tmp_path / "home" / "models" / name / version
    files = sorted(str(p.relative_to(stored)) for p in stored.rglob("*") if p.is_file() and p.name != "model.yaml")
    assert files == [
        "cpfd_model.json",
        "model.safetensors",
        "tokenizer/tokenizer.json",
        "tokenizer/tokenizer_config.json",
    ]


def test_serving_preprocessing_equals_training(fresh_models, clickbait_data, clickbait_dataset):
    """Frames sent as PNG and titles go through cpfd.preprocess to the very tensors training uses."""
    import pandas as pd
    import torch

    from cpfd.evaluate import predict_logits
    from cpfd.serving_runtime import load_served_model, preprocess_batch

    cfg = ServingConfig.model_validate(
        {"scenarios": {"clickbait": {"arms": {"control": {"model": "m", "traffic": 1}}}}}
    )
    test, n = clickbait_data.splits["test"], 12
    titles = pd.read_parquet(clickbait_dataset / "test.parquet")["title"].tolist()[:n]
    served = load_served_model(fresh_models / "student", "m:1", "clickbait")
    videos = [
        validate_video(
            VideoRequest(
                scenario="clickbait",
                video_id=int(test.video_ids[i]),
                title=titles[i],
                frames=[b64_image(f) for f in test.frames[i].numpy()],
            ),
            cfg,
        )
        for i in range(n)
    ]
    x, ids, mask = preprocess_batch(
        [v.frames for v in videos], [v.title for v in videos], served.spec, served.tokenizer
    )
    assert torch.equal(x, test.frames[:n])
    assert torch.equal(ids, test.input_ids[:n]) and torch.equal(mask, test.attention_mask[:n])
    probs = np.stack(served.predict([(v.frames, v.title) for v in videos]))
    sub = type(test)(
        test.frames[:n],
        test.input_ids[:n],
        test.attention_mask[:n],
        test.dense[:n],
        test.labels[:n],
        test.video_ids[:n],
    )
    expected = predict_logits(served.model, sub).softmax(-1).numpy()
    np.testing.assert_allclose(probs, expected, atol=1e-5)


def test_a_title_only_scenario_needs_no_frames_and_ignores_them(cfg):
    reads = {"clickbait": ["title"], "originality": ["frames", "title"]}
    v = validate_video(VideoRequest(scenario="clickbait", video_id=3, title="a title"), cfg, "video", reads)
    assert v.frames.shape[0] == 0 and v.title == "a title"
    junk = VideoRequest(scenario="clickbait", video_id=3, title="t", frames=["not base64 !"])
    assert validate_video(junk, cfg, "video", reads).frames.shape[0] == 0  # not decoded: ignored
    with pytest.raises(ServingInputError, match=r"video.frames: empty"):
        validate_video(VideoRequest(scenario="originality", video_id=3, title="t"), cfg, "video", reads)
    with pytest.raises(ServingInputError, match=r"video.title: required for scenario 'clickbait'"):
        validate_video(VideoRequest(scenario="clickbait", video_id=3), cfg, "video", reads)


def test_a_frames_only_scenario_needs_no_title(cfg):
    reads = {"clickbait": ["frames"]}
    v = validate_video(VideoRequest(scenario="clickbait", video_id=3, frames=frames_b64(2)), cfg, "video", reads)
    assert v.title == "" and v.frames.shape[0] == 2
    with pytest.raises(ServingInputError, match=r"video.title: required"):
        validate_video(VideoRequest(scenario="originality", video_id=3, frames=frames_b64(2)), cfg, "video", reads)
