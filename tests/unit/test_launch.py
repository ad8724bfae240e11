"""Distributed training steps: the torchrun command, the PyTorchJob manifest and its wait loop (against a stand-in
API: nothing reaches a cluster), and the compiled pipeline that carries them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from cpfd.components.launch import LAUNCH_ENV, Launch, Step, pytorchjob_manifest, run_on_cluster, torchrun_command

GPU_POOL = {
    "accelerator": "nvidia.com/gpu",
    "node_selector": {"pool": "a100"},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
}
STEP = Step("teacher", "/mnt/cpfd/j/dataset", "/mnt/cpfd/j/config.json", "/mnt/cpfd/j/out")


def test_one_node_and_several_run_the_same_step_command():
    args = STEP.args("/mnt/cpfd/j/info.json")
    assert args[:3] == ["-m", "cpfd.components.launch", "teacher"] and args[-2:] == ["--info", "/mnt/cpfd/j/info.json"]
    one = torchrun_command(Launch(nproc_per_node=2), args)
    assert one == ["torchrun", "--standalone", "--nproc-per-node", "2", *args]
    several = torchrun_command(Launch(nodes=3, nproc_per_node=4), args)
    assert several[: several.index("-m")] == [
        "torchrun",
        "--nnodes",
        "3",
        "--node-rank",
        "$(RANK)",  # the Training Operator's per-pod environment, expanded by Kubernetes
        "--master-addr",
        "$(MASTER_ADDR)",
        "--master-port",
        "$(MASTER_PORT)",
        "--nproc-per-node",
        "4",
    ]
    assert several[several.index("-m") :] == args


def test_pytorchjob_manifest_is_a_valid_master_worker_job():
    from kubernetes.client import ApiClient

    launch = Launch(nodes=3, nproc_per_node=4, image="registry.example/cpfd:1.2", pvc="cpfd-shared", **GPU_POOL)
    command = torchrun_command(launch, STEP.args("/mnt/cpfd/j/info.json"))
    job = pytorchjob_manifest("cpfd-teacher-1a2b3c4d", "ml", launch, command)
    assert job["apiVersion"] == "kubeflow.org/v1" and job["kind"] == "PyTorchJob"
    assert (job["metadata"]["name"], job["metadata"]["namespace"]) == ("cpfd-teacher-1a2b3c4d", "ml")
    spec = job["spec"]
    assert spec["nprocPerNode"] == "4" and spec["runPolicy"]["backoffLimit"] == 0
    replicas = spec["pytorchReplicaSpecs"]
    assert {k: r["replicas"] for k, r in replicas.items()} == {"Master": 1, "Worker": 2}
    for r in replicas.values():
        pod = r["template"]["spec"]
        (container,) = pod["containers"]
        assert container["name"] == "pytorch" and container["image"] == "registry.example/cpfd:1.2"
        assert container["command"] == command
        assert container["resources"] == {"requests": {"cpu": "4", "memory": "16G"}, "limits": {"nvidia.com/gpu": "4"}}
        assert pod["nodeSelector"] == {"pool": "a100"} and pod["tolerations"] == GPU_POOL["tolerations"]
        assert {"name": "work", "persistentVolumeClaim": {"claimName": "cpfd-shared"}} in pod["volumes"]
        assert {"name": "work", "mountPath": "/mnt/cpfd"} in container["volumeMounts"]
        # every field is one the Kubernetes API knows: a pod template survives the client's typed round trip
        api = ApiClient()
        typed = api.deserialize(type("Response", (), {"data": json.dumps(r["template"])})(), "V1PodTemplateSpec")
        assert api.sanitize_for_serialization(typed) == r["template"]

    cpu = pytorchjob_manifest("j", "ml", Launch(nodes=2, pvc="c"), ["torchrun"])
    pod = cpu["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]
    assert "limits" not in pod["containers"][0]["resources"] and pod["nodeSelector"] == {}


class FakeJobs:
    """A stand-in CustomObjectsApi: each get returns the next status; ``on_create`` plays the job's pods."""

    def __init__(self, conditions: list[str], on_create=None):
        self.conditions, self.on_create, self.calls = conditions, on_create, []

    def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        self.calls.append(("create", group, version, namespace, plural, body))
        if self.on_create:
            self.on_create(body)

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        state = self.conditions.pop(0) if len(self.conditions) > 1 else self.conditions[0]
        return {"status": {"conditions": [{"type": state, "status": "True", "message": f"job {state.lower()}"}]}}

    def delete_namespaced_custom_object(self, group, version, namespace, plural, name):
        self.calls.append(("delete", name))


