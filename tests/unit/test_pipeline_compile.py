"""The Kubeflow pipeline compiles to IR YAML that carries what a cluster needs; submission sends it."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import yaml

GPU_EXECUTORS = {
    "exec-train-teacher",
    "exec-train-fold-teacher",
    "exec-train-student",
    "exec-estimate-gain",
    "exec-distill",
    "exec-evaluate",
}


_COMPILED: dict[str, tuple[dict, dict]] = {}


def _compile(tmp_path, **options):
    """The compiled IR and platform spec for these options: compiled once per option set in this module (a compile
    takes seconds), a fresh copy for every test."""
    import copy

    from cpfd.pipelines.cpfd_pipeline import PipelineOptions, compile_pipeline

    key = repr(sorted(options.items()))
    if key not in _COMPILED:
        path = compile_pipeline(tmp_path / "pipeline.yaml", PipelineOptions(**options))
        docs = list(yaml.safe_load_all(path.read_text()))
        _COMPILED[key] = (docs[0], docs[1] if len(docs) > 1 else {})
    return copy.deepcopy(_COMPILED[key])


def _platform_executors(platform: dict) -> dict:
    return platform.get("platforms", {}).get("kubernetes", {}).get("deploymentSpec", {}).get("executors", {})


def test_compiled_yaml_gpu_steps_loop_and_no_runtime_installs(tmp_path):
    spec, platform = _compile(tmp_path, parallelism=3, image="registry.example/cpfd:1.2")
    executors = spec["deploymentSpec"]["executors"]
    assert set(executors) >= GPU_EXECUTORS | {
        "exec-build-dataset",
        "exec-validate-data",
        "exec-fold-plan",
        "exec-teacher-outputs",
        "exec-package",
        "exec-make-reference",
        "exec-not-packaged",
        "exec-scenario-result",
        "exec-report",
    }
    importers = {n: ex["importer"] for n, ex in executors.items() if "importer" in ex}
    assert {i["typeSchema"]["schemaTitle"] for i in importers.values()} == {"system.Dataset"}
    assert sorted(i["metadata"]["role"] for i in importers.values()) == ["features", "videos"]
    for name, ex in executors.items():
        if name in importers:
            continue
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
    assert inner["train-teacher"]["componentRef"]["name"] == "comp-train-teacher"
    assert set(spec["components"]["comp-train-teacher"]["outputDefinitions"]["artifacts"]) == {
        "model",
        "metrics",
    }  # no logits
    # the gate: package then make_reference when it passed, not_packaged otherwise; scenario_result takes whichever ran
    branches_name = next(n for n in inner if n.startswith("condition-branches"))
    branches = spec["components"][inner[branches_name]["componentRef"]["name"]]["dag"]["tasks"]
    passed_when = "inputs.parameter_values['pipelinechannel--evaluate-Output'] == true"
    conditions = {
        t["triggerPolicy"]["condition"]: set(spec["components"][t["componentRef"]["name"]]["dag"]["tasks"])
        for t in branches.values()
    }
    assert conditions == {passed_when: {"package", "make-reference"}, f"!({passed_when})": {"not-packaged"}}
    passed = spec["components"][
        next(t["componentRef"]["name"] for t in branches.values() if t["triggerPolicy"]["condition"] == passed_when)
    ]["dag"]["tasks"]
    ref = passed["make-reference"]
    assert ref["inputs"]["artifacts"]["packaged"]["taskOutputArtifact"] == {
        "producerTask": "package",
        "outputArtifactKey": "packaged",
    }
    # both arms' test-split predictions come from the gate (nothing is predicted again after packaging)
    assert (
        ref["inputs"]["artifacts"]["predictions"]["componentInputArtifact"] == "pipelinechannel--evaluate-predictions"
    )
    assert set(ref["inputs"]["artifacts"]) == {"config", "predictions", "packaged"}
    assert "accelerator" not in executors["exec-make-reference"]["container"].get("resources", {})
    row = inner["scenario-result"]["inputs"]["parameters"]
    assert row["handover"]["taskOutputParameter"]["producerTask"] == branches_name
    assert row["summary"]["taskOutputParameter"] == {"producerTask": "evaluate", "outputParameterKey": "summary"}
    report = spec["root"]["dag"]["tasks"]["report"]
    assert report["inputs"]["parameters"]["summaries"]["taskOutputParameter"] == {
        "producerTask": "for-loop-1",
        "outputParameterKey": "pipelinechannel--scenario-result-Output",
    }
    # what monitoring needs leaves the pipeline as outputs
    assert {k: v["artifactSelectors"][0] for k, v in spec["root"]["dag"]["outputs"]["artifacts"].items()} == {
        name: {"producerSubtask": "report", "outputArtifactKey": name}
        for name in ("markdown", "html", "table", "packages")
    }


def test_only_build_dataset_reads_the_config_parameter_and_method(tmp_path):
    """The scenario's config is resolved once (build_dataset's ``config`` artifact); every other step takes that
    artifact,
    no step but build_dataset takes config_yaml, method, the pool settings or the scenario name."""
    spec, _ = _compile(tmp_path)
    comps = {name.removeprefix("comp-"): c for name, c in spec["components"].items() if "executorLabel" in c}
    params = {name: set(c.get("inputDefinitions", {}).get("parameters", {})) for name, c in comps.items()}
    assert params["build-dataset"] == {
        "scenario",
        "config_yaml",
        "method",
        "pool_weight",
        "pool_ratio",
        "join",
        "stream_root",
    }
    assert set(comps["build-dataset"]["outputDefinitions"]["artifacts"]) == {"dataset", "config"}
    # the user's tables: Dataset artifacts from the pipeline's importers, fed into every scenario's build_dataset
    inputs = comps["build-dataset"]["inputDefinitions"]["artifacts"]
    assert {k: v["artifactType"]["schemaTitle"] for k, v in inputs.items()} == {
        "videos": "system.Dataset",
        "features": "system.Dataset",
    }
    root = spec["root"]["dag"]["tasks"]
    importers = {t["taskInfo"]["name"]: (n, t) for n, t in root.items() if n.startswith("importer")}
    assert set(importers) == {"import-videos", "import-features"}
    for role in ("videos", "features"):
        name, task = importers[f"import-{role}"]
        assert task["inputs"]["parameters"]["uri"] == {"componentInputParameter": role}
        channel = f"pipelinechannel--{name}-artifact"
        assert root["for-loop-1"]["inputs"]["artifacts"][channel]["taskOutputArtifact"]["producerTask"] == name
        build = spec["components"]["comp-for-loop-1"]["dag"]["tasks"]["build-dataset"]
        assert build["inputs"]["artifacts"][role] == {"componentInputArtifact": channel}
    for name in set(comps) - {"build-dataset"}:
        assert not params[name] & {"config_yaml", "method", "pool_weight", "pool_ratio", "scenario"}, name
    takes_config = {
        "validate-data",
        "train-teacher",
        "train-student",
        "estimate-gain",
        "fold-plan",
        "train-fold-teacher",
        "teacher-outputs",
        "distill",
        "evaluate",
        "package",
        "make-reference",
    }
    assert {
        n for n, c in comps.items() if "config" in c.get("inputDefinitions", {}).get("artifacts", {})
    } == takes_config
    inner = spec["components"]["comp-for-loop-1"]["dag"]["tasks"]
    # the distillation steps read the config the gain estimate decided (in-sample outputs when it skips the folds)
    decided = {"fold-plan", "teacher-outputs", "distill", "evaluate"}
    for name in takes_config & set(inner):
        source = ("estimate-gain", "decided") if name in decided else ("build-dataset", "config")
        assert inner[name]["inputs"]["artifacts"]["config"]["taskOutputArtifact"] == {
            "producerTask": source[0],
            "outputArtifactKey": source[1],
        }, name
    assert (
        inner["build-dataset"]["inputs"]["parameters"]["method"]["componentInputParameter"] == "pipelinechannel--method"
    )
    assert spec["root"]["inputDefinitions"]["parameters"]["method"]["defaultValue"] == ""  # empty: the config's


def test_fold_teachers_are_a_nested_parallel_loop_fanned_into_teacher_outputs(tmp_path):
    spec, platform = _compile(tmp_path, parallelism=2)
    inner = spec["components"]["comp-for-loop-1"]["dag"]["tasks"]
    plan = inner["fold-plan"]
    assert set(plan["dependentTasks"]) == {"estimate-gain"}  # no fold teacher starts before the estimate
    assert plan["inputs"]["artifacts"]["config"]["taskOutputArtifact"]["producerTask"] == "estimate-gain"
    assert set(inner["estimate-gain"]["dependentTasks"]) == {"build-dataset", "train-teacher"}
    assert plan["cachingOptions"] == {"enableCache": True}
    # the fold loop: one iteration per item of the plan (the config's distill.folds, read at run time), no limit
    loop_name = next(n for n, t in inner.items() if t.get("taskInfo", {}).get("name") == "fold-teachers")
    loop = inner[loop_name]
    assert loop["parameterIterator"]["items"]["inputParameter"] == "pipelinechannel--fold-plan-Output"
    assert (
        loop["inputs"]["parameters"]["pipelinechannel--fold-plan-Output"]["taskOutputParameter"]["producerTask"]
        == "fold-plan"
    )
    assert "iteratorPolicy" not in loop
    body = spec["components"][loop["componentRef"]["name"]]["dag"]["tasks"]
    assert set(body) == {"train-fold-teacher"}
    fold = body["train-fold-teacher"]
    assert fold["cachingOptions"] == {}  # a training step: off, like train-teacher
    params = fold["inputs"]["parameters"]
    item = loop["parameterIterator"]["itemInput"]
    assert params == {"fold": {"componentInputParameter": item}}  # the loop's own item, nothing from the outer loop
    assert fold["inputs"]["artifacts"]["dataset"]["componentInputArtifact"] == "pipelinechannel--build-dataset-dataset"
    assert fold["inputs"]["artifacts"]["config"]["componentInputArtifact"] == "pipelinechannel--estimate-gain-decided"
    fold_io = spec["components"]["comp-train-fold-teacher"]
    assert set(fold_io["inputDefinitions"]["parameters"]) == {"fold"}
    assert set(fold_io["inputDefinitions"]["artifacts"]) == {"dataset", "config"}
    assert fold_io["inputDefinitions"]["parameters"]["fold"]["parameterType"] == "NUMBER_INTEGER"
    assert set(fold_io["outputDefinitions"]["artifacts"]) == {"fold_outputs", "metrics"}
    k8s = _platform_executors(platform)["exec-train-fold-teacher"]
    assert k8s["tolerations"][0]["key"] == "nvidia.com/gpu"

    # fan-in: every fold's artifact collected into one list input of teacher-outputs, which feeds distill
    soft = inner["teacher-outputs"]
    assert soft["inputs"]["artifacts"]["fold_outputs"]["taskOutputArtifact"] == {
        "producerTask": loop_name,
        "outputArtifactKey": "pipelinechannel--train-fold-teacher-fold_outputs",
    }
    assert soft["inputs"]["artifacts"]["teacher"]["taskOutputArtifact"]["producerTask"] == "train-teacher"
    assert (
        spec["components"]["comp-teacher-outputs"]["inputDefinitions"]["artifacts"]["fold_outputs"]["isArtifactList"]
        is True
    )
    assert set(soft["dependentTasks"]) >= {loop_name, "train-teacher"}
    assert inner["distill"]["inputs"]["artifacts"]["train_logits"]["taskOutputArtifact"] == {
        "producerTask": "teacher-outputs",
        "outputArtifactKey": "train_logits",
    }
    assert "accelerator" not in spec["deploymentSpec"]["executors"]["exec-teacher-outputs"]["container"].get(
        "resources", {}
    )

    spec, _ = _compile(tmp_path, fold_parallelism=3)
    inner = spec["components"]["comp-for-loop-1"]["dag"]["tasks"]
    assert inner[loop_name]["iteratorPolicy"]["parallelismLimit"] == 3


def test_fold_plan_follows_the_config(tiny_project):
    from cpfd.components.common import fold_plan_items, resolve_scenario_config

    project = tiny_project.model_copy(deep=True)
    assert project.distill_for("clickbait").folds == 3
    assert fold_plan_items(resolve_scenario_config(project, "clickbait")) == [0, 1, 2]
    project.scenario("clickbait").distill = {"folds": 5}
    assert fold_plan_items(resolve_scenario_config(project, "clickbait")) == [0, 1, 2, 3, 4]
    project.scenario("originality").distill = {"teacher_outputs": "insample"}
    assert fold_plan_items(resolve_scenario_config(project, "originality")) == [-1]


def test_scenario_config_is_resolved_once_and_read_back_typed(tiny_project, tmp_path):
    """Project sections + the scenario's overrides + the run's method, folded into a one-scenario ProjectConfig that
    round-trips through the artifact; re-resolving it changes nothing."""
    from types import SimpleNamespace

    from cpfd.components.common import read_scenario_config, resolve_scenario_config, write_scenario_config
    from cpfd.config import ProjectConfig
    from cpfd.errors import ConfigError

    project = tiny_project.model_copy(deep=True)
    project.scenario("clickbait").train = {"epochs": 2}
    project.scenario("clickbait").distill = {"folds": 4, "method": "pfd", "weighting": "entropy"}
    resolved = resolve_scenario_config(project, "clickbait")
    assert isinstance(resolved, ProjectConfig) and [s.name for s in resolved.scenarios] == ["clickbait"]
    assert resolved.scenarios[0].train == {} and resolved.scenarios[0].distill == {}
    assert resolved.train.epochs == 2 and resolved.distill.folds == 4 and resolved.distill.weighting == "entropy"
    assert resolved.distill.method == "pfd"  # the scenario's own, no run-time method
    assert resolved.distill_for("clickbait") == resolved.distill and resolved.train_for("clickbait") == resolved.train
    assert resolved.scenario("clickbait").gate == project.scenario("clickbait").gate
    assert resolved.model == project.model
    assert resolve_scenario_config(resolved, "clickbait") == resolved  # a fixed point: nothing applied twice

    over = resolve_scenario_config(project, "clickbait", "cpfd")  # the run's method wins, once
    assert over.distill.method == "cpfd" and over.distill.folds == 4
    pooled = resolve_scenario_config(project, "clickbait", "", pool_weight=0.0, pool_ratio=0.0)
    assert pooled.distill.pool_weight == 0.0 and pooled.distill.pool_ratio is None  # 0: the whole pool
    kept = resolve_scenario_config(project, "clickbait", "", pool_weight=-1.0, pool_ratio=2.5)
    assert kept.distill.pool_weight == project.distill.pool_weight and kept.distill.pool_ratio == 2.5
    with pytest.raises(ConfigError, match="pool_ratio"):
        resolve_scenario_config(project, "clickbait", "", pool_ratio=500.0)

    artifact = SimpleNamespace(path=str(tmp_path / "config"), metadata={})
    write_scenario_config(over, artifact, "pipeline parameter method")
    assert (
        artifact.metadata.items()
        >= {
            "scenario": "clickbait",
            "method": "cpfd",
            "method_source": "pipeline parameter method",
            "weighting": "entropy",
            "teacher_outputs": "oof",
            "folds": 4,
            "epochs": 2,
        }.items()
    )
    back, scen = read_scenario_config(artifact)
    assert back == over and scen.name == "clickbait"
    assert read_scenario_config(artifact.path)[0] == over

    with pytest.raises(ConfigError, match="method must be empty .* got 'joint'"):
        resolve_scenario_config(project, "clickbait", "joint")
    project.scenario("originality").distill = {"method": "none"}
    with pytest.raises(ConfigError, match="scenario originality: distill.method is 'none'"):
        resolve_scenario_config(project, "originality")
    with pytest.raises(ConfigError, match="unknown scenario 'nope'"):
        resolve_scenario_config(project, "nope")
    (tmp_path / "two").write_text(json.dumps(project.model_dump(mode="json")))
    with pytest.raises(ConfigError, match="expected the config of one scenario"):
        read_scenario_config(tmp_path / "two")


def test_fold_outputs_must_match_distill_folds():
    from cpfd.components.common import fold_output_paths
    from cpfd.errors import ConfigError

    arts = [
        (f"/r/f{k}", {"fold": float(k), "num_folds": 3.0}) for k in (2, 0, 1)
    ]  # metadata numbers come back as floats
    assert fold_output_paths(arts, "clickbait", 3) == ["/r/f0", "/r/f1", "/r/f2"]
    with pytest.raises(
        ConfigError,
        match=r"distill.folds = 4 in the config, but the fold teacher steps produced 3 output\(s\) "
        r"for folds \[0, 1, 2\] of \[3\] fold",
    ):
        fold_output_paths(arts, "clickbait", 4)
    with pytest.raises(ConfigError, match="folds \\[0, 2\\]"):
        fold_output_paths([arts[0], arts[1]], "clickbait", 3)
    with pytest.raises(ConfigError, match="skipped"):
        fold_output_paths([("/r/x", {"fold": -1, "num_folds": 0, "skipped": True})], "clickbait", 3)


def test_no_gpu_and_custom_pools(tmp_path):
    spec, platform = _compile(tmp_path, gpu=False)
    assert not any(
        "accelerator" in ex.get("container", {}).get("resources", {})
        for ex in spec["deploymentSpec"]["executors"].values()
    )
    assert not _platform_executors(platform)

    from cpfd.cli.pipeline import pipeline_options

    opts = pipeline_options(
        parallelism=0, node_selector=["pool=a100"], toleration=["dedicated=gpu:NoExecute", "spot:NoSchedule"]
    )
    assert opts.node_selector == {"pool": "a100"}
    assert opts.tolerations == [
        {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoExecute"},
        {"key": "spot", "operator": "Exists", "effect": "NoSchedule"},
    ]
    from cpfd.pipelines.cpfd_pipeline import compile_pipeline

    doc, platform = yaml.safe_load_all(compile_pipeline(tmp_path / "p2.yaml", opts).read_text())
    k8s = _platform_executors(platform)
    assert k8s["exec-distill"]["nodeSelector"]["labels"] == {"pool": "a100"}
    assert k8s["exec-distill"]["tolerations"][0]["value"] == "gpu"
    assert "iteratorPolicy" not in doc["root"]["dag"]["tasks"]["for-loop-1"]  # 0 = unlimited


def _cli(monkeypatch, capsys, *argv) -> tuple[int, str, str]:
    from cpfd.cli.main import main

    monkeypatch.setattr(sys, "argv", ["cpfd", *argv])
    with pytest.raises(SystemExit) as exc:
        main()
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_cli_compile_and_bad_toleration(tmp_path, monkeypatch, capsys):
    out = tmp_path / "cli.yaml"
    code, stdout, _ = _cli(
        monkeypatch,
        capsys,
        "pipeline",
        "compile",
        "--out",
        str(out),
        "--parallelism",
        "4",
        "--node-selector",
        "pool=gpu",
        "--fold-parallelism",
        "2",
    )
    assert code == 0 and f"compiled {out}" in stdout
    doc, platform = yaml.safe_load_all(out.read_text())
    assert doc["root"]["dag"]["tasks"]["for-loop-1"]["iteratorPolicy"]["parallelismLimit"] == 4
    assert doc["components"]["comp-for-loop-1"]["dag"]["tasks"]["for-loop-2"]["iteratorPolicy"]["parallelismLimit"] == 2
    assert _platform_executors(platform)["exec-train-teacher"]["nodeSelector"]["labels"] == {"pool": "gpu"}
    code, _, err = _cli(monkeypatch, capsys, "pipeline", "compile", "--out", str(out), "--toleration", "gpu:Sometimes")
    assert code == 2 and "--toleration 'gpu:Sometimes'" in err and "Traceback" not in err
    code, _, err = _cli(monkeypatch, capsys, "pipeline", "run", "--data", str(tmp_path))
    assert code == 2 and "pass --local" in err
    code, _, err = _cli(monkeypatch, capsys, "pipeline", "run", "--local", "--data", str(tmp_path))
    assert code == 2 and f"input table not found: {tmp_path / 'videos.parquet'}" in err


def test_pipeline_arguments_are_json_and_checked(tiny_project):
    from cpfd.errors import CpfdError
    from cpfd.pipelines.runner import pipeline_arguments

    args = pipeline_arguments("v.parquet", "f.parquet", tiny_project, ["clickbait"])
    assert json.loads(json.dumps(args)) == args and args["scenarios"] == ["clickbait"]
    assert "\n" not in args["config_yaml"]
    from cpfd.components.common import project_from_yaml

    assert project_from_yaml(args["config_yaml"]) == tiny_project
    assert args["method"] == ""  # the config's distill.method, resolved in the run
    assert pipeline_arguments("v", "f", tiny_project, ["clickbait"], "pfd")["method"] == "pfd"
    with pytest.raises(CpfdError, match="unknown scenario 'nope'"):
        pipeline_arguments("v", "f", tiny_project, ["nope"])
    with pytest.raises(CpfdError, match="--method must be 'pfd' or 'cpfd', got 'joint'"):
        pipeline_arguments("v", "f", tiny_project, ["clickbait"], "joint")


def test_dashboard_form_parameters_carry_descriptions_and_defaults(tmp_path):
    """Every parameter of the compiled pipeline has a description (from the pipeline function's docstring); the
    optional ones a default, so a run started from the Kubeflow dashboard form explains itself."""
    spec, _ = _compile(tmp_path)
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert set(params) == {
        "videos",
        "features",
        "scenarios",
        "config_yaml",
        "method",
        "pool_weight",
        "pool_ratio",
        "join",
        "min_rows",
        "max_null_increase",
        "bentoml_home",
        "stream_root",
    }
    for name, p in params.items():
        assert len(p.get("description", "")) > 20, name
    assert "feast (the feature repository) or pandas" in params["join"]["description"]
    optional = {n: p["defaultValue"] for n, p in params.items() if p.get("isOptional")}
    assert optional == {
        "config_yaml": "",
        "method": "",
        "pool_weight": -1.0,
        "pool_ratio": -1.0,
        "join": "feast",
        "min_rows": 50,
        "max_null_increase": 0.15,
        "bentoml_home": "",
        "stream_root": "",
    }
    assert spec["pipelineInfo"]["description"].startswith("CPFD per scenario")


def test_an_empty_or_partial_config_parameter_inherits_the_embedded_defaults():
    from cpfd.components.common import project_from_yaml
    from cpfd.config import load_config

    assert project_from_yaml("") == load_config()
    partial = project_from_yaml("train: {epochs: 3}")
    assert partial.train.epochs == 3 and partial.train.batch_size == load_config().train.batch_size


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
        elif self.path.startswith("/apis/v2beta1/recurringruns"):
            self._reply({"recurring_run_id": "rr-7", "display_name": body.get("display_name")})
        else:
            self._reply({"run_id": "run-42", "display_name": body.get("display_name"), "experiment_id": "exp-1"})

    def log_message(self, *args):
        pass


def test_submit_sends_the_compiled_pipeline_and_arguments(tmp_path, tiny_project, monkeypatch):
    from cpfd.cli.pipeline import pipeline_options
    from cpfd.pipelines.runner import pipeline_arguments, submit

    monkeypatch.setenv("HOME", str(tmp_path))  # no kfp context file from the machine
    server = HTTPServer(("127.0.0.1", 0), _Recorder)
    _Recorder.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        args = pipeline_arguments(
            "/data/videos.parquet", "/data/features.parquet", tiny_project, ["clickbait", "originality"]
        )
        run_id = submit(
            f"http://127.0.0.1:{server.server_port}",
            args,
            pipeline_options(parallelism=5),
            run_name="nightly",
            experiment="cpfd",
        )
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
    assert (
        spec["deploymentSpec"]["executors"]["exec-distill"]["container"]["resources"]["accelerator"]["resourceType"]
        == "nvidia.com/gpu"
    )


def test_submit_to_unreachable_host_is_a_clear_error(tiny_project, tmp_path, monkeypatch):
    from cpfd.errors import CpfdError
    from cpfd.pipelines.runner import pipeline_arguments, submit

    monkeypatch.setenv("HOME", str(tmp_path))
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(CpfdError, match=f"submitting to http://127.0.0.1:{port} failed"):
        submit(f"http://127.0.0.1:{port}", pipeline_arguments("v", "f", tiny_project))


def test_local_run_keeps_kfp_logging_in_the_run_log():
    """kfp.local's per-task logger and print swaps race across loop threads: during a run the root logger writes only
    to the run's log, and afterwards the caller's handlers, level and print are back."""
    import builtins
    import io
    import logging

    from cpfd.pipelines.runner import _process_state_restored

    root = logging.getLogger()
    caller, run_log = io.StringIO(), io.StringIO()
    saved = root.handlers[:], root.level
    mine = logging.StreamHandler(caller)
    root.handlers[:] = [mine]
    root.setLevel(logging.WARNING)
    original_print = builtins.print
    try:
        with _process_state_restored(run_log):
            logging.info("Applying expression selector")
            root.addHandler(logging.StreamHandler(io.StringIO()))  # what a racing kfp task can leave behind
            builtins.print = lambda *a, **k: None
        assert "Applying expression selector" in run_log.getvalue() and caller.getvalue() == ""
        assert root.handlers == [mine] and root.level == logging.WARNING and builtins.print is original_print
    finally:
        builtins.print = original_print
        root.handlers[:], _ = saved
        root.setLevel(saved[1])


def test_schedule_monitoring_creates_one_recurring_run_of_the_monitoring_pipeline(tmp_path, monkeypatch):
    """`cpfd pipeline schedule-monitoring`: the monitoring pipeline as a recurring run, cron in KFP's six fields."""
    pytest.importorskip("kfp")
    from typer.testing import CliRunner

    from cpfd.cli.main import app

    monkeypatch.setenv("HOME", str(tmp_path))
    thresholds = tmp_path / "monitoring.yaml"
    thresholds.write_text("drift: {psi_alert: 0.3}\n")
    server = HTTPServer(("127.0.0.1", 0), _Recorder)
    _Recorder.requests = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host = f"http://127.0.0.1:{server.server_port}"
    common = ["pipeline", "schedule-monitoring", "--host", host, "--log-url", "postgresql+psycopg://log/db"]
    common += ["--reference-uri", "gs://bucket/ref", "--config", str(thresholds)]
    try:
        done = CliRunner().invoke(app, [*common, "--cron", "30 6 * * 1-5", "--window-hours", "12"])
        bad = subprocess.run(
            [sys.executable, "-m", "cpfd.cli", *common, "--cron", "every morning"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        server.shutdown()
    assert done.exit_code == 0, done.output
    assert "rr-7" in done.output
    posts = [(path, body) for method, path, body in _Recorder.requests if method == "POST"]
    assert [p.split("?")[0] for p, _ in posts] == ["/apis/v2beta1/experiments", "/apis/v2beta1/recurringruns"]
    job = posts[1][1]
    assert job["trigger"]["cron_schedule"]["cron"] == "0 30 6 * * 1-5"  # seconds first, as KFP reads it
    assert job["experiment_id"] == "exp-1" and job["mode"] == "ENABLE" and job["no_catchup"] is True
    assert int(job["max_concurrency"]) == 1
    params = job["runtime_config"]["parameters"]
    assert params["log_url"] == "postgresql+psycopg://log/db" and params["reference_uri"] == "gs://bucket/ref"
    assert params["window_hours"] == 12.0 and params["config_yaml"] == thresholds.read_text()
    spec = job["pipeline_spec"]
    assert spec.get("pipeline_spec", spec)["pipelineInfo"]["name"] == "cpfd-monitoring"
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: --cron 'every morning': expected 5 fields")
    assert "Traceback" not in bad.stderr
    assert len([r for r in _Recorder.requests if r[0] == "POST"]) == 2  # the bad cron sent nothing
