"""report: fan-in over scenarios; the quality table (Markdown + HTML with a per-scenario F1 chart) and the packages."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Markdown, Metrics, Output

from cpfd.components.image import project_image


@dsl.component(base_image=project_image(), install_kfp_package=False)
def report(
    summaries: list[str],
    markdown: Output[Markdown],
    html: Output[HTML],
    metrics: Output[Metrics],
    table: Output[Artifact],
    packages: Output[Artifact],
):
    """``summaries``: the scenario_result rows (the gate's JSON summary and its ``package``), collected from every
    scenario; ``table``: them as one JSON list; ``packages``: the packaged scenarios' handovers (tags per arm, model
    store, reference folder) as one JSON list, what serving and monitoring read."""
    from cpfd.components import timing

    timing.start("report")
    import json

    from cpfd.components.reports import chart_png, markdown_to_html, report_tables, with_file_name

    timing.mark("imports")
    rows = sorted((json.loads(s) for s in summaries), key=lambda s: s["scenario"])
    result, text = report_tables(rows)
    title = "CPFD pipeline: test macro-F1 per scenario"
    with open(table.path, "w") as f:
        json.dump(rows, f, indent=2)
    handovers = [r["package"] for r in rows if r.get("package")]
    with open(packages.path, "w") as f:
        json.dump(handovers, f, indent=2)
    packages.metadata.update({"scenarios": [p["scenario"] for p in handovers], "count": len(handovers)})
    with_file_name(markdown, "report.md")  # report/report.md and report/report.html, not report/markdown
    with_file_name(html, "report.html")
    with open(markdown.path, "w") as f:
        f.write(f"# {title}\n\n{text}")
    with open(html.path, "w") as f:
        f.write(markdown_to_html(text, title, chart_png(result)))
    for m, v in result["average"]["f1"].items():
        metrics.log_metric(f"avg_f1_{m}", v["mean"])
    metrics.log_metric("scenarios_packaged", sum(r["gate"]["passed"] for r in rows))
    metrics.log_metric("scenarios", len(rows))
    timing.mark("write")  # matplotlib is imported inside the chart: its import counts here
    print(text)
