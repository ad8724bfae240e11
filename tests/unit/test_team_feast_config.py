"""The team's own Feast by reference (feature_store.repo) without a server: the config's rules, the redaction of
credentials in what is recorded, and the compile option that mounts a Kubernetes secret on build_dataset alone."""

from __future__ import annotations

import sys

import pytest
import yaml

from cpfd.config import load_config
from cpfd.errors import ConfigError


def _config(tmp_path, feature_store: dict, service: str = "team_service_v3"):
    path = tmp_path / "cfg.yaml"
    scenario = {"name": "clickbait", "label_names": ["ok", "clickbait"], "feature_service": service}
    path.write_text(yaml.safe_dump({"feature_store": feature_store, "scenarios": [scenario]}))
    return load_config(path)


def test_repo_mode_takes_the_teams_service_names_and_mapping(tmp_path):
    project = _config(tmp_path, {"repo": "/teams/features", "join_key": "item_id", "label_timestamp": "label_ts"})
    fs = project.feature_store
    assert fs.by_reference and fs.repo == "/teams/features"
    assert (fs.join_key, fs.label_timestamp) == ("item_id", "label_ts")
    # the service is the team's: not among the declarations, and not an error
    assert project.scenario("clickbait").feature_service == "team_service_v3"
    assert "team_service_v3" not in fs.services
    with pytest.raises(ConfigError, match="team_service_v3.*is not declared"):
        _config(tmp_path, {"offline": "duckdb"})  # declaration mode still checks the service


@pytest.mark.parametrize(
    ("feature_store", "message"),
    [
        ({"repo": "/r", "offline": "spark"}, "with repo set, the offline store is the one /r names"),
        ({"repo": "/r", "join_key": "ts", "label_timestamp": "ts"}, "join_key and label_timestamp are both 'ts'"),
        ({"offline": "duckdb", "join_key": "item_id"}, "set them only with repo"),
    ],
)
def test_repo_mode_config_errors_name_the_field(tmp_path, feature_store, message):
    with pytest.raises(ConfigError, match=message):
        _config(tmp_path, feature_store)


def test_registry_locations_are_recorded_without_credentials():
    from cpfd.featurestore.reference import redact_url

    assert redact_url("postgresql+psycopg://team:s3cret@db.internal:5432/feast") == (
        "postgresql+psycopg://***@db.internal:5432/feast"
    )
    assert redact_url("snowflake://u:p@acct/db?warehouse=w&password=x&private_key=y") == (
        "snowflake://***@acct/db?warehouse=w&password=***&private_key=***"
    )
    assert redact_url("s3://bucket/feast/registry.pb") == "s3://bucket/feast/registry.pb"
    assert redact_url("/shared/registry.db") == "/shared/registry.db"
    assert redact_url("sqlite:////shared/registry.db") == "sqlite:////shared/registry.db"
    assert redact_url("postgresql://u:p@h/db?sslmode=require") == "postgresql://***@h/db?sslmode=require"


def _cli(monkeypatch, capsys, *argv) -> tuple[int, str, str]:
    from cpfd.cli.main import main

    monkeypatch.setattr(sys, "argv", ["cpfd", *argv])
    with pytest.raises(SystemExit) as exc:
        main()
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


def test_compile_mounts_the_feast_secret_on_build_dataset_alone(tmp_path, monkeypatch, capsys):
    out = tmp_path / "pipeline.yaml"
    code, stdout, err = _cli(
        monkeypatch, capsys, "pipeline", "compile", "--out", str(out), "--feast-secret", "team-feast",
        "--feast-secret-env", "password=TEAM_PG_PASSWORD", "--feast-secret-env", "user=TEAM_PG_USER",
    )  # fmt: skip
    assert code == 0, err
    _, platform = yaml.safe_load_all(out.read_text())
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    with_secret = {name for name, ex in executors.items() if "secretAsEnv" in ex}
    assert with_secret == {"exec-build-dataset"}
    (mounted,) = executors["exec-build-dataset"]["secretAsEnv"]
    assert mounted["secretName"] == "team-feast"
    assert mounted["keyToEnv"] == [
        {"secretKey": "password", "envVar": "TEAM_PG_PASSWORD"},
        {"secretKey": "user", "envVar": "TEAM_PG_USER"},
    ]
    assert "optional" not in mounted or mounted["optional"] is False  # a missing secret fails the pod, visibly

    code, _, err = _cli(monkeypatch, capsys, "pipeline", "compile", "--out", str(out), "--feast-secret", "team-feast")
    assert code == 2 and "Traceback" not in err
    assert "feast_secret 'team-feast': map at least one of its keys" in err and len(err.strip().splitlines()) == 1


def test_error_lines_are_scrubbed_and_name_the_extra_of_a_missing_driver():
    from cpfd.featurestore.reference import _extra_for, _import_error, _one_line

    class Wrapped(Exception):
        pass

    try:
        try:
            raise ModuleNotFoundError("No module named 'psycopg_pool'", name="psycopg_pool")
        except ImportError as e:
            raise Wrapped("Could not import module 'feast...postgres'") from e
    except Wrapped as outer:
        cause = _import_error(outer)
    assert cause is not None and cause.name == "psycopg_pool" and _extra_for(cause.name) == "postgres"
    assert _extra_for("snowflake.connector") == "snowflake" and _extra_for("pyspark") == "spark"
    assert _extra_for("something_else") == ""
    text = _one_line(
        RuntimeError("auth failed for dsn 'password=hunter2'\n  (Background on this error at: x)"), ["hunter2"]
    )
    assert text == "auth failed for dsn 'password=***'"


def test_dataset_build_with_a_repo_refuses_the_pandas_join(tmp_path, monkeypatch, capsys):
    cfg = tmp_path / "cfg.yaml"
    scenario = {"name": "clickbait", "label_names": ["ok", "clickbait"], "feature_service": "team_v1"}
    cfg.write_text(yaml.safe_dump({"feature_store": {"repo": str(tmp_path)}, "scenarios": [scenario]}))
    code, _, err = _cli(
        monkeypatch, capsys, "dataset", "build", "--videos", str(tmp_path / "v.parquet"), "--scenario", "clickbait",
        "--out", str(tmp_path / "out"), "--config", str(cfg), "--backend", "pandas",
    )  # fmt: skip
    assert code == 2 and "--backend pandas reads the declared Parquet sources; feature_store.repo needs Feast" in err
    code, _, err = _cli(
        monkeypatch, capsys, "dataset", "build", "--videos", str(tmp_path / "v.parquet"), "--scenario", "clickbait",
        "--out", str(tmp_path / "out"), "--config", str(cfg),
    )  # fmt: skip
    assert code == 2 and f"feature_store.repo: no Feast config at {tmp_path / 'feature_store.yaml'}" in err
    assert "Traceback" not in err
