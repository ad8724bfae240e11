"""A real `bentoml serve` on 127.0.0.1 with real HTTP: two scenarios, two arms, limits, the prediction log."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
SCENARIOS = ("clickbait", "originality")
TRAFFIC = {"clickbait": {"control": 0.5, "treatment": 0.5}, "originality": {"control": 0.8, "treatment": 0.2}}


def png_b64(frame: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="module")
def deployment(synthetic_dir, tiny_project, tmp_path_factory):
    """Tiny students for two scenarios, packaged under two arms each, behind one real server."""
    from cpfd.config import TrainConfig
    from cpfd.data.build import build_scenario_dataset
    from cpfd.data.tensors import prepare_data
    from cpfd.serving.launch import ServerProcess
    from cpfd.training.recipes import train_classifier

    root = tmp_path_factory.mktemp("serving")
    home = root / "bentoml"
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True"}
    scenarios, samples = {}, {}
    for s in SCENARIOS:
        ds = build_scenario_dataset(
            synthetic_dir / "videos.parquet", synthetic_dir / "features.parquet", s, tiny_project, root / "ds" / s
        )
        data = prepare_data(root / "ds" / s, tiny_project.model)
        train_classifier(
            data,
            "student",
            tiny_project,
            root / "m" / s,
            progress=False,
            train_cfg=TrainConfig(epochs=1, batch_size=32, threads=1),
        )
        assert ds["rows"]["test"] >= 8
        test = data.splits["test"]
        titles = pd.read_parquet(root / "ds" / s / "test.parquet")["title"].tolist()
        samples[s] = [
            {"video_id": int(test.video_ids[i]), "title": titles[i], "frames": test.frames[i].numpy()} for i in range(8)
        ]
        scenarios[s] = {
            "arms": {arm: {"model": f"{s}-{arm}", "traffic": TRAFFIC[s][arm]} for arm in ("control", "treatment")},
            **({"experiment": "orig_exp"} if s == "originality" else {}),
        }
    pairs = [(s, arm) for s in SCENARIOS for arm in ("control", "treatment")]
    args = [a for s, arm in pairs for a in (str(root / "m" / s), f"{s}-{arm}")]
    code = (
        "import sys, json; from cpfd.components.packaging import package_model; "
        "print(json.dumps([package_model(d, n) for d, n in zip(sys.argv[1::2], sys.argv[2::2])]))"
    )
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=180)
    assert out.returncode == 0, out.stderr
    tags = dict(zip(pairs, json.loads(out.stdout.splitlines()[-1]), strict=True))
    config = root / "serving.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "experiment": "cb_exp",
                "scenarios": scenarios,
                "prediction_log": "predictions.db",
                "torch_threads": 1,
                "limits": {
                    "max_frames_per_video": 8,
                    "max_frame_bytes": 4096,
                    "max_request_bytes": 200_000,
                    "max_title_chars": 100,
                    "max_batch_videos": 8,
                    "max_frame_side": 64,
                    "max_concurrent_requests": 64,
                },
                "batching": {"enabled": True, "max_batch_size": 32, "max_wait_ms": 0},
            }
        )
    )
    with ServerProcess(config, log_path=root / "server.log", env={"BENTOML_HOME": str(home)}, timeout=120) as server:
        yield {
            "url": server.url,
            "home": home,
            "config": config,
            "tags": tags,
            "samples": samples,
            "root": root,
            "log": root / "predictions.db",
            "models": root / "m",
        }


def post(deployment, path: str, body, raw: bool = False):
    import requests

    kw = {"data": body, "headers": {"Content-Type": "application/json"}} if raw else {"json": body}
    return requests.post(deployment["url"] + path, timeout=60, **kw)


def video_body(sample: dict, scenario: str, **extra) -> dict:
    return {
        "scenario": scenario,
        "video_id": sample["video_id"],
        "title": sample["title"],
        "frames": [png_b64(f) for f in sample["frames"]],
        **extra,
    }


def test_valid_request_per_scenario_matches_in_process_model(deployment):
    from cpfd.serving.arms import assign_arm
    from cpfd.serving.runtime import load_served_model

    for s in SCENARIOS:
        sample = deployment["samples"][s][0]
        r = post(deployment, "/classify", video_body(sample, s))
        assert r.status_code == 200, r.text
        a = r.json()
        exp = "orig_exp" if s == "originality" else "cb_exp"
        arm = assign_arm(exp, sample["video_id"], TRAFFIC[s])
        assert (a["scenario"], a["arm"], a["experiment"], a["model_tag"]) == (s, arm, exp, deployment["tags"][(s, arm)])
        served = load_served_model(deployment["models"] / s, a["model_tag"], s)
        expected = served.predict([(sample["frames"], sample["title"])])[0]
        assert list(a["probabilities"]) == served.spec.label_names
        np.testing.assert_allclose(list(a["probabilities"].values()), expected, atol=1e-5)
        assert a["label"] == served.spec.label_names[int(np.argmax(expected))]
        assert a["confidence"] == pytest.approx(float(expected.max()), abs=1e-5) and a["latency_ms"] > 0


def test_batch_arms_follow_the_hash_and_are_stable(deployment):
    from cpfd.serving.arms import assign_arm

    frames = [png_b64(f) for f in deployment["samples"]["originality"][0]["frames"]]
    ids = list(range(1000, 1048))
    seen = {}
    for _rep in range(2):
        for start in range(0, len(ids), 8):
            batch = [
                {"scenario": "originality", "video_id": v, "title": "ka lo", "frames": frames}
                for v in ids[start : start + 8]
            ]
            r = post(deployment, "/classify_batch", {"videos": batch})
            assert r.status_code == 200, r.text
            for p in r.json()["predictions"]:
                assert p["arm"] == assign_arm("orig_exp", p["video_id"], TRAFFIC["originality"])
                assert seen.setdefault(p["video_id"], p["arm"]) == p["arm"]
                assert p["model_tag"] == deployment["tags"][("originality", p["arm"])]
    assert set(seen.values()) == {"control", "treatment"}
    r = post(
        deployment,
        "/classify",
        {"scenario": "originality", "video_id": 1, "title": "x", "frames": frames, "arm": "treatment"},
    )
    assert r.json()["arm"] == "treatment" and r.json()["model_tag"] == deployment["tags"][("originality", "treatment")]


def _bad_requests(sample):
    ok = video_body(sample, "clickbait")
    big = png_b64(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8))
    return [
        ("unknown scenario", "/classify", {**ok, "scenario": "nope"}, 400, "video.scenario: not a served scenario"),
        ("too many frames", "/classify", {**ok, "frames": ok["frames"] * 3}, 400, "max_frames_per_video=8"),
        ("frame too large", "/classify", {**ok, "frames": [big]}, 400, "max_frame_bytes=4096"),
        (
            "frame too wide",
            "/classify",
            {**ok, "frames": [png_b64(np.zeros((8, 65, 3), np.uint8))]},
            413,
            "max_frame_side=64",
        ),
        ("request too large", "/classify", {**ok, "title": "x" * 300_000}, 413, "max_request_bytes=200000"),
        ("title too long", "/classify", {**ok, "title": "x" * 101}, 400, "max_title_chars=100"),
        ("batch too large", "/classify_batch", {"videos": [ok] * 9}, 400, "max_batch_videos=8"),
        (
            "undecodable image",
            "/classify",
            {**ok, "frames": [base64.b64encode(b"\x89PNG\r\n\x1a\ngarbage").decode()]},
            400,
            "undecodable PNG",
        ),
        (
            "not an image",
            "/classify",
            {**ok, "frames": [base64.b64encode(b"hello world").decode()]},
            400,
            "not a JPEG or PNG",
        ),
        ("bad base64", "/classify", {**ok, "frames": ["%%%"]}, 400, "not valid base64"),
        (
            "mixed shapes",
            "/classify",
            {**ok, "frames": [ok["frames"][0], png_b64(np.zeros((8, 8, 3), np.uint8))]},
            400,
            "different sizes",
        ),
        ("empty frames", "/classify", {**ok, "frames": []}, 400, "frames: empty"),
        ("empty batch", "/classify_batch", {"videos": []}, 400, "videos: empty"),
        ("empty body", "/classify", "", 400, "scenario"),
        ("broken json", "/classify", "{not json", 400, "json"),
        ("dense feature sent", "/classify", {**ok, "dense_00": 0.5}, 400, "dense_00"),
        ("video_id not int", "/classify", {**ok, "video_id": "abc"}, 400, "video_id"),
        ("video_id beyond int64", "/classify", {**ok, "video_id": 2**63}, 400, "video_id"),
        ("unknown arm", "/classify", {**ok, "arm": "zzz"}, 400, "video.arm: not an arm of scenario 'clickbait'"),
        (
            "frame paths disabled",
            "/classify",
            {**ok, "frames": [], "frame_paths": ["/etc/hostname"]},
            403,
            "allow_frame_paths",
        ),
    ]


def test_each_bad_input_gets_its_4xx_and_the_server_lives_on(deployment):
    import requests

    from cpfd.predlog import PredictionLog

    sample = deployment["samples"]["clickbait"][1]
    before = PredictionLog(deployment["log"]).count()
    for name, path, body, status, needle in _bad_requests(sample):
        raw = isinstance(body, str)
        r = post(deployment, path, body, raw=raw)
        assert r.status_code == status, f"{name}: {r.status_code} {r.text[:300]}"
        assert needle.lower() in r.json()["error"].lower(), f"{name}: {r.text[:300]}"
        assert set(r.json()) == {"error", "request_id"} and len(r.text) < 400
        assert "nope" not in r.text and "zzz" not in r.text and "0x" not in r.text  # no input, no addresses
    for content_type, body in (
        ("multipart/form-data", b"--x\r\n"),  # no boundary
        ("multipart/form-data; boundary=x", b"--x\r\nContent-Disposition: form-data; name=f\r\n\r\n\x00\xff\r\n--x--"),
        ("application/x-www-form-urlencoded", b"&".join(b"k%d=v" % i for i in range(1500))),
    ):
        for path in ("/classify", "/classify_batch", "/info"):
            r = requests.post(deployment["url"] + path, data=body, headers={"Content-Type": content_type}, timeout=30)
            assert r.status_code == 415 and "application/json" in r.json()["error"], (path, content_type, r.text)
    assert PredictionLog(deployment["log"]).count() == before  # refused requests leave no row
    server_log = (deployment["root"] / "server.log").read_text()
    assert "Traceback" not in server_log and "refused 415" in server_log
    r = post(deployment, "/classify", video_body(sample, "clickbait"))
    assert r.status_code == 200 and r.json()["video_id"] == sample["video_id"]


def test_no_feast_and_no_dense_feature_in_the_server(deployment):
    import requests

    info = post(deployment, "/info", {}).json()
    assert info["forbidden_modules_loaded"] == [] and info["dense_features"] == []
    assert "pid" not in info and "config" not in info and str(deployment["root"]) not in json.dumps(info)
    assert set(info["scenarios"]) == set(SCENARIOS)
    for path in ("/readyz", "/livez"):
        assert requests.get(deployment["url"] + path, timeout=10).status_code == 200
    metrics = requests.get(deployment["url"] + "/metrics", timeout=10).text
    assert "cpfd_predictions" in metrics and "cpfd_rejected_requests" in metrics


def test_prediction_rows_match_answers(deployment):
    from cpfd.predlog import PredictionLog

    log = PredictionLog(deployment["log"])
    import requests

    sample = deployment["samples"]["clickbait"][2]
    r = requests.post(
        deployment["url"] + "/classify_batch",
        json={"videos": [video_body(sample, "clickbait", video_id=77_000 + i) for i in range(3)]},
        headers={"X-Request-ID": "caller-77000"},
        timeout=60,
    )
    assert r.headers["X-Request-ID"] == "caller-77000"
    preds = r.json()["predictions"]
    rows = log.read_predictions(scenario="clickbait").set_index("request_id")
    for p in preds:
        row = rows.loc[p["request_id"]]
        assert row["http_request_id"] == "caller-77000"
        assert (row["video_id"], row["arm"], row["model_tag"], row["experiment"]) == (
            p["video_id"],
            p["arm"],
            p["model_tag"],
            "cb_exp",
        )
        assert row["probabilities"] == pytest.approx(list(p["probabilities"].values()))
        assert row["confidence"] == pytest.approx(p["confidence"]) and row["latency_ms"] == pytest.approx(
            p["latency_ms"]
        )


@pytest.mark.slow
def test_load_32_clients_no_5xx_and_one_row_per_answer(deployment):
    from cpfd.benchmarks.serving import load_clients
    from cpfd.predlog import PredictionLog

    log = PredictionLog(deployment["log"])
    before = log.count()
    bodies = []
    for s in SCENARIOS:
        for i, sample in enumerate(deployment["samples"][s]):
            bodies.append(json.dumps(video_body(sample, s, video_id=500_000 + i)).encode())
    bodies.append(json.dumps({"scenario": "nope", "video_id": 1, "title": "x", "frames": ["AAAA"]}).encode())
    calls = [("/classify", body, "application/json") for body in bodies]
    result = load_clients(deployment["url"], calls, clients=32, seconds=30)
    assert not any(code >= 500 for code in result["status"]), result["status"]
    assert set(result["status"]) <= {200, 400}, result["status"]
    assert result["ok"] > 100
    assert log.count() - before == result["ok"]
    rows = log.read_predictions()
    assert rows["request_id"].is_unique


def test_decoded_frames_as_npy_answer_as_the_same_frames_as_png(deployment):
    """/classify_frames: the binary path skips PNG and base64 and gives the very same prediction."""
    import requests

    from tests.integration.serving_support import npy_bytes

    sample = deployment["samples"]["originality"][3]
    png = post(deployment, "/classify", video_body(sample, "originality", arm="control")).json()
    params = {"scenario": "originality", "video_id": sample["video_id"], "title": sample["title"], "arm": "control"}
    r = requests.post(
        deployment["url"] + "/classify_frames",
        params=params,
        data=npy_bytes(np.ascontiguousarray(sample["frames"])),
        headers={"Content-Type": "application/x-npy", "X-Request-ID": "npy-1"},
        timeout=60,
    )
    assert r.status_code == 200 and r.headers["X-Request-ID"] == "npy-1", r.text
    npy = r.json()
    assert (npy["model_tag"], npy["label"], npy["video_id"]) == (png["model_tag"], png["label"], png["video_id"])
    np.testing.assert_allclose(list(npy["probabilities"].values()), list(png["probabilities"].values()), atol=1e-6)
    bad = requests.post(
        deployment["url"] + "/classify_frames",
        params=params,
        data=npy_bytes(np.zeros((9, 8, 8, 3), np.uint8)),
        headers={"Content-Type": "application/x-npy"},
        timeout=60,
    )
    assert bad.status_code == 413 and "max_frames_per_video=8" in bad.json()["error"]


def test_plain_bentoml_serve_runs_the_service_behind_its_gate(deployment, tmp_path):
    """`bentoml serve serving.service:CpfdService`, as documented, without cpfd's launcher: the gate answers."""
    import requests

    from tests.servers import free_port, process_group, wait_http

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "BENTOML_HOME": str(deployment["home"]),
        "BENTOML_DO_NOT_TRACK": "True",
        "CPFD_SERVING_CONFIG": str(deployment["config"]),
    }
    bentoml = str(Path(sys.executable).with_name("bentoml"))
    argv = [bentoml, "serve", "serving.service:CpfdService", "--host", "127.0.0.1", "--port", str(port)]
    with process_group(argv, env, tmp_path / "bentoml_serve.log", cwd=REPO) as proc:
        wait_http(url + "/readyz", proc, timeout=120)
        r = requests.post(url + "/classify", json={"scenario": "clickbait", "video_id": "abc"}, timeout=30)
        assert r.status_code == 400 and r.json()["error"].startswith("video.video_id: "), r.text
        assert len(r.headers["X-Request-ID"]) == 32  # the gate answered, not the framework
        r = requests.post(url + "/classify", data=b"a=b", headers={"Content-Type": "text/plain"}, timeout=30)
        assert r.status_code == 415
        assert requests.get(url + "/no-such-path", timeout=30).status_code == 404
        sample = deployment["samples"]["clickbait"][0]
        assert post({"url": url}, "/classify", video_body(sample, "clickbait")).status_code == 200
    assert "Traceback" not in (tmp_path / "bentoml_serve.log").read_text()


