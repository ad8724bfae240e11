"""build_dataset: the scenario's training set (point-in-time join of the privileged features, time splits)."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from components.image import project_image


@dsl.component(base_image=project_image(), install_kfp_package=False)
def build_dataset(videos: str, features: str, scenario: str, config_yaml: str, join: str, dataset: Output[Dataset]):
    """``join``: "feast" (get_historical_features with the scenario's feature service; the repo is
    $CPFD_FEATURE_REPO or the project's feature_repo/) or "pandas" (merge_asof, the core path)."""
    import tempfile

    from components.common import project_from_yaml
    from cpfd.errors import ConfigError

    project = project_from_yaml(config_yaml)
    if join == "feast":
        from featurestore import build_dataset_feast

        with tempfile.TemporaryDirectory() as store:  # this step's own registry: parallel steps never share one
            manifest = build_dataset_feast(videos, features, scenario, project, dataset.path, store_dir=store)
    elif join == "pandas":
        from cpfd.data.build import build_scenario_dataset

        manifest = build_scenario_dataset(videos, features, scenario, project, dataset.path)
    else:
        raise ConfigError(f"pipeline parameter join must be 'feast' or 'pandas', got {join!r}")
    dataset.metadata.update({
        "scenario": scenario, "rows": manifest["rows"], "join_backend": manifest["join_backend"],
        "feature_service": manifest["feature_service"], "dense_null_rate": manifest["dense_null_rate"],
        "source_fingerprint": manifest["source_fingerprint"],
    })
    print(f"dataset {scenario}: {manifest['rows']} via {manifest['join_backend']}")
