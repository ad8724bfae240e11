"""The CPFD pipeline: a ParallelFor over scenarios, the per-scenario DAG, a fan-in report.

The videos table and the feature sources enter through importers (``Dataset`` artifacts). Per scenario:
build_dataset (the dataset, and the scenario's config resolved once: project defaults, the scenario's overrides, the
run's ``method``; every later step reads that typed artifact and nothing else of the config) -> validate_data ->
train_teacher & train_student -> estimate_gain (the distilled student's gain predicted before any fold teacher, and
the config the distillation steps read: in-sample teacher outputs when it says "no gain" and
distill.skip_folds_when_no_gain is on) -> fold_plan -> a nested ParallelFor of train_fold_teacher (one step per
cross-fitting fold, distill.folds of the decided config) -> teacher_outputs (fan-in with ``dsl.Collected``: the out-
of-fold soft targets, or the full teacher's in-sample ones, temperature-scaled on validation) -> distill -> evaluate
(the gate; it keeps both arms' test-split predictions) -> when it passed, package and make_reference (those
predictions as the monitoring reference), else not_packaged -> scenario_result (the gate's row with the packaging
handover, from whichever branch ran). Then ``report`` collects every row: the pipeline's outputs
are the report, the table and ``packages`` (tags per arm, model store, reference folder of each
packaged scenario), what serving and monitoring read. Deployment choices (image, parallelism, GPU
requests, node selectors, tolerations, distributed training) are compile-time ``PipelineOptions``; run-time
parameters are JSON-able.

Distributed training: with ``gpu_count`` > 1 the training steps (teacher, student, fold teachers, distill) run
torchrun over the pod's GPUs; with ``train_nodes`` > 1 each is a light launcher pod that runs the same command as a
Kubeflow Training Operator PyTorchJob over that many GPU nodes (``components/launch.py``, README: Distributed
training). Both are the task's ``CPFD_LAUNCH`` environment variable.

The fold count is read at run time by fold_plan from the resolved config (the one place it lives):
kfp.local 2.17 gives the inner loop's item to every outer loop item and task-output parameter
referenced inside a nested loop, so the fold loop's body uses only its own item (the fold number),
pipeline parameters and artifacts (the dataset, the resolved config)."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from cpfd.components.launch import LAUNCH_ENV, Launch
from cpfd.errors import ConfigError

PIPELINE_NAME = "cpfd-pipeline"


@dataclass
class PipelineOptions:
    """How the compiled pipeline asks for resources; ignored (with a warning) by the local runner."""

    image: str = ""  # empty: cpfd.components.project_image()
    parallelism: int = 2  # scenarios at once; 0 = unlimited
    fold_parallelism: int = 0  # fold teachers at once within a scenario; 0 = unlimited (kfp.local: at most 2)
    gpu: bool = True
    accelerator: str = "nvidia.com/gpu"
    gpu_count: int = 1  # GPUs per training pod; > 1: torchrun with one process per GPU
    train_cpu: str = "4"
    train_memory: str = "16G"
    data_cpu: str = "2"
    data_memory: str = "8G"
    node_selector: dict[str, str] = field(default_factory=lambda: {"nvidia.com/gpu.present": "true"})
    tolerations: list[dict] = field(
        default_factory=lambda: [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    )
    train_env: dict[str, str] = field(default_factory=dict)  # training pods' environment, e.g. NCCL_DEBUG=INFO
    train_nodes: int = 1  # > 1: every training step runs as a PyTorchJob of this many nodes x gpu_count GPUs
    train_pvc: str = ""  # with train_nodes > 1: a ReadWriteMany claim the step's pod and the job's pods share
    train_mount: str = "/mnt/cpfd"  # where that claim is mounted
    train_namespace: str = ""  # the PyTorchJobs' namespace; empty: the pipeline pod's own
    # A team's own Feast (feature_store.repo): a Kubernetes secret whose keys become build_dataset's environment
    # variables (secret key -> variable), the ones its feature_store.yaml reads as ${VAR}; nothing in the YAML
    feast_secret: str = ""
    feast_secret_env: dict[str, str] = field(default_factory=dict)


def train_launch(opts: PipelineOptions, image: str) -> Launch:
    """Where the training steps run (their ``CPFD_LAUNCH``): ``train_nodes`` nodes x ``gpu_count`` processes."""
    if opts.train_nodes > 1 and not opts.train_pvc:
        raise ConfigError("train_nodes > 1 needs train_pvc, a ReadWriteMany claim the PyTorchJob's pods share")
    return Launch(
        nodes=opts.train_nodes,
        nproc_per_node=opts.gpu_count if opts.gpu else 1,
        image=image,
        accelerator=opts.accelerator if opts.gpu else "",
        cpu=opts.train_cpu,
        memory=opts.train_memory,
        node_selector=dict(opts.node_selector) if opts.gpu else {},
        tolerations=list(opts.tolerations) if opts.gpu else [],
        env=dict(opts.train_env),
        pvc=opts.train_pvc,
        mount=opts.train_mount,
        namespace=opts.train_namespace,
    )


def _on_gpu_pool(task, opts: PipelineOptions, gpus: int | None = None):
    """CPU and memory requests, ``gpus`` GPUs (default ``gpu_count``), the GPU pool's node selector and tolerations."""
    from kfp import kubernetes

    task.set_cpu_request(opts.train_cpu).set_memory_request(opts.train_memory)
    if opts.gpu:
        task.set_accelerator_type(opts.accelerator).set_accelerator_limit(gpus or opts.gpu_count)
        for key, value in opts.node_selector.items():
            kubernetes.add_node_selector(task, label_key=key, label_value=value)
        for tol in opts.tolerations:
            kubernetes.add_toleration(task, **tol)
    return task.set_caching_options(False)