def test_a_cluster_step_copies_inputs_runs_the_job_and_copies_the_output_back(tmp_path):
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "train.parquet").write_text("rows")
    (tmp_path / "config.json").write_text("{}")
    launch = Launch(nodes=2, nproc_per_node=2, image="img", pvc="claim", mount=str(tmp_path / "mnt"), namespace="ml")

    def pods(job):  # what the job's rank 0 leaves on the claim
        command = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["command"]
        options = command[command.index("teacher") + 1 :]
        arg = dict(zip(options[::2], options[1::2], strict=True))
        assert (Path(arg["--dataset"]) / "train.parquet").read_text() == "rows"
        assert Path(arg["--config"]).read_text() == "{}"
        (Path(arg["--out"]) / "model.safetensors").parent.mkdir()
        (Path(arg["--out"]) / "model.safetensors").write_text("weights")
        Path(arg["--info"]).write_text(json.dumps({"best_epoch": 2}))

    api = FakeJobs(["Created", "Running", "Succeeded"], on_create=pods)
    step = Step("teacher", str(tmp_path / "ds"), str(tmp_path / "config.json"), str(tmp_path / "model"))
    assert run_on_cluster(step, launch, api=api, poll_s=0) == {"best_epoch": 2}
    assert (tmp_path / "model" / "model.safetensors").read_text() == "weights"
    assert list((tmp_path / "mnt").iterdir()) == []  # the work folder is removed
    ((_, group, version, namespace, plural, job),) = api.calls
    assert (group, version, namespace, plural) == ("kubeflow.org", "v1", "ml", "pytorchjobs")
    assert job["metadata"]["name"].startswith("cpfd-teacher-")


def test_a_failed_or_stuck_job_fails_the_step(tmp_path):
    from cpfd.components.launch import wait_for_pytorchjob
    from cpfd.errors import CpfdError

    job = pytorchjob_manifest("cpfd-distill-0", "ml", Launch(nodes=2, pvc="c"), ["torchrun"])
    api = FakeJobs(["Running", "Failed"])
    with pytest.raises(CpfdError, match="ml/cpfd-distill-0 failed: job failed .*kubectl -n ml logs cpfd-distill-0-m"):
        wait_for_pytorchjob(job, timeout_s=60, api=api, poll_s=0)
    assert [c[0] for c in api.calls] == ["create"]  # a failed job stays for its logs
    api = FakeJobs(["Running"])
    with pytest.raises(CpfdError, match="did not finish within 0 s; deleted"):
        wait_for_pytorchjob(job, timeout_s=0, api=api, poll_s=0)
    assert api.calls[-1] == ("delete", "cpfd-distill-0")


TRAINING = ("exec-train-teacher", "exec-train-student", "exec-train-fold-teacher", "exec-distill")


def _compile(tmp_path, **options):
    from cpfd.pipelines.cpfd_pipeline import PipelineOptions, compile_pipeline

    spec, platform = yaml.safe_load_all(compile_pipeline(tmp_path / "p.yaml", PipelineOptions(**options)).read_text())
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    steps = {n: e for n, e in spec["deploymentSpec"]["executors"].items() if "container" in e}  # not the importers
    return steps, executors


def _launch(executor: dict) -> Launch | None:
    env = {e["name"]: e["value"] for e in executor["container"].get("env", [])}
    return Launch(**json.loads(env[LAUNCH_ENV])) if LAUNCH_ENV in env else None


def test_compiled_pipeline_carries_the_launch_of_every_training_step(tmp_path):
    executors, _ = _compile(tmp_path)
    assert not any(_launch(e) for e in executors.values())  # default: one process per step, as before

    executors, _ = _compile(tmp_path, gpu_count=4)  # one node: torchrun over the pod's 4 GPUs
    for name in TRAINING:
        assert _launch(executors[name]) == Launch(
            nproc_per_node=4,
            image=executors[name]["container"]["image"],
            accelerator="nvidia.com/gpu",
            node_selector={"nvidia.com/gpu.present": "true"},
            tolerations=GPU_POOL["tolerations"],
        )
        assert executors[name]["container"]["resources"]["accelerator"]["resourceCount"] == "4"
    assert executors["exec-evaluate"]["container"]["resources"]["accelerator"]["resourceCount"] == "1"

    nccl = {"NCCL_DEBUG": "INFO", "NCCL_SOCKET_IFNAME": "eth0"}
    executors, k8s = _compile(
        tmp_path, gpu_count=8, train_nodes=4, train_pvc="cpfd-shared", image="registry.example/cpfd:1.2", train_env=nccl
    )
    for name in TRAINING:  # a launcher pod: no GPU, the shared claim, the job's launch
        launch = _launch(executors[name])
        assert launch is not None and (launch.nodes, launch.nproc_per_node, launch.pvc) == (4, 8, "cpfd-shared")
        assert launch.env == nccl and {"name": "NCCL_DEBUG", "value": "INFO"} in executors[name]["container"]["env"]
        assert launch.image == "registry.example/cpfd:1.2" and launch.accelerator == "nvidia.com/gpu"
        assert launch.tolerations == GPU_POOL["tolerations"]
        assert "accelerator" not in executors[name]["container"]["resources"]
        assert k8s[name]["pvcMount"][0]["mountPath"] == "/mnt/cpfd" and "tolerations" not in k8s[name]
        job = pytorchjob_manifest("j", "ml", launch, torchrun_command(launch, STEP.args("i")))
        assert job["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] == 3
        pod = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
        assert pod["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "8"}
        assert pod["containers"][0]["env"] == [{"name": k, "value": v} for k, v in nccl.items()]
    assert executors["exec-evaluate"]["container"]["resources"]["accelerator"]["resourceCount"] == "1"

    from cpfd.errors import ConfigError

    with pytest.raises(ConfigError, match="train_nodes > 1 needs train_pvc"):
        _compile(tmp_path, train_nodes=2)
