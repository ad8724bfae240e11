"""Feature declarations: which privileged columns each teacher version reads, declared once.

The project config's ``feature_store`` section declares Parquet *sources*, feature *views* over
them (columns, type, freshness window) and feature *services*, one per teacher version, that pick
whole views or some of their columns. A scenario names its service. The Feast repository
(``feature_repo/``) builds its objects from these declarations and the pandas join reads the same
columns, so both backends give a teacher exactly the columns of its service.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from cpfd.config_base import StrictModel, default_config_path
from cpfd.conventions import FEATURE_TTL
from cpfd.errors import ConfigError, DataContractError

FeatureDtype = Literal["float32", "float64", "int64"]
OfflineStore = Literal["duckdb", "spark"]
# Keys of the declarations proper: a user's feature_store section with none of them keeps the default ones.
DECLARATION_KEYS = frozenset({"sources", "views", "services"})
DEFAULT_OWNER = "ml-platform@cpfd.example"
# Set by the Feast glue when it imports feature_repo/: a JSON file with the declarations and the sources' paths.
DECLARATIONS_ENV = "CPFD_FEATURE_DECLARATIONS"


class _Described(StrictModel):
    description: str = ""
    owner: str = DEFAULT_OWNER
    tags: dict[str, str] = Field(default_factory=dict)


class FeatureSourceDecl(_Described):
    """A Parquet table of (video_id, event_timestamp, created, feature columns...)."""

    path: str = Field(description="relative to the feature data folder, or absolute")


class FeatureViewDecl(_Described):
    """Columns of one source, joined point-in-time with a freshness window."""

    source: str
    features: list[str] = Field(min_length=1)
    dtype: FeatureDtype = "float32"
    ttl_days: float = Field(FEATURE_TTL.total_seconds() / 86400, gt=0)


class FeatureServiceDecl(_Described):
    """A teacher version's features: whole views (``view``) or some columns (``{view: [columns]}``)."""

    features: list[str | dict[str, list[str]]] = Field(min_length=1)


