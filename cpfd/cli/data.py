"""`cpfd generate`, `cpfd dataset ...` and `cpfd features ...`: synthetic data, training sets, the Feast repo."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from cpfd.cli.common import ConfigOpt, SetOpt, load_project
from cpfd.errors import CpfdError

dataset_app = typer.Typer(
    help="Build training sets from the videos table and the privileged features.", no_args_is_help=True
)
features_app = typer.Typer(help="The Feast feature repository of the privileged dense features.", no_args_is_help=True)


def generate(
    out: Path = typer.Option(Path("data/demo"), help="output folder"),
    videos: int = typer.Option(3000, min=30, help="videos per scenario"),
    seed: int = typer.Option(0),
    frames: int = typer.Option(4, min=1),
    image_size: int = typer.Option(16, min=8),
    scenario: list[str] = typer.Option(
        [],
        help="only these scenarios (repeatable); the benchmarks' title_interaction, engagement_only and "
        "mixed_reliability too",
    ),
    pool_multiple: int = typer.Option(
        0, min=0, max=100, help="also this many times --videos unlabelled videos per scenario (null label: the pool)"
    ),
):
    """Write the synthetic default data: videos.parquet, frames/, features.parquet, oracle.parquet, scenarios.yaml."""
    from cpfd.benchmarks.synthetic import generate as gen

    paths = gen(out, videos, seed, frames, image_size, scenario or None, pool_multiple)
    for k, p in paths.items():
        typer.echo(f"{k:9s} {p}")


@dataset_app.command("build")
def dataset_build(
    videos: Path = typer.Option(..., help="videos table (Parquet)"),
    features: Path | None = typer.Option(
        None,
        help="folder holding the declared feature sources (or the one source file the scenario reads); not used "
        "with feature_store.repo (the team's own Feast)",
    ),
    scenario: str = typer.Option(...),
    out: Path = typer.Option(..., help="output folder for train/val/test.parquet + manifest.json"),
    backend: str = typer.Option("auto", help="feast | pandas | auto (= feast when it is installed, else pandas)"),
    store: Path | None = typer.Option(None, help="Feast store folder (default: OUT/feature_store)"),
    stream_root: str | None = typer.Option(
        None, help="where the training shards go: a folder or URL (s3://, gs://); default OUT/stream"
    ),
    config: Path | None = ConfigOpt,
    set_: list[str] = SetOpt,
):
    """Point-in-time join of the scenario's feature service (Feast get_historical_features or pandas merge_asof,
    the same columns and freshness windows) and time splits."""
    import importlib.util

    from cpfd.data.build import build_scenario_dataset

    project = load_project(config, set_)
    if project.feature_store.by_reference:  # the team's own Feast: their registry, offline store and service
        if backend == "pandas":
            raise CpfdError("--backend pandas reads the declared Parquet sources; feature_store.repo needs Feast")
        from cpfd.featurestore.reference import build_dataset_reference

        manifest = build_dataset_reference(videos, scenario, project, out, stream_root)
        typer.echo(json.dumps({"backend": manifest["join_backend"], **manifest["rows"]}))
        return
    if features is None:
        raise CpfdError(
            "--features is required: the folder of the declared feature sources (or set feature_store.repo)"
        )
    if backend == "auto":
        backend = "feast" if importlib.util.find_spec("feast") else "pandas"
    if backend == "feast":
        from cpfd.featurestore import build_dataset_feast

        manifest = build_dataset_feast(videos, features, scenario, project, out, store, stream_root=stream_root)
    elif backend == "pandas":
        manifest = build_scenario_dataset(videos, features, scenario, project, out, stream_root)
    else:
        raise CpfdError(f"--backend must be feast, pandas or auto, got {backend!r}")
    typer.echo(json.dumps({"backend": manifest["join_backend"], **manifest["rows"]}))


@dataset_app.command("validate")
def dataset_validate(
    dataset: Path = typer.Option(..., help="built dataset folder (train/val/test.parquet + manifest.json)"),
    reference: Path | None = typer.Option(
        None, help="reference dataset for null rates and value ranges (default: its train split)"
    ),
    out: Path | None = typer.Option(None, help="where result.json and the Data Docs go (default: DATASET/validation)"),
    min_rows: int = typer.Option(50, min=0, help="minimum rows over all splits"),
    max_null_increase: float = typer.Option(
        0.15, min=0, max=1, help="allowed null rate above the reference's, per dense feature"
    ),
    config: Path | None = ConfigOpt,
    set_: list[str] = SetOpt,
):
    """Great Expectations gate; exits 1 naming each failed expectation."""
    from cpfd.components.validation import validate_dataset

    summary = validate_dataset(dataset, load_project(config, set_), reference, out, min_rows, max_null_increase)
    for line in summary["failed"]:
        typer.echo(f"FAILED {line}")
    verdict = "passed" if summary["success"] else f"FAILED ({len(summary['failed'])} of {summary['expectations']})"
    typer.echo(f"data gate {verdict}: {summary['rows']} rows; {summary['result_json']}; {summary['data_docs']}")
    if not summary["success"]:
        raise typer.Exit(1)


@features_app.command("apply")
def features_apply(
    data: Path = typer.Option(..., help="folder holding the declared feature sources (feature_store.sources)"),
    store: Path | None = typer.Option(
        None, help="Feast store folder for feature_store.yaml + registry (default: DATA/feature_store)"
    ),
    config: Path | None = ConfigOpt,
    set_: list[str] = SetOpt,
):
    """Check the config's feature declarations against the Parquet sources in DATA (every declared column,
    its type), then `feast apply` of feature_repo/ built from them."""
    from cpfd.featurestore import apply_repo

    if not data.is_dir():
        raise CpfdError(f"--data {data}: not a folder (it should hold the declared feature sources)")
    fs = apply_repo(data, store or data / "feature_store", load_project(config, set_).feature_store)
    for view in fs.list_feature_views():
        typer.echo(f"feature view {view.name}: {len(view.features)} features, ttl {view.ttl}, online={view.online}")
    for service in fs.list_feature_services():
        typer.echo(f"feature service {service.name}: {', '.join(p.name for p in service.feature_view_projections)}")
    typer.echo(f"registry: {fs.config.registry.path}")


@features_app.command("check")
def features_check(
    scenario: str = typer.Option(..., help="the scenario whose feature_service is checked"),
    repo: Path | None = typer.Option(
        None, help="the team's Feast repo folder or feature_store.yaml (default: the config's feature_store.repo)"
    ),
    videos: Path | None = typer.Option(
        None, help="videos table (Parquet): also check that the views cover its label times"
    ),
    service: str | None = typer.Option(None, help="check this feature service instead of the scenario's"),
    sample: int = typer.Option(500, min=1, help="label times sampled for the coverage check"),
    config: Path | None = ConfigOpt,
    set_: list[str] = SetOpt,
):
    """Before a pipeline runs on your own Feast: the service exists in your registry, its features are numeric and
    joined on feature_store.join_key, the student reads none of them, its views cover the label times. Exit code 2
    with a line naming the service, view or feature otherwise."""
    import time

    from cpfd.featurestore.reference import check_service

    t0 = time.perf_counter()
    overrides = [*set_, *([f"feature_store.repo={repo}"] if repo else [])]
    project = load_project(config, overrides)
    if not project.feature_store.by_reference:
        raise CpfdError("no Feast deployment to check: pass --repo or set feature_store.repo in the config")
    report = check_service(project, scenario, videos, service, sample)
    typer.echo(
        f"feature service {report['feature_service']}: {len(report['feature_refs'])} numeric features in "
        f"{len(report['views'])} views (project {report['project']}, registry {report['registry']}, offline store "
        f"{report['offline_store'].get('type')})"
    )
    cover = (report["coverage"] or {}).get("views", {})
    for view, info in report["views"].items():
        ttl = "no ttl" if info["ttl_s"] is None else f"ttl {info['ttl_s'] / 86400:g} d"
        line = f"  view {view}: {', '.join(info['features'])}; {ttl}"
        if view in cover:
            share, newest = cover[view]["all"], cover[view]["newest_tenth"]
            line += f"; covers {share:.0%} of the label times (newest tenth: {newest:.0%})"
        typer.echo(line)
    if report["coverage"] is None:
        typer.echo("  label-time coverage not checked (pass --videos)")
    else:
        typer.echo(f"  coverage on {report['coverage']['label_times']} label times spread over the scenario's range")
    typer.echo(f"student of {scenario} reads {', '.join(report['student_reads'])}: no feature of the service")
    typer.echo(f"ok in {time.perf_counter() - t0:.1f} s")
