"""Feast's Spark offline store (real Spark in local mode, one JVM for the module): `cpfd dataset build --backend
feast` with `feature_store.offline: spark` gives the DuckDB store's and the pandas join's dataset, row for row, for
two scenarios with separate feature tables; a missing pyspark or Java and nanosecond sources are one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import yaml

pytest.importorskip("feast")
pytest.importorskip("pyspark")

from typer.testing import CliRunner  # noqa: E402

from cpfd.cli.main import app  # noqa: E402
from tests.byo_data import write_byo_tables  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SCENARIOS = ("moderation", "topic")


def _splits(folder) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(folder / f"{s}.parquet") for s in ("train", "val", "test")], ignore_index=True)


@pytest.fixture(scope="module")
def byo(tmp_path_factory):
    """The BYO tables in microseconds (Spark cannot read nanosecond Parquet) and a config selecting Spark."""
    root = tmp_path_factory.mktemp("byo_spark")
    paths = write_byo_tables(root, resolution="us")
    config = yaml.safe_load(paths["config"].read_text())
    config["feature_store"]["offline"] = "spark"
    paths["spark_config"] = root / "spark.yaml"
    paths["spark_config"].write_text(yaml.safe_dump(config))
    return root, paths


@pytest.fixture(scope="module")
def built(byo, tmp_path_factory):
    """Every scenario built three ways through the CLI, in this process (so both Spark builds share one JVM)."""
    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        pytest.skip("no Java runtime (Spark needs one; .ci/run installs default-jre-headless)")
    root, paths = byo
    out = tmp_path_factory.mktemp("built")
    runs = {
        "spark": ["--backend", "feast", "--config", str(paths["spark_config"])],
        "duckdb": ["--backend", "feast", "--config", str(paths["config"])],
        "pandas": ["--backend", "pandas", "--config", str(paths["config"])],
    }
    for scenario in SCENARIOS:
        for engine, extra in runs.items():
            common = ["--videos", str(paths["videos"]), "--features", str(root), "--scenario", scenario]
            args = [*common, "--out", str(out / engine / scenario), *extra]
            result = CliRunner().invoke(app, ["dataset", "build", *args])
            assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_spark_builds_the_duckdb_and_pandas_dataset(built, scenario):
    store_config = yaml.safe_load((built / "spark" / scenario / "feature_store" / "feature_store.yaml").read_text())
    conf = store_config["offline_store"]["spark_conf"]
    assert store_config["offline_store"]["type"] == "spark" and conf["spark.master"] == "local[2]"
    assert conf["spark.ui.enabled"] == "false" and conf["spark.driver.bindAddress"] == "127.0.0.1"
    duckdb_config = yaml.safe_load((built / "duckdb" / scenario / "feature_store" / "feature_store.yaml").read_text())
    assert duckdb_config["offline_store"]["type"] == "duckdb"
    spark, duckdb, pandas = (_splits(built / engine / scenario) for engine in ("spark", "duckdb", "pandas"))
    pd.testing.assert_frame_equal(spark, duckdb)  # row for row, value for value
    pd.testing.assert_frame_equal(spark, pandas, check_dtype=False)
    features = [c for c in spark.columns if c[:2] in ("m_", "t_")]
    assert len(features) == 2 and 0 < spark[features[0]].isna().sum() < len(spark) // 5  # some videos lack a row


def test_spark_listens_on_loopback_only(built):
    import psutil
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    assert gateway is not None  # the JVM that ran both Spark builds, still up
    jvm = psutil.Process(gateway.proc.pid)
    assert "java" in jvm.name()
    listening = [c.laddr.ip for c in jvm.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    assert listening and all(ip in ("127.0.0.1", "::ffff:127.0.0.1") for ip in listening), listening


def _cli(*args: str, env: dict[str, str] | None = None, code: str = "") -> subprocess.CompletedProcess:
    run = f"import sys; {code}from cpfd.cli.main import main; sys.argv[0] = 'cpfd'; main()"
    return subprocess.run([sys.executable, "-c", run, *args], capture_output=True, text=True, timeout=120, env=env)


def _build_args(paths, root, out) -> list[str]:
    return ["dataset", "build", "--videos", str(paths["videos"]), "--features", str(root), "--scenario", "topic",
            "--out", str(out), "--backend", "feast", "--config", str(paths["spark_config"])]  # fmt: skip


def _one_line_error(result: subprocess.CompletedProcess, *parts: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    for part in parts:
        assert part in result.stderr, result.stderr


def test_spark_without_java_or_pyspark_is_a_one_line_error(byo, tmp_path):
    root, paths = byo
    no_java = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"} | {"PATH": str(tmp_path)}
    _one_line_error(
        _cli(*_build_args(paths, root, tmp_path / "a"), env=no_java),
        "feature_store.offline: spark needs a Java runtime",
        "default-jre-headless",
    )
    _one_line_error(
        _cli(*_build_args(paths, root, tmp_path / "b"), code="sys.modules['pyspark'] = None; "),  # not importable
        "feature_store.offline: spark needs pyspark",
        "pip install",
    )


def test_nanosecond_sources_are_named_for_spark(byo, tmp_path):
    root, paths = byo
    data = tmp_path / "ns"
    data.mkdir()
    topic = pd.read_parquet(paths["topic_signals"])
    topic.astype({"created": "datetime64[ns, UTC]"}).to_parquet(data / "topic_signals.parquet", index=False)
    pd.read_parquet(paths["mod_signals"]).to_parquet(data / "mod_signals.parquet", index=False)
    _one_line_error(
        _cli(*_build_args(paths, data, tmp_path / "out")),
        "topic_signals.parquet: column 'created' is stored in nanoseconds, which Spark cannot read",
    )


def test_bench_features_times_the_three_engines_at_each_size(built, tmp_path):
    result = CliRunner().invoke(
        app, ["bench", "features", "--rows", "300", "--rows", "600", "--repeats", "1", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "features.json").read_text())
    assert [r["entity_rows"] for r in report["runs"]] == [300, 600]
    for run in report["runs"]:
        # PostgreSQL joins them where its server binaries are installed (tests/integration/test_team_feast.py)
        assert set(run["engines"]) - {"postgres"} == {"duckdb", "spark", "merge_asof"} and run["values_match"]
        assert run["engines"]["merge_asof"]["ratio_to_merge_asof"] == 1.0
        assert all(e["median_s"] > 0 and len(e["times_s"]) == 1 for e in run["engines"].values())
    assert "Feast get_historical_features, Spark local[2]" in result.output and "300 entity rows" in result.output
