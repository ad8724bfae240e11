"""monitor: the recurring monitoring job (the offline reference it reads comes from make_reference)."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Output

from cpfd.components.image import project_image


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
    """Per scenario and arm: confidence drift, F1, A/B verdict. Fails the task on an alert if asked.

    Outputs the dashboard shows: ``report`` (Evidently's report of the window: every scenario's values, its checks
    as Evidently tests), ``metrics`` (the totals and every value as ``<scenario>.<arm>.<quantity>`` /
    ``<scenario>.<quantity>``); ``report_dir`` holds the per-scenario Evidently reports, the index page,
    summary.json and the Evidently workspace (``evidently.workspace`` of the config, else inside it).
    """
    from collections import namedtuple

    from cpfd.monitoring.analysis import format_summary, monitor_step
    from cpfd.monitoring.series import flat_values

    summary = monitor_step(
        log_url, reference.path, since, until, window_hours, config_yaml, report_dir.path, report.path
    )
    print(format_summary(summary))
    for name, value in flat_values(summary).items():
        metrics.log_metric(name, value)
    if fail_on_alert and summary["status"] == "fail":
        raise RuntimeError(f"monitoring alert: {', '.join(summary['failed_checks'])}")
    return namedtuple("MonitorOutputs", ["status", "failed_checks"])(  # type: ignore[call-arg]  # KFP outputs
        summary["status"], ",".join(summary["failed_checks"])
    )
