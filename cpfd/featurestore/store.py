"""Feast path of the dataset build: apply the feature repo on a data folder, point-in-time join.

The repository definitions live in ``feature_repo/`` (entities, data sources, feature views,
feature services), built from the project config's feature declarations (``cpfd.features``). A
*store folder* gets a copy of its ``feature_store.yaml`` with absolute registry and online-store
paths and the declarations with the sources' paths, so the same repo serves any data folder and
any declarations. ``feature_store.offline: spark`` takes the offline store from ``feature_store.spark.yaml``
(Spark in local mode unless ``feature_store.spark_conf`` says otherwise). Feast and pyspark are imported lazily.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import shutil
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import yaml

from cpfd.config import default_feature_store, read_yaml
from cpfd.env import environment
from cpfd.errors import ConfigError, CpfdError, DataContractError
from cpfd.features import DECLARATIONS_ENV, FeatureDeclarations, write_repo_inputs

if TYPE_CHECKING:  # Feast is imported lazily
    from feast.feast_object import FeastObject

REPO_MODULES = ("declarations", "entities", "data_sources", "feature_views", "feature_services")
DEFAULT_REPO = Path(__file__).resolve().parent.parent / "feature_repo"


def feature_repo_dir() -> Path:
    """The Feast repository: $CPFD_FEATURE_REPO, else ``feature_repo/`` next to the package."""
    repo = Path(os.environ.get("CPFD_FEATURE_REPO", DEFAULT_REPO))
    if not (repo / "feature_store.yaml").exists():
        raise ConfigError(f"no Feast repository at {repo} (feature_store.yaml missing); set CPFD_FEATURE_REPO")
    return repo


def load_definitions(
    declarations: FeatureDeclarations,
    paths: dict[str, Path],
    inputs_dir: str | Path,
    repo: Path | None = None,
) -> list:
    """Import the repo's modules afresh over ``declarations`` and the sources' ``paths``; return its Feast objects.

    The declarations go to the repo as ``inputs_dir/declarations.json`` (named by $CPFD_FEATURE_DECLARATIONS).
    """
    from feast import Entity, FeatureService, FeatureView
    from feast.data_source import DataSource

    repo = (repo or feature_repo_dir()).resolve()
    inputs = write_repo_inputs(declarations, paths, Path(inputs_dir).resolve() / "declarations.json")
    objects: list = []
    with environment(**{DECLARATIONS_ENV: str(inputs)}):
        sys.path.insert(0, str(repo))
        try:
            for name in REPO_MODULES:
                sys.modules.pop(name, None)
            modules = [importlib.import_module(name) for name in REPO_MODULES]
        finally:
            sys.path.remove(str(repo))
            for name in REPO_MODULES:
                sys.modules.pop(name, None)
    for module in modules:
        for obj in vars(module).values():
            if isinstance(obj, (Entity, DataSource, FeatureView, FeatureService)) and not any(
                obj is o for o in objects
            ):
                objects.append(obj)
    return objects


def write_store_config(
    store_dir: str | Path, repo: Path | None = None, declarations: FeatureDeclarations | None = None
) -> Path:
    """Copy the repo's feature_store.yaml into ``store_dir`` with absolute registry/online paths; with
    ``declarations.offline == "spark"``, the offline store of feature_store.spark.yaml plus ``spark_conf``."""
    store = Path(store_dir).resolve()
    store.mkdir(parents=True, exist_ok=True)
    repo = repo or feature_repo_dir()
    config = read_yaml("Feast store config", repo / "feature_store.yaml")
    if declarations is not None and declarations.offline == "spark":
        offline = read_yaml("Feast Spark store config", repo / "feature_store.spark.yaml")["offline_store"]
        conf = {**offline.get("spark_conf", {}), **declarations.spark_conf}
        offline["spark_conf"] = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in conf.items()}
        config["offline_store"] = offline
    config["registry"]["path"] = f"sqlite:///{store / 'registry.db'}"
    if config.get("online_store", {}).get("type") == "sqlite":
        config["online_store"]["path"] = str(store / "online_store.db")
    path = store / "feature_store.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def check_declarations(
    declarations: FeatureDeclarations, features: str | Path, service: str | None = None
) -> dict[str, Path]:
    """Every declared source's path, each checked against its views' columns and types (or only the sources
    ``service`` reads); a missing file, column or a wrong type is a DataContractError naming it."""
    from cpfd.data.contract import load_sources

    paths = declarations.source_paths(features, service)
    views = declarations.service_views(service) if service else declarations.all_views()
    load_sources(declarations, paths, views)
    if declarations.offline == "spark":
        _check_spark_timestamps(paths, {declarations.views[v].source for v, _ in views})
    return paths


def _check_spark_timestamps(paths: dict[str, Path], sources: set[str]) -> None:
    """Spark cannot read Parquet timestamps stored in nanoseconds: name the file and column instead."""
    import pyarrow.parquet as pq

    for name in sorted(sources):
        schema = pq.read_schema(paths[name])
        for column in ("event_timestamp", "created"):
            if getattr(schema.field(column).type, "unit", None) == "ns":
                raise DataContractError(
                    f"{paths[name]}: column {column!r} is stored in nanoseconds, which Spark cannot read "
                    "(feature_store.offline: spark); write it in microseconds, e.g. "
                    "df.to_parquet(path, coerce_timestamps='us', allow_truncated_timestamps=True)"
                )


def _spark_process_settings(spark_conf: dict[str, str]) -> None:
    """Before Spark starts in this process: local mode binds to loopback only (SPARK_LOCAL_IP); Feast's
    "experimental feature" RuntimeWarning of every Spark call is silenced."""
    if spark_conf.get("spark.master", "").startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    warnings.filterwarnings("ignore", message="The spark .* experimental feature", category=RuntimeWarning)


def _check_spark_runtime() -> None:
    """``feature_store.offline: spark`` needs pyspark and a Java runtime: a one-line ConfigError for each."""
    if importlib.util.find_spec("pyspark") is None:
        raise ConfigError(
            "feature_store.offline: spark needs pyspark, which is not installed: "
            "pip install 'cpfd[platform]' (it pins pyspark), or set feature_store.offline: duckdb"
        )
    java_home = os.environ.get("JAVA_HOME")
    java = Path(java_home) / "bin" / "java" if java_home else shutil.which("java")
    if not java or not Path(java).exists():
        where = f"JAVA_HOME={java_home} has no bin/java" if java_home else "no java on PATH"
        raise ConfigError(
            f"feature_store.offline: spark needs a Java runtime (17 or newer) and finds none ({where}): "
            "install one, e.g. apt-get install default-jre-headless, or set feature_store.offline: duckdb"
        )


def apply_repo(
    features: str | Path,
    store_dir: str | Path,
    declarations: FeatureDeclarations | None = None,
    repo: Path | None = None,
    service: str | None = None,
):
    """Check the declarations against the Parquet sources, then ``feast apply`` through the Python API.

    ``features`` is the folder holding the declared sources (or one source's file, see
    ``FeatureDeclarations.source_paths``). Returns the FeatureStore.
    """
    declarations = declarations or default_feature_store()
    if declarations.offline == "spark":
        _check_spark_runtime()
    paths = check_declarations(declarations, features, service)
    logging.getLogger("feast").setLevel(logging.WARNING)
    from feast import FeatureStore

    write_store_config(store_dir, repo, declarations)
    store = FeatureStore(repo_path=str(Path(store_dir).resolve()))
    if declarations.offline == "spark":
        _spark_process_settings(store.config.offline_store.spark_conf or {})
    objects = load_definitions(declarations, paths, store_dir, repo)
    defined = {(type(o).__name__, o.name) for o in objects}
    registered: list[FeastObject] = [
        *store.list_entities(),
        *store.list_data_sources(),
        *store.list_feature_views(),
        *store.list_feature_services(),
    ]
    stale = [o for o in registered if (type(o).__name__, o.name) not in defined]
    store.apply(objects, objects_to_delete=stale, partial=not stale)
    return store


def service_features(store, service_name: str) -> list[str]:
    """Feature names of a feature service, in its views' order."""
    services = {s.name: s for s in store.list_feature_services()}
    if service_name not in services:
        raise ConfigError(f"feature service {service_name!r} is not in the Feast registry; applied: {sorted(services)}")
    return [f.name for p in services[service_name].feature_view_projections for f in p.features]