def test_crafted_npy_headers_never_get_a_5xx_from_the_live_server(deployment):
    """Generated .npy headers (dtype, shape with zero/negative/bool/huge dimensions, order, version) on
    /classify_frames: each a 200 or a 4xx whose error names the body, never a 5xx."""
    import requests
    from hypothesis import HealthCheck, given, settings

    from tests.integration.serving_support import npy_header_bytes, npy_headers

    url = deployment["url"] + "/classify_frames"
    params = {"scenario": "originality", "video_id": 5, "title": "ka lo", "arm": "control"}
    headers = {"Content-Type": "application/x-npy"}
    seen: dict[int, int] = {}
    session = requests.Session()

    @settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(npy_headers())
    def check(body: bytes) -> None:
        r = session.post(url, params=params, data=body, headers=headers, timeout=60)
        seen[r.status_code] = seen.get(r.status_code, 0) + 1
        assert r.status_code < 500, (r.status_code, r.text[:300], body[:120])
        if r.status_code != 200:
            assert r.json()["error"].startswith("body: "), r.text[:300]

    check()
    for body in (  # the variants, and one that passes
        npy_header_bytes((1, 0), "|u1", False, (1, 0, 0, 3)),
        npy_header_bytes((1, 0), "|u1", False, (1, -1, -2, 3)) + bytes(6),
        npy_header_bytes((1, 0), "|u1", False, (True, 2, 2, 3)) + bytes(12),
        npy_header_bytes((3, 0), "|u1", False, (1, 2, 2, 3)) + bytes(12),
    ):
        r = session.post(url, params=params, data=body, headers=headers, timeout=60)
        assert r.status_code == 400 and r.json()["error"].startswith("body: "), r.text
    one_pixel = npy_header_bytes((2, 0), "|u1", False, (1, 1, 1, 3)) + bytes(3)
    ok = session.post(url, params=params, data=one_pixel, headers=headers, timeout=60)
    assert ok.status_code == 200, ok.text
    assert "Traceback" not in (deployment["root"] / "server.log").read_text(), seen
