"""Where a training step runs: in the step's own process, under torchrun over the pod's GPUs, or as a Kubeflow Training
Operator PyTorchJob over several nodes.

The pipeline fixes the choice per training task at compile time (``PipelineOptions`` -> the task's ``CPFD_LAUNCH``
environment variable, a ``Launch`` as JSON). Every way runs the same work, ``train_step``: in process, or as
``python -m cpfd.components.launch <kind> --dataset ... --config ... --out ...`` (``main``) under torchrun, which is the
command of the PyTorchJob's pods too. Plain helpers, importable without KFP; the kubernetes client (a kfp dependency)
is imported only to submit a job.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

LAUNCH_ENV = "CPFD_LAUNCH"
KINDS = ("teacher", "student", "fold-teacher", "distill")
PYTORCHJOB = ("kubeflow.org", "v1", "pytorchjobs")  # group, version, plural
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclass
class Launch:
    """How a training step runs. ``nodes`` 1, ``nproc_per_node`` 1: in the step's process; ``nodes`` 1,
    ``nproc_per_node`` N: torchrun over the pod's N GPUs; ``nodes`` > 1: a PyTorchJob of that many pods (1 Master,
    nodes - 1 Workers), each running torchrun over ``nproc_per_node`` GPUs, exchanging inputs and outputs through the
    ReadWriteMany claim ``pvc`` mounted at ``mount`` (in the step's pod too)."""

    nodes: int = 1
    nproc_per_node: int = 1
    image: str = ""
    accelerator: str = ""  # the GPU resource, e.g. nvidia.com/gpu; empty: CPU pods (gloo)
    cpu: str = "4"
    memory: str = "16G"
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, str]] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # e.g. NCCL_DEBUG, NCCL_SOCKET_IFNAME for the job's pods
    pvc: str = ""
    mount: str = "/mnt/cpfd"
    namespace: str = ""  # empty: the step pod's own namespace
    timeout_s: int = 3 * 24 * 3600

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_env(cls) -> Launch:
        return cls(**json.loads(os.environ.get(LAUNCH_ENV) or "{}"))


@dataclass(frozen=True)
class Step:
    """One training step: its kind (``KINDS``), input paths and output folder."""

    kind: str
    dataset: str
    config: str
    out: str
    fold: int = -1
    train_logits: str = ""

    def args(self, info: str) -> list[str]:
        """The arguments after ``python`` or ``torchrun``: this module's ``main``, writing rank 0's info dict to
        ``info``."""
        args = ["-m", "cpfd.components.launch", self.kind, "--dataset", self.dataset, "--config", self.config]
        args += ["--out", self.out, "--fold", str(self.fold), "--train-logits", self.train_logits, "--info", info]
        return args


def train_step(step: Step) -> dict:
    """The step's training (``cpfd.training.recipes``) on the resolved config artifact; its info dict. Marks the
    step's ``imports``, ``load`` and ``train`` (``cpfd.components.timing``)."""
    from transformers import BertModel, ViTModel  # noqa: F401  (the towers' classes: imported here, timed as imports)

    from cpfd.components import timing
    from cpfd.components.common import read_scenario_config
    from cpfd.data.tensors import prepare_data
    from cpfd.teacher_outputs import TeacherOutputs
    from cpfd.training import recipes

    timing.mark("imports")
    project, _ = read_scenario_config(step.config)
    data = prepare_data(step.dataset, project.model, project.train)
    if step.kind == "distill":
        outputs = TeacherOutputs.load(step.train_logits, data.splits["train"].video_ids)
    timing.mark("load")
    if step.kind in ("teacher", "student"):
        info = recipes.train_classifier(data, step.kind, project, step.out, progress=False)
    elif step.kind == "fold-teacher":
        info = recipes.train_fold_teacher(data, project, step.fold, project.distill.folds, step.out, progress=False)
    else:
        info = recipes.distill_student(data, outputs, project, step.out, project.distill, progress=False)
    timing.mark("train")
    return info


def torchrun_command(launch: Launch, args: Sequence[str], torchrun: Sequence[str] = ("torchrun",)) -> list[str]:
    """torchrun over ``nproc_per_node`` processes: standalone on one node; on several, node rank and master from the
    environment the Training Operator gives each PyTorchJob pod (expanded by Kubernetes: ``$(VAR)``)."""
    if launch.nodes == 1:
        where = ["--standalone"]
    else:
        where = ["--nnodes", str(launch.nodes), "--node-rank", "$(RANK)"]
        where += ["--master-addr", "$(MASTER_ADDR)", "--master-port", "$(MASTER_PORT)"]
    return [*torchrun, *where, "--nproc-per-node", str(launch.nproc_per_node), *args]