def historical_features(store, entities: pd.DataFrame, service_name: str) -> pd.DataFrame:
    """get_historical_features with a feature service; entity rows in == rows out, in input order.

    Only the join key and timestamp go to Feast; the other columns are re-attached by row.
    """
    names = service_features(store, service_name)
    service = store.get_feature_service(service_name)
    ts = entities["event_timestamp"]
    ts = ts.dt.tz_localize("UTC") if ts.dt.tz is None else ts.dt.tz_convert("UTC")
    keys = pd.DataFrame(
        {
            "video_id": entities["video_id"].to_numpy(),
            "event_timestamp": ts.dt.floor("us")
            .astype("datetime64[us, UTC]")
            .reset_index(drop=True),  # DuckDB rejects ns
            "_row": np.arange(len(entities), dtype=np.int64),
        }
    )
    joined = store.get_historical_features(entity_df=keys, features=service).to_df()
    if len(joined) != len(keys):
        raise CpfdError(f"Feast returned {len(joined)} rows for {len(keys)} entity rows (service {service_name!r})")
    joined = joined.sort_values("_row")
    out = entities.reset_index(drop=True)
    features = pd.DataFrame({name: joined[name].to_numpy(dtype=np.float32) for name in names})
    return pd.concat([out.drop(columns=[n for n in names if n in out]), features], axis=1)