def _training(task, opts: PipelineOptions, launch: Launch):
    """A training step: on the GPU pool (torchrun over its GPUs when there are several) or, on several nodes, a
    launcher pod without GPU that mounts the shared claim and runs the step as a PyTorchJob."""
    for key, value in launch.env.items():
        task.set_env_variable(key, value)
    if launch.nodes > 1 or launch.nproc_per_node > 1:
        task.set_env_variable(LAUNCH_ENV, launch.to_json())
    if launch.nodes == 1:
        return _on_gpu_pool(task, opts)
    from kfp import kubernetes

    kubernetes.mount_pvc(task, pvc_name=launch.pvc, mount_path=launch.mount)
    task.set_cpu_request(opts.data_cpu).set_memory_request(opts.data_memory)
    return task.set_caching_options(False)


def with_feast_secret(task, opts: PipelineOptions):
    """Mount ``opts.feast_secret`` as environment variables of ``task`` (kfp-kubernetes ``use_secret_as_env``)."""
    if not opts.feast_secret:
        if opts.feast_secret_env:
            raise ConfigError("feast_secret_env is set without feast_secret: name the Kubernetes secret")
        return task
    if not opts.feast_secret_env:
        raise ConfigError(
            f"feast_secret {opts.feast_secret!r}: map at least one of its keys to a variable (KEY=VAR), e.g. the "
            "${VAR} your feature_store.yaml reads"
        )
    from kfp import kubernetes

    return kubernetes.use_secret_as_env(
        task, secret_name=opts.feast_secret, secret_key_to_env=dict(opts.feast_secret_env)
    )


def import_tables(videos, features) -> dict:
    """The user's tables as ``Dataset`` artifacts (``dsl.importer``): lineage in ML Metadata from the tables to every
    scenario's dataset. ``reimport=False``: a URI already imported is the same artifact again."""
    from kfp import dsl
    from kfp.dsl import Dataset

    out = {}
    for role, uri in (("videos", videos), ("features", features)):
        task = dsl.importer(artifact_uri=uri, artifact_class=Dataset, reimport=False, metadata={"role": role})
        out[role] = task.set_display_name(f"import-{role}").output
    return out


@dataclass
class _Steps:
    """How each kind of step is placed: the image, caching, the data node or the GPU pool, the launch."""

    opts: PipelineOptions
    image: str
    launch: Launch

    def step(self, task, cache: bool = False):
        task.set_container_image(self.image)
        return task.set_caching_options(cache)

    def data_node(self, task, cache: bool = True):
        return self.step(task.set_cpu_request(self.opts.data_cpu).set_memory_request(self.opts.data_memory), cache)

    def training(self, task):
        return _training(self.step(task), self.opts, self.launch)

    def gpu(self, task, gpus: int = 1):
        return _on_gpu_pool(self.step(task), self.opts, gpus)


