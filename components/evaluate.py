"""evaluate: the gate. Test-split F1 of teacher, baseline and distilled student; decides packaging."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output

from components.image import project_image


@dsl.component(base_image=project_image(), install_kfp_package=False)
def evaluate(dataset: Input[Dataset], teacher: Input[Model], student: Input[Model], distilled: Input[Model],
             scenario: str, config_yaml: str, metrics: Output[Metrics], classification: Output[ClassificationMetrics],
             report: Output[Markdown]) -> NamedTuple("GateOutputs", [("passed", bool), ("reason", str), ("summary", str)]):
    """Passed when the distilled student beats the baseline by the scenario's margin and stays near the teacher."""
    from collections import namedtuple

    from components.common import gate_decision, log_classification, evaluate_saved_model, project_from_yaml, summary_json
    from cpfd.evaluate import gap_closed

    project = project_from_yaml(config_yaml)
    gate = project.scenario(scenario).gate
    results = {name: evaluate_saved_model(m.path, dataset.path)
               for name, m in (("teacher", teacher), ("student", student), ("distilled", distilled))}
    f1 = {name: r[0]["macro_f1"] for name, r in results.items()}
    passed, reason = gate_decision(f1, gate)
    gap = gap_closed(f1["distilled"], f1["student"], f1["teacher"])
    method = distilled.metadata.get("method", "cpfd")
    d_metrics, d_probs, labels = results["distilled"]
    log_classification(classification, d_metrics, d_probs, labels)
    for name, value in f1.items():
        metrics.log_metric(f"f1_{name}", value)
    metrics.log_metric("gain_over_baseline", f1["distilled"] - f1["student"])
    if gap is not None:  # None when the teacher is not better than the baseline
        metrics.log_metric("gap_closed", gap)
    metrics.log_metric("ece_distilled", d_metrics["ece"])
    metrics.log_metric("gate_passed", int(passed))
    with open(report.path, "w") as f:
        f.write(f"# Gate: {scenario}\n\n| model | test macro-F1 |\n|---|---|\n"
                + "".join(f"| {k} | {v:.4f} |\n" for k, v in f1.items())
                + f"\n{reason}\n")
    print(f"gate {scenario}: {reason}")
    seed = project.train_for(scenario).seed
    Outputs = namedtuple("GateOutputs", ["passed", "reason", "summary"])
    return Outputs(passed, reason, summary_json(scenario, method, seed, f1, gap, passed, reason, gate))
