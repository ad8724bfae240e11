"""A team's own Feast deployment, by reference (``feature_store.repo``): their registry, offline store and services.

Nothing is applied or copied: ``FeatureStore`` opens the team's ``feature_store.yaml`` as Feast does (its
``${ENV_VAR}`` substitution included, so credentials come from the environment or a Kubernetes secret mounted as
environment variables), a scenario's ``feature_service`` is the name of a FeatureService in that registry, and the
build calls ``get_historical_features`` with it on whatever offline store the YAML names. The entity's join key and
the entity rows' timestamp column are mapped from the data contract by ``feature_store.join_key`` and
``feature_store.label_timestamp``. Every failure a user can cause (a missing file or variable, a missing driver,
wrong credentials, an unreachable host, an unknown service, a missing or non-numeric feature) is a one-line
ConfigError naming it; no credential reaches a message, an artifact or the manifest. Feast is imported lazily.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import numpy as np
import pandas as pd

from cpfd.errors import ConfigError, CpfdError, DataContractError
from cpfd.features import FeatureDeclarations

ROW = "cpfd_row"  # the entity rows' order, carried through the join
# Columns of the data contract a feature must not shadow: the student reads some of them, the build all of them.
CONTRACT_COLUMNS = ("video_id", "scenario", "event_timestamp", "label", "title", "frames")
# Feast offline stores / registries and the Feast extra that installs their driver.
EXTRAS = {
    "postgres": "postgres",
    "postgresql": "postgres",
    "psycopg": "postgres",
    "psycopg_pool": "postgres",
    "spark": "spark",
    "pyspark": "spark",
    "snowflake": "snowflake",
    "bigquery": "gcp",
    "google": "gcp",
    "redshift": "aws",
    "athena": "aws",
    "boto3": "aws",
    "trino": "trino",
    "mssql": "mssql",
    "pyodbc": "mssql",
    "clickhouse": "clickhouse",
    "duckdb": "duckdb",
    "ibis": "duckdb",
}
# Settings of an offline store that are safe to record (never a user, password, key or token).
RECORDED_STORE_KEYS = (
    "type",
    "host",
    "port",
    "database",
    "db_schema",
    "schema_",
    "project_id",
    "dataset",
    "location",
    "region",
    "cluster_id",
    "warehouse",
    "catalog",
    "staging_location",
)
_SECRET_QUERY = re.compile(r"pass|secret|token|key|credential|auth", re.IGNORECASE)
_ENV_REF = re.compile(r"\$\{(\w+)\}")  # Feast's documented form (a lone $ may be part of a literal value)


def redact_url(location: str) -> str:
    """A registry path or URL with its credentials replaced by ``***``: the user info of a URL and any query
    parameter named like a secret. Plain paths come back unchanged."""
    if "://" not in location:
        return location
    parts = urlsplit(location)
    out = location  # edited in place: sqlite:////abs/path must keep its slashes
    if "@" in parts.netloc:
        out = out.replace(parts.netloc, "***@" + parts.netloc.rsplit("@", 1)[1], 1)
    pairs = parse_qsl(parts.query)
    if any(_SECRET_QUERY.search(k) for k, _ in pairs):
        query = urlencode([(k, "***" if _SECRET_QUERY.search(k) else v) for k, v in pairs], safe="*")
        out = out.replace("?" + parts.query, "?" + query, 1)
    return out


def _one_line(error: BaseException, secrets: list[str]) -> str:
    """The first meaningful text of ``error`` (SQLAlchemy's wrapped driver error when there is one) on one line,
    every known secret scrubbed."""
    inner = getattr(error, "orig", None) or error
    text = " ".join(str(inner).split()) or type(inner).__name__
    text = re.sub(r"\(Background on this error at: [^)]*\)", "", text).strip()
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _import_error(error: BaseException | None) -> ImportError | None:
    """The ImportError behind ``error`` (Feast wraps a failed driver import in its own errors), if any."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, ImportError):
            return error
        error, seen = error.__cause__ or error.__context__, seen + 1
    return None


def _extra_for(missing: str) -> str:
    for key, extra in EXTRAS.items():
        if key in missing.lower():
            return extra
    return ""


@dataclass
class ServiceSpec:
    """What a feature service reads: its name, ``view:feature`` references, the output column names, the views."""

    name: str
    refs: list[str]
    names: list[str]
    views: dict[str, list[str]] = field(default_factory=dict)
    ttl: dict[str, float | None] = field(default_factory=dict)


class TeamFeast:
    """A team's Feast deployment opened from their repo folder or feature_store.yaml; applies nothing."""

    def __init__(self, decl: FeatureDeclarations):
        if decl.repo is None:
            raise ConfigError("feature_store.repo is not set: the features come from the project's declarations")
        self.decl = decl
        self.yaml = self._yaml_path(Path(decl.repo))
        self._check_env_refs()
        logging.getLogger("feast").setLevel(logging.WARNING)
        from feast import FeatureStore
        from feast.repo_config import FeastConfigError

        with self._errors(f"{self.yaml}"):
            try:
                self.store = FeatureStore(repo_path=str(self.yaml.parent), fs_yaml_file=self.yaml)
            except (FeastConfigError, ValueError, TypeError) as e:
                raise ConfigError(f"{self.yaml}: not a valid Feast config: {_one_line(e, self.secrets())}") from None
        self.project = self.store.config.project

    @staticmethod
    def _yaml_path(repo: Path) -> Path:
        path = repo / "feature_store.yaml" if repo.is_dir() else repo
        if not path.is_file():
            raise ConfigError(
                f"feature_store.repo: no Feast config at {path} (a repo folder or its feature_store.yaml)"
            )
        return path.resolve()

    def _check_env_refs(self) -> None:
        """Feast substitutes ``${VAR}`` from the environment and leaves an unset one as it is: name it instead."""
        text = self.yaml.read_text()
        unset = sorted({name for name in _ENV_REF.findall(text) if name not in os.environ})
        if unset:
            raise ConfigError(
                f"{self.yaml} reads the environment variable(s) {', '.join(unset)}, which are not set "
                "(in a pipeline: mount the secret that holds them, cpfd pipeline compile --feast-secret)"
            )

    def secrets(self) -> list[str]:
        """Every credential the loaded config holds (for scrubbing messages)."""
        found: list[str] = []
        config = getattr(getattr(self, "store", None), "config", None)
        if config is None:
            return found
        with contextlib.suppress(Exception):
            path = config.registry.path
            if "://" in path:
                found.append(urlsplit(path).password or "")
        with contextlib.suppress(Exception):
            found.append(getattr(config.offline_store, "password", "") or "")
        return [s for s in found if s]

    def _yaml_store_types(self) -> str:
        """The store types the YAML names (for a driver hint before Feast could load it)."""
        import yaml

        with contextlib.suppress(Exception):
            raw = yaml.safe_load(self.yaml.read_text()) or {}
            return " ".join(
                str((raw.get(k) or {}).get(t, "")) if isinstance(raw.get(k), dict) else str(raw.get(k, ""))
                for k, t in (("offline_store", "type"), ("registry", "path"), ("registry", "registry_type"))
            )
        return ""

    def registry_location(self) -> str:
        return redact_url(str(self.store.config.registry.path))

    def offline_store(self) -> dict[str, Any]:
        """The offline store's type and location, without credentials."""
        config = self.store.config.offline_store
        values = config.model_dump() if hasattr(config, "model_dump") else {"type": getattr(config, "type", "?")}
        return {k: values[k] for k in RECORDED_STORE_KEYS if values.get(k) not in (None, "")}

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Driver, connection and query errors of ``what`` as one-line ConfigErrors without credentials."""
        from feast.errors import FeastExtrasDependencyImportError

        try:
            yield
        except (CpfdError, KeyboardInterrupt):
            raise
        except Exception as e:  # noqa: BLE001 - any store's driver: one line naming the store
            cause = _import_error(e)
            if cause is not None or isinstance(e, FeastExtrasDependencyImportError):
                missing = getattr(cause, "name", None) or str(cause or e)
                extra = _extra_for(missing) or _extra_for(self._yaml_store_types())
                hint = f"pip install 'feast[{extra}]==0.67.0'" if extra else "install the Feast extra of that store"
                text = _one_line(cause or e, []).split(" You may need")[0]
                raise ConfigError(f"{what} needs a driver that is not installed ({text}): {hint}") from None
            name = type(getattr(e, "orig", None) or e).__name__
            connect = any(w in name for w in ("Operational", "Connection", "Timeout", "Interface"))
            verb = "cannot connect" if connect else "failed"
            raise ConfigError(f"{what} {verb}: {_one_line(e, self.secrets())}") from None

    def service(self, name: str) -> ServiceSpec:
        """The service ``name`` from the team's registry: its views' features, each checked to be numeric, the views'
        join keys checked against ``feature_store.join_key``."""
        from feast import types as ft
        from feast.errors import FeatureServiceNotFoundException

        where = f"Feast registry {self.registry_location()} (project {self.project!r})"
        with self._errors(where):
            try:
                service = self.store.get_feature_service(name)
            except FeatureServiceNotFoundException:
                known = sorted(s.name for s in self.store.list_feature_services())
                raise ConfigError(f"feature service {name!r} is not in the {where}; it has: {known}") from None
            views = {v.name: v for v in self.store.list_feature_views()}
        numeric = (ft.Float32, ft.Float64, ft.Int32, ft.Int64)
        spec = ServiceSpec(name, [], [])
        for projection in service.feature_view_projections:
            view_name = projection.name
            view = views.get(view_name)
            if view is None:
                raise ConfigError(
                    f"feature service {name!r} reads view {view_name!r}, which is not a batch feature view in the "
                    f"{where} (on-demand and stream views are not read)"
                )
            keys = [c.name for c in view.entity_columns]
            if keys != [self.decl.join_key]:
                raise ConfigError(
                    f"feature service {name!r}: view {view_name!r} joins on {keys}, not on feature_store.join_key "
                    f"{self.decl.join_key!r} (the key the videos' video_id is sent as)"
                )
            for feature in projection.features:
                ref = f"{projection.name_to_use()}:{feature.name}"
                if feature.dtype not in numeric:
                    raise ConfigError(
                        f"feature service {name!r}: feature {ref} is {feature.dtype}, not numeric "
                        "(Float32, Float64, Int32 or Int64); the teacher reads numbers only"
                    )
                if feature.name in CONTRACT_COLUMNS or feature.name in (self.decl.join_key, self.decl.label_timestamp):
                    raise ConfigError(
                        f"feature service {name!r}: feature {ref} has the name of a videos column or key; the student "
                        "would read it: rename it in a projection of the service"
                    )
                spec.refs.append(ref)
                spec.names.append(feature.name)
                spec.views.setdefault(view_name, []).append(feature.name)
            spec.ttl[view_name] = view.ttl.total_seconds() if view.ttl else None
        repeated = sorted({n for n in spec.names if spec.names.count(n) > 1})
        if repeated:
            raise ConfigError(f"feature service {name!r}: feature name(s) {repeated} are read from two views")
        if not spec.names:
            raise ConfigError(f"feature service {name!r} reads no feature")
        return spec

    def entity_rows(self, videos: pd.DataFrame) -> pd.DataFrame:
        """The join key and timestamp under the team's names, UTC microseconds (DuckDB rejects ns), and the row."""
        ts = pd.to_datetime(videos["event_timestamp"])
        ts = ts.dt.tz_localize("UTC") if ts.dt.tz is None else ts.dt.tz_convert("UTC")
        return pd.DataFrame(
            {
                self.decl.join_key: videos["video_id"].to_numpy(dtype=np.int64),
                self.decl.label_timestamp: ts.dt.floor("us").astype("datetime64[us, UTC]").reset_index(drop=True),
                ROW: np.arange(len(videos), dtype=np.int64),
            }
        )

    def historical_features(self, videos: pd.DataFrame, spec: ServiceSpec) -> pd.DataFrame:
        """``get_historical_features`` with the service on the team's offline store: one row out per video, in order,
        the videos' own columns re-attached, features as float32."""
        offline = self.offline_store()
        where = f"Feast offline store {offline.get('type')}" + (
            f" at {offline['host']}:{offline.get('port', '')}" if "host" in offline else ""
        )
        with self._errors(where):
            try:
                service = self.store.get_feature_service(spec.name)
                job = self.store.get_historical_features(entity_df=self.entity_rows(videos), features=service)
                joined = job.to_df()
            except Exception as e:
                missing = self._missing_feature(e, spec)
                if missing:
                    raise ConfigError(missing) from None
                raise
        if len(joined) != len(videos):
            raise CpfdError(
                f"{where} returned {len(joined)} rows for {len(videos)} entity rows (service {spec.name!r})"
            )
        joined = joined.sort_values(ROW).reset_index(drop=True)
        features = {}
        for view, names in spec.views.items():
            for n in names:
                try:
                    features[n] = pd.to_numeric(joined[n]).to_numpy(dtype=np.float32)
                except (ValueError, TypeError):
                    raise ConfigError(
                        f"feature service {spec.name!r}: feature {view}:{n} holds non-numeric values in the offline "
                        "store (its view declares a number)"
                    ) from None
        out = videos.reset_index(drop=True)
        return pd.concat([out.drop(columns=[n for n in spec.names if n in out]), pd.DataFrame(features)], axis=1)

    @staticmethod
    def _missing_feature(error: BaseException, spec: ServiceSpec) -> str:
        """A query that names a column of the service the table lacks: say which view and feature."""
        text = str(getattr(error, "orig", None) or error).split(" LINE ")[0].split("\nLINE ")[0]
        if not re.search(r"column|field|identifier|not found|does not exist|no such", text, re.IGNORECASE):
            return ""
        for view, names in spec.views.items():
            for n in names:
                if re.search(rf"(?<![\w]){re.escape(n)}(?![\w])", text):
                    return (
                        f"feature service {spec.name!r}: feature {view}:{n} is missing from the view's source in "
                        f"the offline store ({' '.join(text.split())[:160]})"
                    )
        return ""

    def lineage(self, spec: ServiceSpec) -> dict:
        """What the manifest records: project, registry (credentials redacted), offline store, service, references."""
        return {
            "mode": "reference",
            "repo": str(self.yaml),
            "project": self.project,
            "registry": self.registry_location(),
            "registry_type": self.store.config.registry.registry_type,
            "offline_store": self.offline_store(),
            "feature_service": spec.name,
            "feature_refs": spec.refs,
            "join_key": self.decl.join_key,
            "label_timestamp": self.decl.label_timestamp,
        }


def content_fingerprint(videos_path: str | Path, joined: pd.DataFrame, names: list[str], lineage: dict) -> str:
    """The dataset's key: the videos file, the joined feature values and the lineage (a warehouse table cannot be
    hashed as a file, so what was read is)."""
    from cpfd.data.build import fingerprint

    h = hashlib.sha256(fingerprint(videos_path).encode())
    h.update(pd.util.hash_pandas_object(joined[["video_id", *names]], index=False).to_numpy().tobytes())
    h.update(json.dumps(lineage, sort_keys=True).encode())
    return h.hexdigest()[:16]


def record_lineage(out_dir: str | Path, manifest: dict, lineage: dict) -> dict:
    """Add the Feast lineage to the manifest written in ``out_dir``."""
    manifest = {**manifest, "feast": lineage}
    (Path(out_dir) / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def build_dataset_reference(
    videos_path: str | Path, scenario: str, config, out_dir: str | Path, stream_root: str | None = None
) -> dict:
    """The scenario's dataset from the team's Feast: its ``feature_service`` read from their registry, joined
    point-in-time on their offline store, the same splits and layout as the other joins."""
    from cpfd.data.build import scenario_videos, write_dataset

    scen = config.scenario(scenario)
    team = TeamFeast(config.feature_store)
    spec = team.service(scen.feature_service)
    videos = scenario_videos(videos_path, scenario, config)
    joined = team.historical_features(videos, spec)
    if joined[spec.names].isna().all(axis=None):
        raise DataContractError(
            f"scenario {scenario!r}: none of its {len(joined)} videos has a feature row of service "
            f"{spec.name!r} within its views' ttl (views {sorted(spec.views)}; check that the "
            f"{config.feature_store.join_key} values and timestamps match the videos table)"
        )
    lineage = team.lineage(spec)
    manifest = write_dataset(
        out_dir,
        scenario,
        scen.label_names,
        joined,
        spec.names,
        spec.name,
        content_fingerprint(videos_path, joined, spec.names, lineage),
        f"feast:{team.offline_store().get('type', '?')}",
        {},
        stream_root=stream_root,
    )
    return record_lineage(out_dir, manifest, lineage)


def sampled_label_rows(videos: pd.DataFrame, n: int) -> pd.DataFrame:
    """At most ``n`` videos spread evenly over the label times (the oldest and newest included)."""
    ordered = videos.sort_values(["event_timestamp", "video_id"]).reset_index(drop=True)
    if len(ordered) <= n:
        return ordered
    return ordered.iloc[np.unique(np.linspace(0, len(ordered) - 1, n).round().astype(int))].reset_index(drop=True)


def check_service(
    config, scenario: str, videos_path: str | Path | None = None, service: str | None = None, sample: int = 500
) -> dict:
    """The checks before a pipeline runs on the team's Feast, in seconds: the service exists in their registry, its
    features are numeric and joined on ``join_key``, no feature shadows a column the student reads, and (with the
    videos table) each of its views has rows within its ttl for the scenario's label times (on ``sample`` label
    times spread over the range). A failure is a ConfigError naming the service, view or feature."""
    from cpfd.data.contract import MODALITY_COLUMNS

    scen = config.scenario(scenario)
    team = TeamFeast(config.feature_store)
    spec = team.service(service or scen.feature_service)
    read = [c for c in MODALITY_COLUMNS if c in scen.modalities]
    shadowed = sorted(set(spec.names) & {*read, *CONTRACT_COLUMNS})
    if shadowed:  # service() refuses these already; kept as the student's own check
        raise ConfigError(f"feature service {spec.name!r}: the student of {scenario!r} would read {shadowed}")
    report: dict[str, Any] = {
        "scenario": scenario,
        "feature_service": spec.name,
        "project": team.project,
        "registry": team.registry_location(),
        "offline_store": team.offline_store(),
        "views": {v: {"features": names, "ttl_s": spec.ttl[v]} for v, names in spec.views.items()},
        "feature_refs": spec.refs,
        "student_reads": read,
        "coverage": None,
    }
    if videos_path is None:
        return report
    from cpfd.data.build import scenario_videos

    rows = sampled_label_rows(scenario_videos(videos_path, scenario, config), sample)
    joined = team.historical_features(rows, spec)
    newest = joined["event_timestamp"] >= joined["event_timestamp"].quantile(0.9)
    coverage = {}
    for view, names in spec.views.items():
        has = joined[names].notna().any(axis=1)
        coverage[view] = {"all": round(float(has.mean()), 4), "newest_tenth": round(float(has[newest].mean()), 4)}
        if not has.any():
            ttl = spec.ttl[view]
            raise ConfigError(
                f"feature service {spec.name!r}: view {view!r} has no row within its ttl "
                f"({'none' if ttl is None else timedelta_text(ttl)}) for any of {len(rows)} label times of "
                f"{scenario!r} from {rows['event_timestamp'].min()} to {rows['event_timestamp'].max()}"
            )
    report["coverage"] = {"label_times": len(rows), "views": coverage}
    return report


def timedelta_text(seconds: float) -> str:
    days, rest = divmod(seconds, 86400)
    return f"{days:g} d" if not rest else f"{seconds / 3600:g} h"