def _distil(s: _Steps, data, cfg, checked) -> dict:
    """Teacher and baseline, the gain estimate and its decided config, the fold teachers, teacher outputs, distill."""
    from kfp import dsl

    from cpfd.components.distill import distill
    from cpfd.components.estimate_gain import estimate_gain
    from cpfd.components.fold_plan import fold_plan
    from cpfd.components.teacher_outputs import teacher_outputs
    from cpfd.components.train_fold_teacher import train_fold_teacher
    from cpfd.components.train_student import train_student
    from cpfd.components.train_teacher import train_teacher

    teacher = s.training(train_teacher(dataset=data, config=cfg)).after(checked)
    baseline = s.training(train_student(dataset=data, config=cfg)).after(checked)
    # the gain estimate, before any fold teacher; "decided" is the config the distillation steps read
    est = s.gpu(estimate_gain(dataset=data, teacher=teacher.outputs["model"], config=cfg))
    decided = est.outputs["decided"]
    plan = s.step(fold_plan(config=decided), cache=True)
    with dsl.ParallelFor(items=plan.output, parallelism=s.opts.fold_parallelism, name="fold-teachers") as fold:
        # only the loop's own item, pipeline parameters and artifacts in here (see the module docstring)
        folds = s.training(train_fold_teacher(dataset=data, config=decided, fold=fold))
    soft = s.step(
        teacher_outputs(
            dataset=data,
            teacher=teacher.outputs["model"],
            fold_outputs=dsl.Collected(folds.outputs["fold_outputs"]),
            config=decided,
        )
        .set_cpu_request(s.opts.data_cpu)
        .set_memory_request(s.opts.data_memory)
    )
    distilled = s.training(distill(dataset=data, train_logits=soft.outputs["train_logits"], config=decided))
    return {"teacher": teacher, "baseline": baseline, "estimate": est, "decided": decided, "distilled": distilled}


def _gate_and_hand_over(s: _Steps, data, cfg, trained: dict, bentoml_home):
    """The gate, then packaging and the monitoring reference or not_packaged; the scenario's report row."""
    from kfp import dsl

    from cpfd.components.evaluate import evaluate
    from cpfd.components.make_reference import make_reference
    from cpfd.components.not_packaged import not_packaged
    from cpfd.components.package import package
    from cpfd.components.scenario_result import scenario_result

    distilled, baseline = trained["distilled"].outputs["model"], trained["baseline"].outputs["model"]
    gate = s.gpu(  # prediction: one GPU
        evaluate(
            dataset=data,
            teacher=trained["teacher"].outputs["model"],
            baseline=baseline,
            distilled=distilled,
            config=trained["decided"],
            estimate=trained["estimate"].outputs["estimate"],
        )
    )
    with dsl.If(gate.outputs["Output"] == True, name="gate-passed"):  # noqa: E712 (a KFP condition)
        packed = s.step(
            package(
                distilled=distilled,
                baseline=baseline,
                config=cfg,
                gate_reason=gate.outputs["reason"],
                bentoml_home=bentoml_home,
            ).set_env_variable("BENTOML_DO_NOT_TRACK", "True")
        )
        ref = s.data_node(
            make_reference(config=cfg, predictions=gate.outputs["predictions"], packaged=packed.outputs["packaged"]),
            cache=False,
        )
    with dsl.Else(name="gate-failed"):
        skipped = s.step(not_packaged(gate_reason=gate.outputs["reason"]))
    # a value from whichever branch ran (dsl.OneOf cannot be collected directly: this step takes it)
    return s.step(
        scenario_result(summary=gate.outputs["summary"], handover=dsl.OneOf(ref.outputs["Output"], skipped.output))
    )