def build_dataset_feast(
    videos_path: str | Path,
    features: str | Path,
    scenario: str,
    config,
    out_dir: str | Path,
    store_dir: str | Path | None = None,
    stream_root: str | None = None,
) -> dict:
    """The platform path: videos as the entity dataframe, the scenario's feature service, same layout. With
    ``feature_store.repo`` the team's own Feast deployment (``cpfd.featurestore.reference``; ``features`` unused)."""
    from cpfd.data.build import fingerprint, scenario_videos, selected_sources, write_dataset
    from cpfd.featurestore.reference import build_dataset_reference, record_lineage

    if config.feature_store.by_reference:
        return build_dataset_reference(videos_path, scenario, config, out_dir, stream_root)
    scen = config.scenario(scenario)
    videos = scenario_videos(videos_path, scenario, config)
    declarations = config.feature_store
    store = apply_repo(
        features, store_dir or Path(out_dir) / "feature_store", declarations, service=scen.feature_service
    )
    paths = selected_sources(
        declarations, scen.feature_service, declarations.source_paths(features, scen.feature_service)
    )
    joined = historical_features(store, videos, scen.feature_service)
    manifest = write_dataset(
        out_dir,
        scenario,
        scen.label_names,
        joined,
        service_features(store, scen.feature_service),
        scen.feature_service,
        fingerprint(videos_path, *paths.values()),
        "feast",
        paths,
        stream_root=stream_root,
    )
    return record_lineage(out_dir, manifest, declared_lineage(store, scen.feature_service, paths))


def declared_lineage(store, service_name: str, sources: dict[str, Path]) -> dict:
    """What the manifest records of a store applied from the declarations: the same fields as a team's Feast
    (``reference`` mode), with the Parquet sources read; the registry is this build's own."""
    service = store.get_feature_service(service_name)
    return {
        "mode": "declarations",
        "project": store.config.project,
        "registry": str(store.config.registry.path),
        "registry_type": store.config.registry.registry_type,
        "offline_store": {"type": store.config.offline_store.type},
        "feature_service": service_name,
        "feature_refs": [f"{p.name}:{f.name}" for p in service.feature_view_projections for f in p.features],
        "sources": {name: str(path) for name, path in sources.items()},
    }
