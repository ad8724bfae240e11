"""monitor: the recurring monitoring job (the offline reference it reads comes from make_reference)."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Output

from components.image import project_image


@dsl.component(base_image=project_image(), install_kfp_package=False)
def monitor(
    log_url: str,
    reference: Input[Dataset],
    since: str,
    until: str,
    window_hours: float,
    config_yaml: str,
    fail_on_alert: bool,
    report: Output[HTML],
    report_dir: Output[Artifact],
    metrics: Output[Metrics],
) -> NamedTuple("MonitorOutputs", [("status", str), ("failed_checks", str)]):  # type: ignore[valid-type]  # KFP syntax
    """Per scenario and arm: confidence drift, F1, A/B verdict. Fails the task on an alert if asked."""
    from collections import namedtuple

    from monitoring.analysis import format_summary, monitor_step

    summary = monitor_step(
        log_url, reference.path, since, until, window_hours, config_yaml, report_dir.path, report.path
    )
    print(format_summary(summary))
    metrics.log_metric("predictions", summary["n_predictions"])
    metrics.log_metric("labelled", summary["n_labelled"])
    metrics.log_metric("failed_checks", len(summary["failed_checks"]))
    if fail_on_alert and summary["status"] == "fail":
        raise RuntimeError(f"monitoring alert: {', '.join(summary['failed_checks'])}")
    return namedtuple("MonitorOutputs", ["status", "failed_checks"])(  # type: ignore[call-arg]  # KFP outputs
        summary["status"], ",".join(summary["failed_checks"])
    )
