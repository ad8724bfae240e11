"""`feature_store.offline` / `spark_conf` in the project config and the Feast store config they produce."""

from __future__ import annotations

import pytest
import yaml

from cpfd.config import load_config
from cpfd.errors import ConfigError
from cpfd.featurestore import write_store_config


def _config(tmp_path, text: str, overrides: list[str] | None = None):
    path = tmp_path / "project.yaml"
    path.write_text(text)
    return load_config(path, overrides)


def test_duckdb_is_the_default_and_spark_alone_keeps_the_default_declarations(tmp_path):
    default = load_config()
    assert default.feature_store.offline == "duckdb" and default.feature_store.spark_conf == {}
    spark = _config(tmp_path, "feature_store: {offline: spark, spark_conf: {spark.master: yarn}}\n")
    assert spark.feature_store.offline == "spark" and spark.feature_store.spark_conf == {"spark.master": "yarn"}
    assert spark.feature_store.services == default.feature_store.services
    assert spark.feature_store.sources == default.feature_store.sources
    assert load_config(None, ["feature_store.offline=spark"]).feature_store.offline == "spark"


def test_offline_store_mistakes_name_the_setting(tmp_path):
    with pytest.raises(ConfigError, match=r"feature_store\.offline: Input should be 'duckdb' or 'spark'"):
        _config(tmp_path, "feature_store: {offline: bigquery}\n")
    with pytest.raises(ConfigError, match=r"spark_conf is set but offline is 'duckdb'"):
        _config(tmp_path, "feature_store: {spark_conf: {spark.master: yarn}}\n")


def test_spark_store_config_is_local_mode_with_the_project_settings_on_top(tmp_path):
    decl = _config(
        tmp_path,
        "feature_store: {offline: spark, spark_conf: {spark.master: 'k8s://https://k8s:443', "
        "spark.executor.instances: 8, spark.dynamicAllocation.enabled: true}}\n",
    ).feature_store
    local_spark = load_config(None, ["feature_store.offline=spark"]).feature_store
    local = yaml.safe_load(write_store_config(tmp_path / "local", declarations=local_spark).read_text())[
        "offline_store"
    ]
    assert local["type"] == "spark" and local["spark_conf"]["spark.master"] == "local[2]"
    assert local["spark_conf"]["spark.ui.enabled"] == "false"
    assert local["spark_conf"]["spark.driver.host"] == local["spark_conf"]["spark.driver.bindAddress"] == "127.0.0.1"
    cluster = yaml.safe_load(write_store_config(tmp_path / "cluster", declarations=decl).read_text())
    conf = cluster["offline_store"]["spark_conf"]
    assert conf["spark.master"] == "k8s://https://k8s:443" and conf["spark.executor.instances"] == "8"
    assert conf["spark.dynamicAllocation.enabled"] == "true"  # YAML booleans as Spark spells them
    assert conf["spark.sql.session.timeZone"] == "UTC"  # the local settings it does not override stay
    duckdb = yaml.safe_load(
        write_store_config(tmp_path / "duckdb", declarations=load_config().feature_store).read_text()
    )
    assert duckdb["offline_store"] == {"type": "duckdb"}
    assert cluster["registry"]["path"] == f"sqlite:///{(tmp_path / 'cluster' / 'registry.db').resolve()}"
