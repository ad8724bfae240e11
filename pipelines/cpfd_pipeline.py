"""The CPFD pipeline: a ParallelFor over scenarios, the per-scenario DAG, a fan-in report.

Per scenario: build_dataset -> validate_data -> train_teacher & train_student -> distill ->
evaluate (the gate) -> package (only when the gate passed). Then ``report`` collects every
scenario's summary. Deployment choices (image, parallelism, GPU requests, node selectors,
tolerations) are compile-time ``PipelineOptions``; run-time parameters are JSON-able.
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
    from components.package import package
    from components.report import report
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

    @dsl.pipeline(name=PIPELINE_NAME, description="CPFD per scenario: dataset, data gate, teacher, student, distillation, gate, packaging.")
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
            distilled = _on_gpu_pool(step(distill(dataset=data, train_logits=teacher.outputs["train_logits"],
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
