"""validate_data: the data gate; a failed expectation fails the run before any training."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Metrics, Output

from components.image import project_image


@dsl.component(base_image=project_image(), install_kfp_package=False)
def validate_data(dataset: Input[Dataset], scenario: str, config_yaml: str, max_dense_null_rate: float,
                  metrics: Output[Metrics], report: Output[Markdown]):
    """Check the built splits; raise (and so stop the scenario's branch) when they break the contract."""
    from components.common import basic_dataset_checks, project_from_yaml

    scen = project_from_yaml(config_yaml).scenario(scenario)
    stats = basic_dataset_checks(dataset.path, scen.label_names, max_dense_null_rate)
    for split, n in stats["rows"].items():
        metrics.log_metric(f"rows_{split}", n)
    metrics.log_metric("dense_null_rate", stats["dense_null_rate"])
    with open(report.path, "w") as f:
        f.write(f"# Data gate: {scenario}\n\npassed: rows {stats['rows']}, "
                f"privileged features missing for {stats['dense_null_rate']:.1%} of videos "
                f"(limit {max_dense_null_rate:.0%}).\n")
    print(f"data gate {scenario}: passed {stats}")
