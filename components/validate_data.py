"""validate_data: the Great Expectations data gate; a failed expectation fails the run before any training."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Metrics, Output

from cpfd.components.image import project_image


@dsl.component(base_image=project_image(), install_kfp_package=False)
def validate_data(
    dataset: Input[Dataset],
    config: Input[Artifact],
    min_rows: int,
    max_null_increase: float,
    metrics: Output[Metrics],
    report: Output[Markdown],
    data_docs: Output[Artifact],
):
    """Run the scenario's suite over all splits; raise DataContractError naming every failed expectation."""
    from cpfd.components import timing

    timing.start("validate_data")
    from cpfd.components.common import read_scenario_config
    from cpfd.components.validation import validate_dataset
    from cpfd.errors import DataContractError

    project, scen = read_scenario_config(config)
    scenario = scen.name
    timing.mark("imports", scenario=scenario)
    summary = validate_dataset(
        dataset.path, project, out_dir=data_docs.path, min_rows=min_rows, max_null_increase=max_null_increase
    )
    failed = summary["failed"]
    timing.mark("validate")  # Great Expectations is imported inside: its import counts here
    metrics.log_metric("expectations", summary["expectations"])
    metrics.log_metric("failed_expectations", len(failed))
    metrics.log_metric("rows", summary["rows"])
    data_docs.metadata.update({"scenario": scenario, "success": summary["success"], "index": summary["data_docs"]})
    with open(report.path, "w") as f:
        f.write(
            f"# Data gate: {scenario}\n\n{'passed' if summary['success'] else 'FAILED'}: "
            f"{summary['expectations']} expectations over {summary['rows']} rows.\n\n"
            + "".join(f"- {line}\n" for line in failed)
        )
    timing.mark("write")
    if not summary["success"]:
        raise DataContractError(f"data gate failed for scenario {scenario!r} ({dataset.path}): " + "; ".join(failed))
    print(f"data gate {scenario}: passed {summary['expectations']} expectations over {summary['rows']} rows")
