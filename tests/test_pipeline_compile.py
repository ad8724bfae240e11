"""The Kubeflow pipeline compiles to IR YAML that carries what a cluster needs; submission sends it."""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pytest
import yaml

GPU_EXECUTORS = {"exec-train-teacher", "exec-train-student", "exec-distill", "exec-evaluate"}


def _compile(tmp_path, **options):
    from pipelines.cpfd_pipeline import PipelineOptions, compile_pipeline

    path = compile_pipeline(tmp_path / "pipeline.yaml", PipelineOptions(**options))
    docs = list(yaml.safe_load_all(path.read_text()))
    return docs[0], (docs[1] if len(docs) > 1 else {})


def _platform_executors(platform: dict) -> dict:
    return platform.get("platforms", {}).get("kubernetes", {}).get("deploymentSpec", {}).get("executors", {})


def test_compiled_yaml_gpu_steps_loop_and_no_runtime_installs(tmp_path):
    spec, platform = _compile(tmp_path, parallelism=3, image="registry.example/cpfd:1.2")
    executors = spec["deploymentSpec"]["executors"]
    assert set(executors) >= GPU_EXECUTORS | {"exec-build-dataset", "exec-validate-data", "exec-package", "exec-report"}
    for name, ex in executors.items():
        container = ex["container"]
        assert container["image"] == "registry.example/cpfd:1.2", name
        assert "pip install" not in " ".join(container["command"] + container.get("args", [])), name
        resources = container.get("resources", {})
        if name in GPU_EXECUTORS:
            assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu", name
            assert resources["accelerator"]["resourceCount"] == "1", name
            assert resources["resourceCpuRequest"] == "4" and resources["resourceMemoryRequest"] == "16G", name
        else:
            assert "accelerator" not in resources, name
    k8s = _platform_executors(platform)
    assert set(k8s) == GPU_EXECUTORS
    for name in GPU_EXECUTORS:
        assert k8s[name]["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}
        assert k8s[name]["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]

    loop = spec["root"]["dag"]["tasks"]["for-loop-1"]
    assert loop["parameterIterator"]["items"]["inputParameter"] == "pipelinechannel--scenarios"
    assert loop["iteratorPolicy"]["parallelismLimit"] == 3
    assert spec["root"]["inputDefinitions"]["parameters"]["scenarios"]["parameterType"] == "LIST"

    inner = spec["components"]["comp-for-loop-1"]["dag"]["tasks"]
    assert inner["build-dataset"]["cachingOptions"] == {"enableCache": True}
    assert inner["validate-data"]["cachingOptions"] == {"enableCache": True}
    assert inner["train-teacher"]["cachingOptions"] == {}  # off
    assert set(inner["train-teacher"]["dependentTasks"]) == {"build-dataset", "validate-data"}
    cond = next(t for t in inner.values() if "triggerPolicy" in t)
    assert cond["triggerPolicy"]["condition"] == "inputs.parameter_values['pipelinechannel--evaluate-Output'] == true"
    package = spec["components"][cond["componentRef"]["name"]]["dag"]["tasks"]
    assert set(package) == {"package"}
    report = spec["root"]["dag"]["tasks"]["report"]
    assert report["inputs"]["parameters"]["summaries"]["taskOutputParameter"]["producerTask"] == "for-loop-1"


def test_no_gpu_and_custom_pools(tmp_path):
    spec, platform = _compile(tmp_path, gpu=False)
    assert not any("accelerator" in ex["container"].get("resources", {}) for ex in spec["deploymentSpec"]["executors"].values())
    assert not _platform_executors(platform)

    from pipelines.cli import pipeline_options

    opts = pipeline_options(parallelism=0, node_selector=["pool=a100"], toleration=["dedicated=gpu:NoExecute", "spot:NoSchedule"])
    assert opts.node_selector == {"pool": "a100"}
    assert opts.tolerations == [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoExecute"},
                                {"key": "spot", "operator": "Exists", "effect": "NoSchedule"}]
    from pipelines.cpfd_pipeline import compile_pipeline

    doc, platform = yaml.safe_load_all(compile_pipeline(tmp_path / "p2.yaml", opts).read_text())
    k8s = _platform_executors(platform)
    assert k8s["exec-distill"]["nodeSelector"]["labels"] == {"pool": "a100"}
    assert k8s["exec-distill"]["tolerations"][0]["value"] == "gpu"
    assert "iteratorPolicy" not in doc["root"]["dag"]["tasks"]["for-loop-1"]  # 0 = unlimited


def _cli(monkeypatch, capsys, *argv) -> tuple[int, str, str]:
    from cpfd.cli import main

    monkeypatch.setattr(sys, "argv", ["cpfd", *argv])
    with pytest.raises(SystemExit) as exc:
        main()
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_cli_compile_and_bad_toleration(tmp_path, monkeypatch, capsys):
    out = tmp_path / "cli.yaml"
    code, stdout, _ = _cli(monkeypatch, capsys, "pipeline", "compile", "--out", str(out), "--parallelism", "4",
                           "--node-selector", "pool=gpu")
    assert code == 0 and f"compiled {out}" in stdout
    doc, platform = yaml.safe_load_all(out.read_text())
    assert doc["root"]["dag"]["tasks"]["for-loop-1"]["iteratorPolicy"]["parallelismLimit"] == 4
    assert _platform_executors(platform)["exec-train-teacher"]["nodeSelector"]["labels"] == {"pool": "gpu"}
    code, _, err = _cli(monkeypatch, capsys, "pipeline", "compile", "--out", str(out), "--toleration", "gpu:Sometimes")
    assert code == 2 and "--toleration 'gpu:Sometimes'" in err and "Traceback" not in err
    code, _, err = _cli(monkeypatch, capsys, "pipeline", "run", "--data", str(tmp_path))
    assert code == 2 and "pass --local" in err
    code, _, err = _cli(monkeypatch, capsys, "pipeline", "run", "--local", "--data", str(tmp_path))
    assert code == 2 and f"input table not found: {tmp_path / 'videos.parquet'}" in err


def test_gate_decision():
    from components.common import gate_decision
    from cpfd.config import GateConfig

    gate = GateConfig(min_gain_over_baseline=0.01, max_gap_to_teacher=0.05)
    ok, why = gate_decision({"student": 0.70, "teacher": 0.80, "distilled": 0.78}, gate)
    assert ok and why.startswith("packaged")
    ok, why = gate_decision({"student": 0.70, "teacher": 0.80, "distilled": 0.705}, gate)
    assert not ok and "not above the margin +0.0100" in why and "gap to the teacher 0.0950 exceeds 0.0500" in why
    ok, why = gate_decision({"student": 0.70, "teacher": 0.80, "distilled": 0.78}, GateConfig(min_f1=0.9))
    assert not ok and "below the minimum 0.9000" in why


def test_roc_points_by_hand():
    from components.common import roc_points

    fpr, tpr, thr = roc_points(np.array([0.9, 0.8, 0.8, 0.3]), np.array([True, False, True, False]))
    assert fpr == [0.0, 0.0, 0.5, 1.0] and tpr == [0.0, 0.5, 1.0, 1.0] and thr == [1.0, 0.9, 0.8, 0.3]
    scores = np.linspace(0, 1, 500)
    fpr, tpr, _ = roc_points(scores, scores > 0.5, max_points=21)
    assert len(fpr) <= 21 and fpr[0] == tpr[0] == 0.0 and fpr[-1] == tpr[-1] == 1.0


def test_pipeline_arguments_are_json_and_checked(tiny_project):
    from cpfd.errors import CpfdError
    from pipelines.runner import pipeline_arguments

    args = pipeline_arguments("v.parquet", "f.parquet", tiny_project, ["clickbait"])
    assert json.loads(json.dumps(args)) == args and args["scenarios"] == ["clickbait"]
    assert "\n" not in args["config_yaml"]
    from components.common import project_from_yaml

    assert project_from_yaml(args["config_yaml"]) == tiny_project
    with pytest.raises(CpfdError, match="unknown scenario 'nope'"):
        pipeline_arguments("v", "f", tiny_project, ["nope"])


class _Recorder(BaseHTTPRequestHandler):
    """A stand-in Kubeflow Pipelines API: records each request, answers like the v2beta1 API."""

    requests: list = []

    def _reply(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.requests.append(("GET", self.path, None))
        if self.path.startswith("/apis/v2beta1/healthz"):
            self._reply({"multi_user": False})
        else:
            self._reply({"experiments": []})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        self.requests.append(("POST", self.path, body))
        if self.path.startswith("/apis/v2beta1/experiments"):
            self._reply({"experiment_id": "exp-1", "display_name": body.get("display_name")})
        else:
            self._reply({"run_id": "run-42", "display_name": body.get("display_name"), "experiment_id": "exp-1"})

    def log_message(self, *args):
        pass


def test_submit_sends_the_compiled_pipeline_and_arguments(tmp_path, tiny_project, monkeypatch):
    from pipelines.cli import pipeline_options
    from pipelines.runner import pipeline_arguments, submit

    monkeypatch.setenv("HOME", str(tmp_path))  # no kfp context file from the machine
    server = HTTPServer(("127.0.0.1", 0), _Recorder)
    _Recorder.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        args = pipeline_arguments("/data/videos.parquet", "/data/features.parquet", tiny_project, ["clickbait", "originality"])
        run_id = submit(f"http://127.0.0.1:{server.server_port}", args, pipeline_options(parallelism=5),
                        run_name="nightly", experiment="cpfd")
    finally:
        server.shutdown()
    assert run_id == "run-42"
    posts = [(path, body) for method, path, body in _Recorder.requests if method == "POST"]
    assert [p.split("?")[0] for p, _ in posts] == ["/apis/v2beta1/experiments", "/apis/v2beta1/runs"]
    assert posts[0][1]["display_name"] == "cpfd"
    run = posts[1][1]
    assert run["display_name"] == "nightly" and run["experiment_id"] == "exp-1"
    params = run["runtime_config"]["parameters"]
    assert params["scenarios"] == ["clickbait", "originality"] and params["videos"] == "/data/videos.parquet"
    assert json.loads(params["config_yaml"])["scenarios"][0]["name"] == tiny_project.scenarios[0].name
    spec = run["pipeline_spec"]
    spec = spec.get("pipeline_spec", spec)
    assert spec["pipelineInfo"]["name"] == "cpfd-pipeline"
    assert spec["root"]["dag"]["tasks"]["for-loop-1"]["iteratorPolicy"]["parallelismLimit"] == 5
    assert spec["deploymentSpec"]["executors"]["exec-distill"]["container"]["resources"]["accelerator"]["resourceType"] == "nvidia.com/gpu"


def test_submit_to_unreachable_host_is_a_clear_error(tiny_project, tmp_path, monkeypatch):
    from cpfd.errors import CpfdError
    from pipelines.runner import pipeline_arguments, submit

    monkeypatch.setenv("HOME", str(tmp_path))
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(CpfdError, match=f"submitting to http://127.0.0.1:{port} failed"):
        submit(f"http://127.0.0.1:{port}", pipeline_arguments("v", "f", tiny_project))
