"""The CPFD pipeline: a ParallelFor over scenarios, the per-scenario DAG, a fan-in report.

Per scenario: build_dataset -> validate_data -> train_teacher & train_student & fold_plan ->
a nested ParallelFor of train_fold_teacher (one step per cross-fitting fold, distill.folds of the
scenario's config) -> teacher_outputs (fan-in with ``dsl.Collected``: the out-of-fold soft targets,
or the full teacher's in-sample ones, temperature-scaled on validation) -> distill -> evaluate
(the gate) -> package (only when the gate passed). Then ``report`` collects every scenario's
summary. Deployment choices (image, parallelism, GPU requests, node selectors, tolerations) are
compile-time ``PipelineOptions``; run-time parameters are JSON-able.

The fold count is read at run time by fold_plan from the config (the one place it lives), and its
items carry the scenario name: kfp.local 2.17 gives the inner loop's item to every outer loop item
and task-output parameter referenced inside a nested loop, so the fold loop's body uses only its
own item's fields, pipeline parameters and artifacts.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

PIPELINE_NAME = "cpfd-pipeline"


@dataclass
class PipelineOptions:
    """How the compiled pipeline asks for resources; ignored (with a warning) by the local runner."""

    image: str = ""  # empty: components.project_image()
    parallelism: int = 2  # scenarios at once; 0 = unlimited
    fold_parallelism: int = 0  # fold teachers at once within a scenario; 0 = unlimited (kfp.local: at most 2)
    gpu: bool = True
    accelerator: str = "nvidia.com/gpu"
    gpu_count: int = 1
    train_cpu: str = "4"
    train_memory: str = "16G"
    data_cpu: str = "2"
    data_memory: str = "8G"
    node_selector: dict[str, str] = field(default_factory=lambda: {"nvidia.com/gpu.present": "true"})
    tolerations: list[dict] = field(default_factory=lambda: [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}])


def _on_gpu_pool(task, opts: PipelineOptions):
    from kfp import kubernetes

    task.set_cpu_request(opts.train_cpu).set_memory_request(opts.train_memory)
    if opts.gpu:
        task.set_accelerator_type(opts.accelerator).set_accelerator_limit(opts.gpu_count)
        for key, value in opts.node_selector.items():
            kubernetes.add_node_selector(task, label_key=key, label_value=value)
        for tol in opts.tolerations:
            kubernetes.add_toleration(task, **tol)
    return task.set_caching_options(False)


def build_pipeline(opts: PipelineOptions | None = None):
    """The pipeline function for these options (parallelism and resources are fixed at compile time)."""
    from kfp import dsl
    from kfp.dsl import HTML, Artifact, Markdown

    from components.image import project_image
    from components.build_dataset import build_dataset
    from components.distill import distill
    from components.evaluate import evaluate
    from components.fold_plan import fold_plan
    from components.package import package
    from components.report import report
    from components.teacher_outputs import teacher_outputs
    from components.train_fold_teacher import train_fold_teacher
    from components.train_student import train_student
    from components.train_teacher import train_teacher
    from components.validate_data import validate_data

    opts = opts or PipelineOptions()
    image = opts.image or project_image()

    def step(task, cache: bool = False):
        task.set_container_image(image)
        return task.set_caching_options(cache)

    def on_data_node(task):
        return step(task.set_cpu_request(opts.data_cpu).set_memory_request(opts.data_memory), cache=True)

    class Outputs(NamedTuple):
        markdown: Markdown
        html: HTML
        table: Artifact

    @dsl.pipeline(name=PIPELINE_NAME, description="CPFD per scenario: dataset, data gate, teacher, student, fold teachers, "
                                                  "teacher outputs, distillation, gate, packaging.")
    def cpfd_pipeline(videos: str, features: str, scenarios: list, config_yaml: str, method: str = "cpfd",
                      join: str = "feast", min_rows: int = 50, max_null_increase: float = 0.15,
                      bentoml_home: str = "") -> Outputs:
        with dsl.ParallelFor(items=scenarios, parallelism=opts.parallelism, name="scenarios") as scenario:
            ds = on_data_node(build_dataset(videos=videos, features=features, scenario=scenario, config_yaml=config_yaml,
                                            join=join))
            data = ds.outputs["dataset"]
            checked = on_data_node(validate_data(dataset=data, scenario=scenario, config_yaml=config_yaml,
                                                 min_rows=min_rows, max_null_increase=max_null_increase))
            teacher = _on_gpu_pool(step(train_teacher(dataset=data, scenario=scenario, config_yaml=config_yaml)), opts)
            student = _on_gpu_pool(step(train_student(dataset=data, scenario=scenario, config_yaml=config_yaml)), opts)
            teacher.after(checked)
            student.after(checked)
            plan = step(fold_plan(scenario=scenario, config_yaml=config_yaml), cache=True).after(checked)
            with dsl.ParallelFor(items=plan.output, parallelism=opts.fold_parallelism, name="fold-teachers") as item:
                # only the item's fields, pipeline parameters and artifacts in here (see the module docstring)
                folds = _on_gpu_pool(step(train_fold_teacher(dataset=data, scenario=item.scenario, config_yaml=config_yaml,
                                                             fold=item.fold)), opts)
            soft = step(teacher_outputs(dataset=data, teacher=teacher.outputs["model"],
                                        fold_outputs=dsl.Collected(folds.outputs["fold_outputs"]), scenario=scenario,
                                        config_yaml=config_yaml).set_cpu_request(opts.data_cpu).set_memory_request(opts.data_memory))
            distilled = _on_gpu_pool(step(distill(dataset=data, train_logits=soft.outputs["train_logits"],
                                                  scenario=scenario, config_yaml=config_yaml, method=method)), opts)
            gate = _on_gpu_pool(step(evaluate(dataset=data, teacher=teacher.outputs["model"], student=student.outputs["model"],
                                              distilled=distilled.outputs["model"], scenario=scenario,
                                              config_yaml=config_yaml)), opts)
            with dsl.If(gate.outputs["Output"] == True, name="gate-passed"):  # noqa: E712 (a KFP condition)
                step(package(distilled=distilled.outputs["model"], baseline=student.outputs["model"], scenario=scenario,
                             gate_reason=gate.outputs["reason"], bentoml_home=bentoml_home).set_env_variable("BENTOML_DO_NOT_TRACK", "True"))
        fan_in = step(report(summaries=dsl.Collected(gate.outputs["summary"])))
        return Outputs(markdown=fan_in.outputs["markdown"], html=fan_in.outputs["html"], table=fan_in.outputs["table"])

    return cpfd_pipeline


def compile_pipeline(out: str | Path, opts: PipelineOptions | None = None, defaults: dict | None = None) -> Path:
    """Write the IR YAML (the Kubeflow dashboard's Upload pipeline takes it); ``defaults`` become
    the parameters' default values (e.g. a scenario list and config to start runs from)."""
    from kfp import compiler

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(opts), str(out), pipeline_parameters=defaults)
    return out
