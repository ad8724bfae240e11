"""build_dataset: the scenario's training set (point-in-time join of the privileged features, time splits)."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from components.image import project_image


@dsl.component(base_image=project_image(), install_kfp_package=False)
def build_dataset(videos: str, features: str, scenario: str, config_yaml: str, feature_repo: str, ttl_days: float,
                  dataset: Output[Dataset]):
    """Join through Feast when ``feature_repo`` is given and cpfd.featurestore exists, else the pandas path."""
    import importlib.util
    from datetime import timedelta

    from components.common import project_from_yaml

    project = project_from_yaml(config_yaml)
    ttl = timedelta(days=ttl_days)
    if feature_repo and importlib.util.find_spec("cpfd.featurestore"):
        from cpfd.featurestore import build_dataset_feast

        manifest = build_dataset_feast(feature_repo, videos, scenario, project, dataset.path, ttl)
    else:
        from cpfd.data.build import build_scenario_dataset

        manifest = build_scenario_dataset(videos, features, scenario, project, dataset.path, ttl)
    dataset.metadata.update({
        "scenario": scenario, "rows": manifest["rows"], "join_backend": manifest["join_backend"],
        "feature_service": manifest["feature_service"], "dense_null_rate": manifest["dense_null_rate"],
        "source_fingerprint": manifest["source_fingerprint"],
    })
    print(f"dataset {scenario}: {manifest['rows']} via {manifest['join_backend']}")
