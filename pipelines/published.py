"""The compiled pipelines the repository publishes (pipelines/compiled/): the IR YAML of the training pipeline and
of the monitoring pipeline for the default options and the default project image, ready to upload in the Kubeflow
dashboard. ``make compile`` (``cpfd pipeline publish``) rewrites them; a test checks that they match a fresh
compile, so a change to a step or to the DAG comes with its published YAML."""

from __future__ import annotations

from pathlib import Path

COMPILED_DIR = Path(__file__).resolve().parent / "compiled"
TRAINING_YAML = "cpfd_pipeline.yaml"
MONITORING_YAML = "cpfd_monitoring.yaml"
REFRESH_COMMAND = "make compile"  # = cpfd pipeline publish


def publish(out_dir: str | Path = COMPILED_DIR) -> list[Path]:
    """Compile both pipelines with their default options into ``out_dir``; returns the files written."""
    from cpfd.components.image import DEFAULT_IMAGE
    from cpfd.pipelines.cpfd_pipeline import PipelineOptions, compile_pipeline
    from cpfd.pipelines.monitoring_pipeline import compile_monitoring_pipeline

    out = Path(out_dir)
    # the image named explicitly: $CPFD_IMAGE (a developer's registry) must not leak into the published files
    return [
        compile_pipeline(out / TRAINING_YAML, PipelineOptions(image=DEFAULT_IMAGE)),
        compile_monitoring_pipeline(out / MONITORING_YAML, image=DEFAULT_IMAGE),
    ]
