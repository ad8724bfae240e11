"""evaluate: the gate. Test-split F1 of teacher, baseline and distilled student; decides packaging. Keeps both A/B
arms' test-split predictions for the monitoring reference."""

from kfp import dsl
from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output, OutputPath

from cpfd.components.image import project_image


@dsl.component(base_image=project_image(), install_kfp_package=False)
def evaluate(
    dataset: Input[Dataset],
    teacher: Input[Model],
    baseline: Input[Model],
    distilled: Input[Model],
    config: Input[Artifact],
    estimate: Input[Artifact],
    metrics: Output[Metrics],
    classification: Output[ClassificationMetrics],
    report: Output[Markdown],
    predictions: Output[Dataset],
    reason: OutputPath(str),  # type: ignore[valid-type]  # KFP annotation syntax
    summary: OutputPath(str),  # type: ignore[valid-type]  # KFP annotation syntax
) -> bool:
    """True (package it) when the teacher beat the baseline on validation and the distilled student beats the baseline
    on test by the scenario's margin, near the teacher (``cpfd.gate``); ``reason`` says why, ``summary`` is the report's
    row (with the ``estimate``), ``predictions`` both arms' test predictions in the monitoring reference format. The
    decision is the single return value (``Output``): kfp.local resolves conditions on that name."""
    from cpfd.components import timing

    timing.start("evaluate")
    from pathlib import Path

    from cpfd.components.common import gate_markdown, log_classification, log_gate_metrics, read_scenario_config
    from cpfd.components.reports import dataset_sizes, summary_json
    from cpfd.conventions import CONTROL_ARM, TREATMENT_ARM, model_metadata
    from cpfd.evaluate import evaluate_saved_model, gap_closed_or_why, paired_f1_intervals
    from cpfd.gate import gate_decision
    from cpfd.monitoring.reference import write_reference

    project, scen = read_scenario_config(config)
    scenario, gate = scen.name, scen.gate
    timing.mark("imports", scenario=scenario)
    models = {"teacher": teacher, "baseline": baseline, "distilled": distilled}
    results = {name: evaluate_saved_model(m.path, dataset.path) for name, m in models.items()}
    f1 = {name: r[0]["macro_f1"] for name, r in results.items()}
    val_f1 = {name: float(model_metadata(m.path)["best_val_macro_f1"]) for name, m in models.items()}
    distilled_info = model_metadata(distilled.path)
    timing.mark("predict")  # the towers' import (transformers, with the first model) counts here
    calibration = distilled_info.get("teacher_calibration") or {}
    passed, why = gate_decision(f1, gate, val_f1)
    # 95 % paired bootstrap intervals on the test split: each model's F1 (the report's error bars) and teacher -
    # baseline; gap closed is None unless the teacher is clearly better (cpfd.evaluate)
    test_labels, test_preds = results["distilled"][2].labels.numpy(), {n: r[1].argmax(1) for n, r in results.items()}
    intervals = paired_f1_intervals(test_labels, test_preds, results["distilled"][1].shape[1], seed=project.train.seed)
    gap, _ = gap_closed_or_why(f1, val_f1, teacher_interval=intervals["teacher_minus_baseline"])
    method = project.distill.method
    d_metrics, d_probs, d_split = results["distilled"]
    log_classification(classification, d_metrics, d_probs, d_split.labels.numpy())
    log_gate_metrics(metrics, f1, val_f1, gap, d_metrics["ece"], calibration, passed)
    with open(report.path, "w") as f:
        f.write(gate_markdown(scenario, f1, val_f1, calibration, distilled_info.get("teacher_outputs", "?"), why))
    with open(reason, "w") as f:
        f.write(why)
    with open(summary, "w") as f:
        f.write(
            summary_json(
                scenario,
                method,
                project.train.seed,
                f1,
                gap,
                passed,
                why,
                gate,
                val_f1,
                calibration,
                distilled_info.get("teacher_outputs"),
                (distilled_info.get("title_stats") or {}).get("test"),
                dict(estimate.metadata),
                dataset_sizes(dataset.path, distilled_info),
                intervals=intervals,
            )
        )
    for arm, name in ((TREATMENT_ARM, "distilled"), (CONTROL_ARM, "baseline")):
        _, probs, split = results[name]
        path = Path(predictions.path) / f"{scenario}-{arm}.parquet"
        write_reference(path, scenario, probs, split.labels.numpy(), split.video_ids.numpy(), arm)
    predictions.metadata.update({"scenario": scenario, "split": "test", "arms": [TREATMENT_ARM, CONTROL_ARM]})
    timing.mark("write")
    print(f"gate {scenario}: {why}")
    return passed
