"""Serving logic without a server (serving/ in-process): config, limits, decoding, arms, batching, packaging,
preprocessing parity."""

from __future__ import annotations

import asyncio
import base64
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cpfd.errors import ConfigError, CpfdError
from cpfd.serving.arms import assign_arm
from cpfd.serving.config import ServingConfig, load_serving_config
from cpfd.serving.frames import decode_image, read_npy_frames
from cpfd.serving.schemas import BatchRequest, ServingInputError, VideoRequest, parse_request
from cpfd.serving.startup import check_model_files
from cpfd.serving.videos import validate_batch, validate_video

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
        (
            {**ok, "scenario": "nope"},
            400,
            "video.scenario: not a served scenario; served: ['clickbait', 'originality']",
        ),
        ({**ok, "title": "x" * 51}, 400, "max_title_chars=50"),
        ({**ok, "frames": []}, 400, "frames: empty"),
        ({**ok, "frames": frames_b64(7)}, 400, "max_frames_per_video=6"),
        ({**ok, "frames": ["not base64!"]}, 400, "frames[0]: not valid base64"),
        ({**ok, "frames": [gif]}, 400, "not a JPEG or PNG"),
        ({**ok, "frames": [truncated]}, 400, "undecodable PNG"),
        ({**ok, "frames": [big]}, 400, "max_frame_bytes=4000"),
        ({**ok, "frames": [b64_image(np.zeros((65, 8, 3), np.uint8))]}, 413, "max_frame_side=64"),
        ({**ok, "frames": [ok["frames"][0], b64_image(np.zeros((8, 8, 3), np.uint8))]}, 400, "different sizes"),
        ({**ok, "arm": "zzz"}, 400, "video.arm: not an arm of scenario 'clickbait'"),
        ({**ok, "frames": [], "frame_paths": ["/etc/hostname"]}, 403, "allow_frame_paths"),
    ]


@pytest.mark.parametrize("body, status, needle", _bad_cases())
def test_bad_video_is_refused_with_its_reason(cfg, body, status, needle):
    with pytest.raises(ServingInputError) as e:
        validate_video(VideoRequest(**body), cfg)
    assert e.value.status == status and needle in str(e.value)
    assert "nope" not in str(e.value) and "zzz" not in str(e.value)  # the input is never echoed


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
    with pytest.raises(ServingInputError, match="frame_paths\\[0\\]: not a readable file"):
        validate_video(
            VideoRequest(scenario="clickbait", video_id=1, title="t", frame_paths=[str(tmp_path / "x.png")]), cfg
        )


