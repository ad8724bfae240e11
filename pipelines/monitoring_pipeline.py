"""The monitoring pipeline, for a recurring run: import the offline reference, run the job.

Schedule it (a recurring run in the Kubeflow dashboard, or ``cpfd pipeline schedule-monitoring``) with ``since``
empty: each run covers the last ``window_hours``.
"""

from pathlib import Path

from cpfd.env import ENV_DEFAULTS

PIPELINE_NAME = "cpfd-monitoring"


def build_monitoring_pipeline(image: str = ""):
    from kfp import dsl
    from kfp.dsl import HTML, Dataset

    from cpfd.components.image import project_image
    from cpfd.components.monitor import monitor

    @dsl.pipeline(
        name=PIPELINE_NAME, description="Per-scenario confidence drift, F1 and A/B verdicts of the served students."
    )
    def monitoring_pipeline(
        log_url: str,
        reference_uri: str,
        since: str = "",
        until: str = "",
        window_hours: float = 24.0,
        config_yaml: str = "",
        fail_on_alert: bool = True,
    ) -> HTML:
        ref = dsl.importer(artifact_uri=reference_uri, artifact_class=Dataset, reimport=True)
        job = monitor(
            log_url=log_url,
            reference=ref.output,
            since=since,
            until=until,
            window_hours=window_hours,
            config_yaml=config_yaml,
            fail_on_alert=fail_on_alert,
        )
        job.set_container_image(image or project_image()).set_caching_options(False)
        for name, value in ENV_DEFAULTS.items():
            job.set_env_variable(name, value)
        return job.outputs["report"]

    return monitoring_pipeline


def compile_monitoring_pipeline(out: str | Path, image: str = "") -> Path:
    """Write the IR YAML (upload it in the Kubeflow dashboard)."""
    from kfp import compiler

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_monitoring_pipeline(image), str(out))
    return out
