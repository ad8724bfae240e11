"""The Feast glue above the cpfd library: apply ``feature_repo/`` to a store folder with its source
pointed at a given Parquet file, look up feature services, point-in-time join with
get_historical_features, and the Feast path of the dataset build (``cpfd.featurestore.store``).

It sits here, not in ``cpfd`` (which must import without Feast) and not in ``feature_repo/``
(``feast apply`` imports every module of the repository folder; that folder holds definitions only).
"""

from cpfd.featurestore.store import (
    DEFAULT_REPO,
    REPO_MODULES,
    apply_repo,
    build_dataset_feast,
    check_declarations,
    feature_repo_dir,
    historical_features,
    load_definitions,
    service_features,
    write_store_config,
)

__all__ = [
    "DEFAULT_REPO",
    "REPO_MODULES",
    "apply_repo",
    "build_dataset_feast",
    "check_declarations",
    "feature_repo_dir",
    "historical_features",
    "load_definitions",
    "service_features",
    "write_store_config",
]