def test_import_guard_refuses_feast():
    code = (
        "from cpfd.serving.guards import forbid_imports, forbidden_loaded\nforbid_imports()\n"
        "try:\n    import feast\nexcept ImportError as e:\n    print('refused:', e)\nprint(forbidden_loaded())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "refused: feast may not be imported in the serving process" in out.stdout and "[]" in out.stdout


def test_micro_batcher_merges_and_survives_errors():
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from cpfd.serving.runtime import MicroBatcher

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
        inline = MicroBatcher(lambda items: [threading.current_thread() for _ in items], None, max_batch_size=8)
        assert await inline.submit([1, 2]) == [threading.current_thread()] * 2  # on the event loop's thread

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
        [sys.executable, "-m", "cpfd.cli.main", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_package_refuses_teacher_and_pickles(fresh_models, tmp_path):
    import shutil

    from cpfd.components.packaging import package_model

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
    from cpfd.serving.runtime import load_served_model, preprocess_batch

    cfg = ServingConfig.model_validate(
        {"scenarios": {"clickbait": {"arms": {"control": {"model": "m", "traffic": 1}}}}}
    )
    test, n = clickbait_data.splits["test"], 12
    titles = pd.read_parquet(clickbait_dataset / "test.parquet")["title"].tolist()[:n]
    served = load_served_model(fresh_models / "student", "m:1", "clickbait")
    assert served.forward is not None  # the TorchScript trace serves, and must match training's eager model
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


# ---- decoded-size limits, .npy frames, request errors -------------------------------------------


def png_bytes(height: int, width: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def test_pixel_limits_are_read_from_headers_before_any_decoding(cfg, monkeypatch):
    import cpfd.serving.videos as core

    def no_decoding(frame):
        raise AssertionError("decoded")

    monkeypatch.setattr(core, "decode_frame", no_decoding)
    big = {"max_frame_side": 4096, "max_frame_bytes": 1 << 20, "max_frame_pixels": 1 << 16}
    cfg = cfg.model_copy(update={"limits": cfg.limits.model_copy(update=big)})
    bomb = png_bytes(1024, 1024)
    assert len(bomb) < 4000  # a few KB that would decode to 3 MiB
    lim = cfg.limits
    with pytest.raises(ServingInputError, match=r"video.frames\[0\]: 1024x1024 pixels exceeds limit max_frame_pixels="):
        validate_video(
            VideoRequest(scenario="clickbait", video_id=1, title="t", frames=[base64.b64encode(bomb).decode()]), cfg
        )
    # every frame within its own limit, the request over max_request_pixels: refused before the first decode
    frame = base64.b64encode(png_bytes(60, 60)).decode()
    per_video = 6 * 60 * 60
    videos = [VideoRequest(scenario="clickbait", video_id=i, title="t", frames=[frame] * 6) for i in range(3)]
    limits = lim.model_copy(update={"max_request_pixels": 2 * per_video})
    with pytest.raises(ServingInputError) as e:
        validate_batch(videos, cfg.model_copy(update={"limits": limits}))
    assert e.value.status == 413 and f"{3 * per_video} pixels in all frames exceeds limit max_request_pixels=" in str(
        e.value
    )


def test_a_huge_png_header_is_413_not_a_crash(cfg):
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 60_000, 60_000, 8, 2, 0, 0, 0)  # 3.6 G pixels claimed in 45 bytes
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")
    with pytest.raises(ServingInputError) as e:
        decode_image(data, cfg.limits, "f")
    assert e.value.status == 413


def npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def test_npy_frames_and_their_limits(cfg):
    lim = cfg.limits
    frames = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    np.testing.assert_array_equal(read_npy_frames(npy(frames), lim), frames)
    bad = [
        (b"not npy", 400, "not a .npy array"),
        (npy(frames.astype(np.float32)), 400, "C-order uint8 array of shape [frames, height, width, 3]"),
        (npy(frames[..., :2]), 400, "shape [frames, height, width, 3]"),
        (npy(np.asfortranarray(frames)), 400, "C-order"),
        (npy(np.zeros((0, 8, 8, 3), np.uint8)), 400, "empty"),
        (npy(np.zeros((7, 8, 8, 3), np.uint8)), 413, "max_frames_per_video=6"),
        (npy(np.zeros((1, 8, 65, 3), np.uint8)), 413, "max_frame_side=64"),
        (npy(frames)[:-5], 400, "data bytes"),
        (npy(np.array([object()] * 2)), 400, "uint8"),
    ]
    for body, status, needle in bad:
        with pytest.raises(ServingInputError) as e:
            read_npy_frames(body, lim)
        assert e.value.status == status and needle in str(e.value), (needle, str(e.value))


def test_crafted_npy_headers_of_the_issue_are_4xx_naming_the_body(cfg):
    from tests.integration.serving_support import npy_header_bytes

    cases = [
        (npy_header_bytes((1, 0), "|u1", False, (1, 0, 0, 3)), "at least 1"),
        (npy_header_bytes((1, 0), "|u1", False, (1, -1, -2, 3)) + bytes(6), "at least 1"),
        (npy_header_bytes((1, 0), "|u1", False, (True, 2, 2, 3)) + bytes(12), "whole number"),
        (npy_header_bytes((1, 0), "|u1", False, (1, 2, True, 3)) + bytes(6), "whole number"),
        (npy_header_bytes((3, 0), "|u1", False, (1, 2, 2, 3)) + bytes(12), "version 3.0; accepted: 1.0, 2.0"),
        (npy_header_bytes((1, 0), "|u1", False, (2**63, 2, 2, 3)), "max_frames_per_video"),
    ]
    for body, needle in cases:
        with pytest.raises(ServingInputError) as e:
            read_npy_frames(body, cfg.limits)
        assert 400 <= e.value.status < 500 and str(e.value).startswith("body: ") and needle in str(e.value)


def test_every_npy_header_is_an_array_or_a_4xx_naming_the_body(cfg):
    """Generated headers (version, dtype, order, shapes with zero, negative, bool and huge dimensions)."""
    from hypothesis import HealthCheck, given, settings

    from tests.integration.serving_support import npy_headers

    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
    @given(npy_headers())
    def check(body: bytes) -> None:
        try:
            frames = read_npy_frames(body, cfg.limits)
        except ServingInputError as e:
            assert 400 <= e.status < 500 and str(e).startswith("body: ") and len(str(e)) < 200
            return
        assert frames.dtype == np.uint8 and frames.ndim == 4 and frames.shape[3] == 3 and min(frames.shape) >= 1

    check()


def test_request_errors_are_short_name_the_field_and_echo_nothing():
    import json
    import time

    body = json.dumps({"scenario": "x", "video_id": 1, **{f"unknown_{i}_{'y' * 50}": 1 for i in range(100_000)}})
    t0 = time.perf_counter()
    with pytest.raises(ServingInputError) as e:
        parse_request(VideoRequest, body.encode(), "video")
    assert time.perf_counter() - t0 < 2.0  # one error, not 100,000 (those alone took ~1 s)
    msg = str(e.value)
    assert msg.startswith("video: unknown field 'unknown_0_yyy") and "(and 99999 more)" in msg and len(msg) < 120
    cases = [
        (b"{not json", "body: not valid JSON"),
        (b"[1, 2]", "video: must be a JSON object"),
        (b'{"scenario": "c", "video_id": "12"}', "video.video_id: Input should be a valid integer"),
        (b'{"scenario": "c", "video_id": 1, "frames": [1]}', "video.frames[0]: Input should be a valid string"),
        (b'{"video_id": 1}', "video.scenario: Field required"),
        (b'{"scenario": "c", "video_id": 1, "frames": ' + json.dumps(["a"] * 2000).encode() + b"}", "video.frames"),
    ]
    for raw, needle in cases:
        with pytest.raises(ServingInputError) as e:
            parse_request(VideoRequest, raw, "video")
        assert str(e.value).startswith(needle) and e.value.status == 400, str(e.value)
    with pytest.raises(ServingInputError, match=r"^videos\[1\].video_id: Input should be a valid integer"):
        parse_request(
            BatchRequest,
            b'{"videos": [{"scenario": "c", "video_id": 1}, {"scenario": "c"}]}'.replace(
                b'"c"}]', b'"c", "video_id": null}]'
            ),
            "",
        )


def test_auth_token_from_env_or_file(tmp_path, monkeypatch):
    from cpfd.serving.config import AuthConfig

    monkeypatch.setenv("CPFD_TEST_TOKEN", "s3cret-token-0123456789")
    assert AuthConfig(token_env="CPFD_TEST_TOKEN").token() == "s3cret-token-0123456789"
    (tmp_path / "token").write_text("file-token-0123456789\n")
    assert AuthConfig(token_file=str(tmp_path / "token")).token() == "file-token-0123456789"
    monkeypatch.setenv("CPFD_TEST_TOKEN", "short")
    with pytest.raises(ConfigError, match="environment variable CPFD_TEST_TOKEN is unset or shorter than 16"):
        AuthConfig(token_env="CPFD_TEST_TOKEN").token()
    with pytest.raises(ConfigError, match="token file .*missing.* is not readable"):
        AuthConfig(token_file=str(tmp_path / "missing")).token()
    with pytest.raises(ValueError, match="exactly one of token_env and token_file"):
        AuthConfig(token_env="A", token_file="b")


def test_model_file_faults_name_the_tag_and_the_file(fresh_models, tmp_path):
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(fresh_models / "student", folder)
    check_model_files("m:1", folder)
    weights = (folder / "model.safetensors").read_bytes()
    for broken, needle in (
        (weights[: len(weights) // 2], "is not a whole safetensors file"),
        (weights + b"\0", "is not a whole safetensors file"),
        (b"\x00" * 3, "shorter than a header"),
        (np.random.default_rng(0).bytes(5000), "invalid header length"),
    ):
        (folder / "model.safetensors").write_bytes(broken)
        with pytest.raises(CpfdError, match=rf"model m:1: {folder}/model.safetensors .*{needle}"):
            check_model_files("m:1", folder)
    (folder / "model.safetensors").write_bytes(weights)
    (folder / "cpfd_model.json").unlink()
    with pytest.raises(CpfdError, match=rf"model m:1: {folder}/cpfd_model.json is missing"):
        check_model_files("m:1", folder)


def test_prediction_log_request_ids_migration_probe_and_backup(tmp_path):
    import sqlite3

    from cpfd.predlog import PredictionLog, open_log

    old = tmp_path / "old.db"  # a log written before http_request_id existed
    with sqlite3.connect(old) as conn:
        conn.execute(
            "CREATE TABLE predictions (request_id TEXT PRIMARY KEY, ts TEXT NOT NULL, experiment TEXT NOT NULL, "
            "scenario TEXT NOT NULL, arm TEXT NOT NULL, model_tag TEXT NOT NULL, video_id BIGINT NOT NULL, "
            "label INTEGER NOT NULL, probabilities TEXT NOT NULL, confidence REAL NOT NULL, latency_ms REAL NOT NULL)"
        )
    log = open_log(old, "FULL")
    row = {
        "ts": "2026-01-01T00:00:00+00:00",
        "experiment": "e",
        "scenario": "s",
        "arm": "a",
        "model_tag": "m:1",
        "video_id": 1,
        "label": 0,
        "probabilities": [1.0],
        "confidence": 1.0,
        "latency_ms": 1.0,
    }
    log.append([{**row, "request_id": "r1", "http_request_id": "client-42"}, {**row, "request_id": "r2"}])
    log.check_writable()
    assert log.count() == 2  # the probe leaves no row
    copy = PredictionLog(log.backup(tmp_path / "copy.db"))
    got = copy.read_predictions().set_index("request_id")["http_request_id"].to_dict()
    assert got["r1"] == "client-42" and pd.isna(got["r2"])  # None on pandas 2, NaN under pandas 3's string dtype
    with pytest.raises(CpfdError, match=rf"prediction log {tmp_path}/file/x.db is not writable"):
        (tmp_path / "file").write_text("not a folder")
        open_log(tmp_path / "file" / "x.db")
