"""Feast path of the dataset build: apply the feature repo on a data folder, point-in-time join.

The repository definitions live in ``feature_repo/`` (entities, data sources, feature views,
feature services), built from the project config's feature declarations (``cpfd.features``). A
*store folder* gets a copy of its ``feature_store.yaml`` with absolute registry and online-store
paths and the declarations with the sources' paths, so the same repo serves any data folder and
any declarations. Feast is imported lazily.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import yaml

from cpfd.config import default_feature_store, read_yaml
from cpfd.errors import ConfigError, CpfdError
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


@contextmanager
def _env(**values: str):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def load_definitions(
    declarations: FeatureDeclarations,
    paths: dict[str, Path],
    inputs_dir: str | Path,
    repo: Path | None = None,
    offline_store: str = "duckdb",
) -> list:
    """Import the repo's modules afresh over ``declarations`` and the sources' ``paths``; return its Feast objects.

    The declarations go to the repo as ``inputs_dir/declarations.json`` (named by $CPFD_FEATURE_DECLARATIONS).
    """
    from feast import Entity, FeatureService, FeatureView
    from feast.data_source import DataSource

    repo = (repo or feature_repo_dir()).resolve()
    inputs = write_repo_inputs(declarations, paths, Path(inputs_dir).resolve() / "declarations.json")
    objects: list = []
    with _env(**{DECLARATIONS_ENV: str(inputs), "CPFD_OFFLINE_STORE": offline_store}):
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


def write_store_config(store_dir: str | Path, repo: Path | None = None) -> Path:
    """Copy the repo's feature_store.yaml into ``store_dir`` with absolute registry/online paths."""
    store = Path(store_dir).resolve()
    store.mkdir(parents=True, exist_ok=True)
    config = read_yaml("Feast store config", (repo or feature_repo_dir()) / "feature_store.yaml")
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
    return paths


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
    paths = check_declarations(declarations, features, service)
    logging.getLogger("feast").setLevel(logging.WARNING)
    from feast import FeatureStore

    write_store_config(store_dir, repo)
    store = FeatureStore(repo_path=str(Path(store_dir).resolve()))
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
) -> dict:
    """The platform path: videos as the entity dataframe, the scenario's feature service, same layout."""
    from cpfd.data.build import fingerprint, scenario_videos, selected_sources, write_dataset

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
    return write_dataset(
        out_dir,
        scenario,
        scen.label_names,
        joined,
        service_features(store, scen.feature_service),
        scen.feature_service,
        fingerprint(videos_path, *paths.values()),
        "feast",
        paths,
    )
