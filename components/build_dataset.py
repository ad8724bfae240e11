"""build_dataset: the scenario's training set (point-in-time join of the privileged features, time splits) and
its resolved config, the one every later step of the scenario reads."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from cpfd.components.image import project_image


@dsl.component(base_image=project_image(), install_kfp_package=False)
def build_dataset(
    videos: Input[Dataset],
    features: Input[Dataset],
    scenario: str,
    config_yaml: str,
    method: str,
    pool_weight: float,
    pool_ratio: float,
    join: str,
    stream_root: str,
    dataset: Output[Dataset],
    config: Output[Artifact],
):
    """``videos``: the videos table (Parquet; the frames it references are resolved next to it); ``features``: the
    folder of the declared privileged feature sources, or the one source file. Both come from the pipeline's
    importers (``Dataset`` artifacts, so ML Metadata records which tables a dataset was built from).

    ``join``: "feast" (get_historical_features with the scenario's feature service; the repo is
    $CPFD_FEATURE_REPO or the project's feature_repo/) or "pandas" (merge_asof, the core path). ``stream_root``:
    where the training shards go (``<stream_root>/<scenario>``); empty: inside ``dataset``.

    ``config``: the scenario's effective config, resolved here once (project sections, the scenario's overrides,
    then the run's ``method`` when not empty and its ``pool_weight`` / ``pool_ratio`` when not negative), a JSON
    ProjectConfig of this one scenario; later steps take it
    instead of ``config_yaml`` and apply nothing on top."""
    from cpfd.components import timing

    timing.start("build_dataset")
    import tempfile

    from cpfd.components.common import project_from_yaml, resolve_scenario_config, write_scenario_config
    from cpfd.errors import ConfigError

    project = project_from_yaml(config_yaml)
    videos_path, features_path = videos.path, features.path
    shards = f"{stream_root.rstrip('/')}/{scenario}" if stream_root else None
    resolved = resolve_scenario_config(
        project, scenario, method, pool_weight, pool_ratio
    )  # a bad method fails before the join
    timing.mark("imports", scenario=scenario)
    # the join checks the whole videos table against every configured scenario (the data contract),
    # so it takes the project
    if join == "feast":
        from cpfd.featurestore import build_dataset_feast

        timing.mark("imports")
        with tempfile.TemporaryDirectory() as store:  # this step's own registry: parallel steps never share one
            manifest = build_dataset_feast(
                videos_path, features_path, scenario, project, dataset.path, store_dir=store, stream_root=shards
            )
    elif join == "pandas":
        from cpfd.data.build import build_scenario_dataset

        if project.feature_store.by_reference:
            raise ConfigError(
                "pipeline parameter join 'pandas' reads declared Parquet sources; feature_store.repo needs 'feast'"
            )

        timing.mark("imports")
        manifest = build_scenario_dataset(videos_path, features_path, scenario, project, dataset.path, shards)
    else:
        raise ConfigError(f"pipeline parameter join must be 'feast' or 'pandas', got {join!r}")
    timing.mark("join")
    write_scenario_config(resolved, config, "pipeline parameter method" if method else "config")
    dataset.metadata.update(
        {
            "scenario": scenario,
            "rows": manifest["rows"],
            "pool_rows": manifest["pool"]["rows"],
            "join_backend": manifest["join_backend"],
            "feature_service": manifest["feature_service"],
            "dense_null_rate": manifest["dense_null_rate"],
            "source_fingerprint": manifest["source_fingerprint"],
            "stream_root": manifest["stream"]["root"],
        }
    )
    timing.mark("write")
    print(
        f"dataset {scenario}: {manifest['rows']} and {manifest['pool']['rows']} unlabelled pool videos via "
        f"{manifest['join_backend']}; config resolved ({resolved.distill.method}, "
        f"{resolved.distill.teacher_outputs} teacher outputs, pool weight {resolved.distill.pool_weight:g})"
    )