class FeatureDeclarations(StrictModel):
    offline: OfflineStore = Field(
        "duckdb",
        description="Feast's offline store: duckdb (one machine) or spark (pyspark and a Java runtime; "
        "local mode unless spark_conf names a cluster: docs/scaling.md)",
    )
    spark_conf: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="offline: spark: Spark settings on top of the local-mode ones of the Feast "
        "repository's Spark store config (spark.master, object storage, executor sizes)",
    )
    sources: dict[str, FeatureSourceDecl] = Field(min_length=1)
    views: dict[str, FeatureViewDecl] = Field(min_length=1)
    services: dict[str, FeatureServiceDecl] = Field(min_length=1)
    repo: str | None = Field(
        None,
        description="an existing Feast deployment by reference: the team's repo folder or its feature_store.yaml. "
        "The build then applies nothing, reads each scenario's feature_service from that registry and joins on "
        "its offline store; sources, views and services above are not used (docs/use_your_feast.md)",
    )
    join_key: str = Field(
        "video_id",
        min_length=1,
        description="with repo: the join key of the team's entity; it gets the videos' video_id",
    )
    label_timestamp: str = Field(
        "event_timestamp",
        min_length=1,
        description="with repo: the entity rows' timestamp column in the team's convention; it gets the videos' "
        "event_timestamp (the label event's time)",
    )

    @property
    def by_reference(self) -> bool:
        """True when the features come from the team's own Feast deployment (``repo``), not the declarations."""
        return self.repo is not None

    @model_validator(mode="after")
    def _references_resolve(self) -> FeatureDeclarations:
        if self.repo is not None:
            if self.offline != "duckdb" or self.spark_conf:
                raise ValueError(
                    "offline and spark_conf configure the declared store; with repo set, the offline store is the one "
                    f"{self.repo} names: remove them"
                )
            if self.join_key == self.label_timestamp:
                raise ValueError(f"join_key and label_timestamp are both {self.join_key!r}: they must differ")
        elif (self.join_key, self.label_timestamp) != ("video_id", "event_timestamp"):
            raise ValueError("join_key and label_timestamp map the team's Feast names: set them only with repo")
        if self.spark_conf and self.offline != "spark":
            raise ValueError(f"spark_conf is set but offline is {self.offline!r}: set offline: spark to use it")
        for name, view in self.views.items():
            if view.source not in self.sources:
                raise ValueError(
                    f"views.{name}.source: {view.source!r} is not declared in sources {sorted(self.sources)}"
                )
            if len(set(view.features)) != len(view.features):
                raise ValueError(f"views.{name}.features: a column is listed twice")
        for name in self.services:
            self.service_views(name)  # raises on an unknown view or column, or a name read twice
        return self

    def service_views(self, service: str) -> list[tuple[str, list[str]]]:
        """(view, columns) pairs a service reads, in declaration order."""
        if service not in self.services:
            raise ConfigError(f"feature service {service!r} is not declared; declared: {sorted(self.services)}")
        picks: list[tuple[str, list[str]]] = []
        for entry in self.services[service].features:
            for view, columns in entry.items() if isinstance(entry, dict) else [(entry, None)]:
                if view not in self.views:
                    raise ValueError(f"services.{service}: view {view!r} is not declared in views {sorted(self.views)}")
                unknown = sorted(set(columns or []) - set(self.views[view].features))
                if unknown:
                    raise ValueError(f"services.{service}: column(s) {unknown} are not features of view {view!r}")
                picks.append((view, list(columns) if columns else list(self.views[view].features)))
        names = [c for _, cols in picks for c in cols]
        repeated = sorted({c for c in names if names.count(c) > 1})
        if repeated:
            raise ValueError(f"services.{service}: column(s) {repeated} are read twice (column names must be unique)")
        return picks

    def all_views(self) -> list[tuple[str, list[str]]]:
        return [(name, list(view.features)) for name, view in self.views.items()]

    def service_features(self, service: str) -> list[str]:
        return [c for _, cols in self.service_views(service) for c in cols]

    def service_sources(self, service: str) -> list[str]:
        return list(dict.fromkeys(self.views[v].source for v, _ in self.service_views(service)))

    def source_paths(self, features: str | Path, service: str | None = None) -> dict[str, Path]:
        """Every source's file. ``features`` is the folder that holds them, or (for a service reading one
        source) that source's file itself."""
        features = Path(features)
        base = features if features.is_dir() else features.parent
        paths = {n: _under(base, s.path) for n, s in self.sources.items()}
        if not features.is_dir():
            read = self.service_sources(service) if service else sorted(self.sources)
            if len(read) != 1:
                raise DataContractError(
                    f"{features}: a single feature file was given but {len(read)} sources are read "
                    f"({', '.join(read)}); "
                    "pass the folder that holds " + ", ".join(self.sources[s].path for s in read)
                )
            paths[read[0]] = features
        return {n: p.resolve() for n, p in paths.items()}


def _under(base: Path, path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else base / p


def write_repo_inputs(declarations: FeatureDeclarations, paths: dict[str, Path], out: Path) -> Path:
    """The JSON file ``feature_repo/`` reads (through $CPFD_FEATURE_DECLARATIONS): declarations and paths."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"declarations": declarations.model_dump(), "paths": {k: str(v) for k, v in paths.items()}})
    )
    return out


def repo_inputs(default_data: Path) -> tuple[FeatureDeclarations, dict[str, Path]]:
    """What ``feature_repo/`` builds its objects from: $CPFD_FEATURE_DECLARATIONS when set (the Feast glue sets
    it), else the embedded default declarations with sources under ``default_data`` (a plain ``feast apply``)."""
    path = os.environ.get(DECLARATIONS_ENV)
    if path:
        data = json.loads(Path(path).read_text())
        decl = FeatureDeclarations.model_validate(data["declarations"])
        return decl, {k: Path(v) for k, v in data["paths"].items()}
    decl = default_feature_store()
    return decl, decl.source_paths(default_data)


def default_feature_store() -> FeatureDeclarations:
    """The embedded default's declarations (the synthetic data's one source, view and service)."""
    import yaml

    data = yaml.safe_load(default_config_path().read_text())["feature_store"]
    return FeatureDeclarations.model_validate(data)