def pytorchjob_manifest(name: str, namespace: str, launch: Launch, command: list[str]) -> dict[str, Any]:
    """A kubeflow.org/v1 PyTorchJob: 1 Master and ``nodes - 1`` Workers of the project image running ``command``,
    ``nproc_per_node`` GPUs each, the pipeline's node selector and tolerations, the shared claim and a RAM-backed
    /dev/shm (NCCL and DataLoader workers outgrow the container default of 64 MiB)."""
    resources: dict[str, dict[str, str]] = {"requests": {"cpu": launch.cpu, "memory": launch.memory}}
    if launch.accelerator:
        resources["limits"] = {launch.accelerator: str(launch.nproc_per_node)}
    labels = {"app.kubernetes.io/name": "cpfd", "cpfd/job": name}
    pod = {
        "containers": [
            {
                "name": "pytorch",  # the container the Training Operator gives MASTER_ADDR, RANK, ...
                "image": launch.image,
                "command": command,
                "env": [{"name": k, "value": v} for k, v in launch.env.items()],
                "resources": resources,
                "volumeMounts": [
                    {"name": "work", "mountPath": launch.mount},
                    {"name": "dshm", "mountPath": "/dev/shm"},
                ],
            }
        ],
        "volumes": [
            {"name": "work", "persistentVolumeClaim": {"claimName": launch.pvc}},
            {"name": "dshm", "emptyDir": {"medium": "Memory"}},
        ],
        "nodeSelector": dict(launch.node_selector),
        "tolerations": [dict(t) for t in launch.tolerations],
    }

    def replicas(n: int) -> dict[str, Any]:
        return {"replicas": n, "restartPolicy": "Never", "template": {"metadata": {"labels": labels}, "spec": pod}}

    return {
        "apiVersion": f"{PYTORCHJOB[0]}/{PYTORCHJOB[1]}",
        "kind": "PyTorchJob",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "nprocPerNode": str(launch.nproc_per_node),
            "runPolicy": {"cleanPodPolicy": "Running", "backoffLimit": 0, "ttlSecondsAfterFinished": 86400},
            "pytorchReplicaSpecs": {"Master": replicas(1), "Worker": replicas(launch.nodes - 1)},
        },
    }


def wait_for_pytorchjob(manifest: dict[str, Any], timeout_s: float, api: Any = None, poll_s: float = 15.0) -> None:
    """Create the job and wait until it succeeds; a failed job (kept for its logs) or the timeout (the job is
    deleted) raise. ``api``: a kubernetes ``CustomObjectsApi`` (default: the in-cluster one)."""
    from cpfd.errors import CpfdError

    if api is None:
        from kubernetes import client, config

        config.load_incluster_config()
        api = client.CustomObjectsApi()
    namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
    api.create_namespaced_custom_object(*PYTORCHJOB[:2], namespace, PYTORCHJOB[2], manifest)
    deadline = time.monotonic() + timeout_s
    while True:
        job = api.get_namespaced_custom_object(*PYTORCHJOB[:2], namespace, PYTORCHJOB[2], name)
        state = {c["type"]: c for c in job.get("status", {}).get("conditions", []) if c.get("status") == "True"}
        if "Succeeded" in state:
            return
        if "Failed" in state:
            raise CpfdError(
                f"PyTorchJob {namespace}/{name} failed: {state['Failed'].get('message', '')} "
                f"(logs: kubectl -n {namespace} logs {name}-master-0)"
            )
        if time.monotonic() > deadline:
            api.delete_namespaced_custom_object(*PYTORCHJOB[:2], namespace, PYTORCHJOB[2], name)
            raise CpfdError(f"PyTorchJob {namespace}/{name} did not finish within {timeout_s:.0f} s; deleted")
        time.sleep(poll_s)


def _copy(src: str, dst: Path) -> str:
    if Path(src).is_dir():
        shutil.copytree(src, dst)
    else:
        shutil.copy2(src, dst)
    return str(dst)


def run_on_cluster(step: Step, launch: Launch, api: Any = None, poll_s: float = 15.0) -> dict:
    """The step as a PyTorchJob: inputs copied to the shared claim, the job run, its output copied back."""
    name = f"cpfd-{step.kind}-{uuid.uuid4().hex[:8]}"
    work = Path(launch.mount) / name
    work.mkdir(parents=True)
    remote = replace(
        step,
        dataset=_copy(step.dataset, work / "dataset"),
        config=_copy(step.config, work / "config.json"),
        out=str(work / "out"),
        train_logits=_copy(step.train_logits, work / "train_logits") if step.train_logits else "",
    )
    namespace = launch.namespace or SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    command = torchrun_command(launch, remote.args(str(work / "info.json")))
    wait_for_pytorchjob(pytorchjob_manifest(name, namespace, launch, command), launch.timeout_s, api, poll_s)
    shutil.copytree(remote.out, step.out, dirs_exist_ok=True)
    info = json.loads((work / "info.json").read_text())
    shutil.rmtree(work)
    return info


def run_training(step: Step, launch: Launch | None = None) -> dict:
    """``train_step`` where ``launch`` (default: the task's ``CPFD_LAUNCH``) says; rank 0's info dict."""
    launch = launch or Launch.from_env()
    if launch.nodes > 1:
        return run_on_cluster(step, launch)
    if launch.nproc_per_node == 1:
        return train_step(step)
    with tempfile.TemporaryDirectory() as tmp:
        info = Path(tmp) / "info.json"
        torchrun = (sys.executable, "-m", "torch.distributed.run")
        subprocess.run(torchrun_command(launch, step.args(str(info)), torchrun), check=True)
        return json.loads(info.read_text())


def main(argv: Sequence[str] | None = None) -> None:
    """One process of a distributed step (torchrun starts one per GPU); rank 0 writes the info dict."""
    from cpfd.env import set_env_defaults
    from cpfd.training.distributed import is_main

    p = argparse.ArgumentParser(prog="python -m cpfd.components.launch", description=main.__doc__)
    p.add_argument("kind", choices=KINDS)
    for opt in ("--dataset", "--config", "--out", "--info"):
        p.add_argument(opt, required=True)
    p.add_argument("--fold", type=int, default=-1)
    p.add_argument("--train-logits", default="")
    a = p.parse_args(argv)
    set_env_defaults()
    info = train_step(Step(a.kind, a.dataset, a.config, a.out, a.fold, a.train_logits))
    if is_main():
        Path(a.info).write_text(json.dumps(info))


if __name__ == "__main__":
    main()