def build_pipeline(opts: PipelineOptions | None = None):
    """The pipeline function for these options (parallelism and resources are fixed at compile time)."""
    from kfp import dsl
    from kfp.dsl import HTML, Artifact, Markdown

    from cpfd.components.build_dataset import build_dataset
    from cpfd.components.image import project_image
    from cpfd.components.report import report
    from cpfd.components.validate_data import validate_data

    opts = opts or PipelineOptions()
    image = opts.image or project_image()
    s = _Steps(opts, image, train_launch(opts, image))

    class Outputs(NamedTuple):
        markdown: Markdown
        html: HTML
        table: Artifact
        packages: Artifact

    @dsl.pipeline(name=PIPELINE_NAME)
    def cpfd_pipeline(
        videos: str,
        features: str,
        scenarios: list,
        config_yaml: str = "",
        method: str = "",
        pool_weight: float = -1.0,
        pool_ratio: float = -1.0,
        join: str = "feast",
        min_rows: int = 50,
        max_null_increase: float = 0.15,
        bentoml_home: str = "",
        stream_root: str = "",
    ) -> Outputs:
        """CPFD per scenario: dataset and resolved config, data gate, teacher, student, gain estimate, fold teachers,
        teacher outputs, distillation, gate, packaging, monitoring reference.

        Args:
            videos: URI of the videos table (Parquet), imported as a Dataset artifact: video_id, scenario,
                event_timestamp, label, title, frames (resolved next to it).
            features: URI of the folder holding the declared privileged feature sources (Parquet), or of the one source
                file, imported as a Dataset artifact.
            scenarios: Scenario names to run, e.g. ["clickbait", "originality"]; each must be in the config.
            config_yaml: Project config (YAML or JSON) on top of the embedded defaults; empty means the defaults.
            method: pfd or cpfd for every scenario; empty keeps each scenario's distill.method.
            pool_weight: Weight of the unlabelled pool's distillation term (videos with a null label) for every
                scenario; 0 turns the pool off; negative keeps each scenario's distill.pool_weight.
            pool_ratio: Pool videos drawn per labelled video in each epoch; 0: the whole pool every epoch; negative
                keeps distill.pool_ratio.
            join: Point-in-time join backend: feast (the feature repository) or pandas.
            min_rows: Data gate: the fewest rows a scenario's dataset may have.
            max_null_increase: Data gate: allowed rise of a feature's null rate over the reference's.
            bentoml_home: BentoML model store the package step writes to; empty means the pod's default.
            stream_root: Where the training shards go, a folder or URL (gs://, s3://) every training pod reads, one
                sub-folder per scenario; empty keeps them inside the dataset artifact.
        """
        tables = import_tables(videos, features)
        with dsl.ParallelFor(items=scenarios, parallelism=opts.parallelism, name="scenarios") as scenario:
            # the only step that reads config_yaml, method and the pool settings: it writes the resolved config
            ds = s.data_node(
                build_dataset(
                    videos=tables["videos"],
                    features=tables["features"],
                    scenario=scenario,
                    config_yaml=config_yaml,
                    method=method,
                    pool_weight=pool_weight,
                    pool_ratio=pool_ratio,
                    join=join,
                    stream_root=stream_root,
                )
            )
            with_feast_secret(ds, opts)  # the team's Feast credentials (feature_store.repo), for this step alone
            data, cfg = ds.outputs["dataset"], ds.outputs["config"]
            checked = s.data_node(
                validate_data(dataset=data, config=cfg, min_rows=min_rows, max_null_increase=max_null_increase)
            )
            row = _gate_and_hand_over(s, data, cfg, _distil(s, data, cfg, checked), bentoml_home)
        fan_in = s.step(report(summaries=dsl.Collected(row.output)))
        return Outputs(
            markdown=fan_in.outputs["markdown"],
            html=fan_in.outputs["html"],
            table=fan_in.outputs["table"],
            packages=fan_in.outputs["packages"],
        )

    return cpfd_pipeline


def compile_pipeline(out: str | Path, opts: PipelineOptions | None = None, defaults: dict | None = None) -> Path:
    """Write the IR YAML (the Kubeflow dashboard's Upload pipeline takes it); ``defaults`` become
    the parameters' default values (e.g. a scenario list and config to start runs from)."""
    from kfp import compiler

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(opts), str(out), pipeline_parameters=defaults)
    return out
