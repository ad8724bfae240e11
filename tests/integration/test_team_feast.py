"""A team's own Feast deployment, by reference (``feature_store.repo``), on a real PostgreSQL server.

The test starts PostgreSQL on loopback with password authentication and writes a Feast repository the project never
declared: its own entity (join key ``item_id``), two feature views over two tables, feature services, a SQL registry
and the PostgreSQL offline store on that server, the password read from the environment by Feast's ``${VAR}``
substitution. It is applied with Feast itself and loaded with rows. ``cpfd dataset build`` must then give, row for
row, the dataset the declaration mode builds from the same rows as Parquet; the user's mistakes are one-line errors
with exit code 2; no credential reaches an artifact, the manifest or the output.

Skipped, saying why, only where no PostgreSQL server binaries are found or the server cannot start (`.ci/run`
installs the package when it is missing)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytest.importorskip("feast")
pytest.importorskip("psycopg_pool")

from tests.byo_data import CONFIG, write_byo_tables  # noqa: E402
from tests.servers import pg_bin  # noqa: E402

pytestmark = pytest.mark.integration
USER, PASSWORD = "team_ro", "Tq7-cpfd-s3cret-27"  # the password must never appear in any output
PASSWORD_ENV = "CPFD_TEST_TEAM_PG_PASSWORD"
PROJECT = "team_features"


@pytest.fixture(scope="module")
def pg():
    """PostgreSQL on 127.0.0.1:<free port> with scram-sha-256 password authentication; yields its port."""
    from tests.servers import free_port

    bin_dir = pg_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binaries (initdb) found: install Debian's postgresql package")
    root = Path(tempfile.mkdtemp(prefix="cpfd-team-pg-"))
    data, port = root / "data", free_port()
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb and postgres refuse root: run them as the `postgres` user
        as_user = ["runuser", "-u", "postgres", "--"]
        os.chmod(root, 0o777)
    pwfile = root / "pw"
    pwfile.write_text(PASSWORD + "\n")
    pwfile.chmod(0o644)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*as_user, *args], capture_output=True, text=True, timeout=120)

    init = run(
        str(bin_dir / "initdb"), "-D", str(data), "-U", USER, "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8"
    )
    pwfile.unlink()
    if init.returncode != 0:
        pytest.skip(f"initdb failed: {init.stderr.strip()[-300:]}")
    options = f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off"
    start = run(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "pg.log"), "-w", "start")
    if start.returncode != 0:
        pytest.skip(f"PostgreSQL did not start: {start.stderr.strip()[-300:]} {(root / 'pg.log').read_text()[-300:]}")
    try:
        yield port
    finally:
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def _team_tables(byo: dict[str, Path]) -> dict[str, pd.DataFrame]:
    """The moderation signals split over two tables (one column each), the topic signals with a text column, all
    keyed by the team's ``item_id``."""
    mod = pd.read_parquet(byo["mod_signals"]).rename(columns={"video_id": "item_id"})
    topic = pd.read_parquet(byo["topic_signals"]).rename(columns={"video_id": "item_id"})
    keys = ["item_id", "event_timestamp", "created"]
    return {
        "mod_reports": mod[[*keys, "m_reports"]],
        "mod_watch": mod[[*keys, "m_watch_ratio"]].iloc[::-1].reset_index(drop=True),  # another order, same rows
        "topic_signals": topic.assign(t_note=["note"] * len(topic)),
        # a table that stopped being updated a year before the label times
        "mod_stale": mod[[*keys, "m_reports"]].assign(
            event_timestamp=mod["event_timestamp"] - pd.Timedelta(days=365),
            created=mod["created"] - pd.Timedelta(days=365),
        ),
    }


def _write_team_repo(repo: Path, port: int) -> None:
    password = "${" + PASSWORD_ENV + "}"
    config = {
        "project": PROJECT,
        "provider": "local",
        "registry": {
            "registry_type": "sql",
            "path": f"postgresql+psycopg://{USER}:{password}@127.0.0.1:{port}/postgres",
            "cache_ttl_seconds": 60,
        },
        "offline_store": {
            "type": "postgres",
            "host": "127.0.0.1",
            "port": port,
            "database": "postgres",
            "db_schema": "public",
            "user": USER,
            "password": password,
            "sslmode": "disable",
        },
        "online_store": {"type": "sqlite", "path": str(repo / "online.db")},
        "entity_key_serialization_version": 3,
    }
    repo.mkdir(parents=True, exist_ok=True)
    (repo / "feature_store.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def _team_objects() -> list:
    """The team's definitions (their names, not the project's): entity, sources, views, services."""
    from feast import Entity, FeatureService, FeatureView, Field
    from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import PostgreSQLSource
    from feast.types import Float32, Float64, Int64, String

    item = Entity(name="item", join_keys=["item_id"])

    def source(table: str) -> PostgreSQLSource:
        return PostgreSQLSource(
            name=f"{table}_src", query=f"SELECT * FROM {table}", timestamp_field="event_timestamp",
            created_timestamp_column="created",
        )  # fmt: skip

    def view(name: str, table: str, fields: list) -> FeatureView:
        return FeatureView(
            name=name, entities=[item], ttl=timedelta(days=7), schema=fields, source=source(table), online=False
        )

    reports = view("item_reports", "mod_reports", [Field(name="m_reports", dtype=Int64)])
    watch = view("item_watch", "mod_watch", [Field(name="m_watch_ratio", dtype=Float64)])
    topic = view(
        "item_topic",
        "topic_signals",
        [Field(name="t_channel_score", dtype=Float32), Field(name="t_click_rate", dtype=Float32)],
    )
    noted = view("item_topic_noted", "topic_signals", [Field(name="t_note", dtype=String)])
    ghost = view("item_topic_ghost", "topic_signals", [Field(name="t_ghost_rate", dtype=Float32)])
    stale = view("item_reports_stale", "mod_stale", [Field(name="m_reports", dtype=Int64)])
    services = [
        FeatureService(name="moderation_team_v2", features=[reports, watch]),
        FeatureService(name="topic_team_v1", features=[topic]),
        FeatureService(name="topic_with_note", features=[topic, noted]),
        FeatureService(name="topic_with_ghost", features=[topic, ghost]),
        FeatureService(name="moderation_stale", features=[stale, watch]),
    ]
    return [item, reports, watch, topic, noted, ghost, stale, *services]


@pytest.fixture(scope="module")
def team(pg, tmp_path_factory):
    """The BYO tables loaded into the team's PostgreSQL, their repo applied there with Feast, and two project
    configs over the same rows: the team's Feast by reference, and the project's own declarations (Parquet)."""
    from feast import FeatureStore
    from sqlalchemy import create_engine

    root = tmp_path_factory.mktemp("team_feast")
    byo = write_byo_tables(root / "data", resolution="us")
    tables = _team_tables(byo)
    engine = create_engine(f"postgresql+psycopg://{USER}:{PASSWORD}@127.0.0.1:{pg}/postgres")
    with engine.begin() as conn:
        for name, df in tables.items():
            df.to_sql(name, conn, index=False, if_exists="replace")
    engine.dispose()
    repo = root / "team_repo"
    _write_team_repo(repo, pg)
    os.environ[PASSWORD_ENV] = PASSWORD
    store = FeatureStore(repo_path=str(repo))
    store.apply(_team_objects())
    assert {s.name for s in store.list_feature_services()} >= {"moderation_team_v2", "topic_team_v1"}

    declared = root / "declared"
    declared.mkdir()
    for name in ("mod_reports", "mod_watch"):
        tables[name].rename(columns={"item_id": "video_id"}).to_parquet(declared / f"{name}.parquet", index=False)
    pd.read_parquet(byo["topic_signals"]).to_parquet(declared / "topic_signals.parquet", index=False)
    decl = {
        "sources": {n: {"path": f"{n}.parquet"} for n in ("mod_reports", "mod_watch", "topic_signals")},
        "views": {
            "item_reports": {"source": "mod_reports", "features": ["m_reports"], "dtype": "int64"},
            "item_watch": {"source": "mod_watch", "features": ["m_watch_ratio"], "dtype": "float64"},
            "item_topic": {"source": "topic_signals", "features": ["t_channel_score", "t_click_rate"]},
        },
        "services": {
            "moderation_team_v2": {"features": ["item_reports", "item_watch"]},
            "topic_team_v1": {"features": ["item_topic"]},
        },
    }
    scenarios = [
        {**s, "feature_service": {"moderation": "moderation_team_v2", "topic": "topic_team_v1"}[s["name"]]}
        for s in list(CONFIG["scenarios"])  # type: ignore[call-overload]
    ]
    configs = {
        "declared": {"feature_store": decl, "scenarios": scenarios},
        "reference": {"feature_store": {"repo": str(repo), "join_key": "item_id"}, "scenarios": scenarios},
    }
    paths = {}
    for name, cfg in configs.items():
        paths[name] = root / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump(cfg, sort_keys=False))
    yield {
        "root": root,
        "videos": byo["videos"],
        "declared": declared,
        "repo": repo,
        "port": pg,
        **{f"{k}_cfg": v for k, v in paths.items()},
    }
    os.environ.pop(PASSWORD_ENV, None)


def cpfd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The real command in its own process (the environment it gets, as a pipeline step would)."""
    base = {k: v for k, v in os.environ.items() if k != PASSWORD_ENV}
    return subprocess.run(
        [sys.executable, "-m", "cpfd.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**base, **(env or {})},
    )


def _splits(folder: Path) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(folder / f"{s}.parquet") for s in ("train", "val", "test")], ignore_index=True)


def _assert_one_line_error(done: subprocess.CompletedProcess, *needles: str) -> str:
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr[-2000:]
    for needle in needles:
        assert needle in errors[0], errors[0]
    assert PASSWORD not in done.stderr + done.stdout
    return errors[0]


def test_reference_mode_builds_the_declared_dataset_row_for_row_and_leaks_no_credential(team, tmp_path):
    from cpfd.config import load_config
    from cpfd.featurestore import build_dataset_feast

    for scenario in ("moderation", "topic"):
        declared = build_dataset_feast(
            team["videos"], team["declared"], scenario, load_config(team["declared_cfg"]), tmp_path / f"d_{scenario}"
        )
        out = tmp_path / f"r_{scenario}"
        done = cpfd(
            "dataset", "build", "--videos", str(team["videos"]),
            "--scenario", scenario, "--out", str(out), "--config", str(team["reference_cfg"]),
            env={PASSWORD_ENV: PASSWORD},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["feature_names"] == declared["feature_names"]
        assert manifest["rows"] == declared["rows"]
        a, b = _splits(out), _splits(tmp_path / f"d_{scenario}")
        pd.testing.assert_frame_equal(a, b)  # row for row, value for value, dtypes too
        assert manifest["feature_coverage"] == declared["feature_coverage"]
        lineage = manifest["feast"]
        assert lineage["project"] == PROJECT and lineage["feature_service"] == manifest["feature_service"]
        assert lineage["registry"] == f"postgresql+psycopg://***@127.0.0.1:{team['port']}/postgres"
        assert lineage["offline_store"] == {
            "type": "postgres", "host": "127.0.0.1", "port": team["port"], "database": "postgres",
            "db_schema": "public",
        }  # fmt: skip
        want = {"moderation": ["item_reports:m_reports", "item_watch:m_watch_ratio"]}
        want["topic"] = ["item_topic:t_channel_score", "item_topic:t_click_rate"]
        assert lineage["feature_refs"] == want[scenario]
        assert manifest["join_backend"] == "feast:postgres"
        # no credential in any file the build wrote, nor in what it printed
        assert PASSWORD not in done.stdout + done.stderr
        for path in out.rglob("*"):
            if path.is_file():
                assert PASSWORD.encode() not in path.read_bytes(), path
                assert USER.encode() not in path.read_bytes() or path.suffix != ".json", path
    # the team's registry is read, not written: the same four services, nothing applied by the build
    from feast import FeatureStore

    os.environ[PASSWORD_ENV] = PASSWORD
    store = FeatureStore(repo_path=str(team["repo"]))
    assert sorted(s.name for s in store.list_feature_services()) == [
        "moderation_stale", "moderation_team_v2", "topic_team_v1", "topic_with_ghost", "topic_with_note",
    ]  # fmt: skip


def _reference_config(team, tmp_path, topic: str = "topic_team_v1", **feature_store) -> Path:
    """The reference config with the topic scenario reading ``topic`` and ``feature_store`` settings changed."""
    cfg = yaml.safe_load(Path(team["reference_cfg"]).read_text())
    cfg["feature_store"].update(feature_store)
    cfg["scenarios"] = [{**s, "feature_service": topic} if s["name"] == "topic" else s for s in cfg["scenarios"]]
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize(
    ("case", "needles"),
    [
        ("wrong service", ["feature service 'topic_team_v9' is not in the Feast registry", "topic_team_v1"]),
        ("missing feature", ["feature service 'topic_with_ghost'", "item_topic_ghost:t_ghost_rate", "missing"]),
        ("non-numeric feature", ["item_topic_noted:t_note", "not numeric"]),
        ("wrong password", ["Feast registry postgresql+psycopg://***@127.0.0.1", "cannot connect", "password"]),
        ("unreachable host", ["Feast registry postgresql+psycopg://***@127.0.0.1", "cannot connect"]),
        ("unset variable", [PASSWORD_ENV, "not set"]),
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(team, tmp_path, case, needles):
    env = {PASSWORD_ENV: PASSWORD}
    service = {"wrong service": "topic_team_v9", "missing feature": "topic_with_ghost"}
    service["non-numeric feature"] = "topic_with_note"
    config = _reference_config(team, tmp_path, topic=service.get(case, "topic_team_v1"))
    if case == "wrong password":
        env = {PASSWORD_ENV: "not-the-password"}
    elif case == "unset variable":
        env = {}
    elif case == "unreachable host":
        from tests.servers import free_port

        repo = tmp_path / "moved_repo"
        text = (Path(team["repo"]) / "feature_store.yaml").read_text()
        repo.mkdir()
        (repo / "feature_store.yaml").write_text(text.replace(f":{team['port']}/", f":{free_port()}/"))
        config = _reference_config(team, tmp_path, repo=str(repo))
    done = cpfd(
        "dataset", "build", "--videos", str(team["videos"]), "--scenario", "topic", "--out", str(tmp_path / "out"),
        "--config", str(config), env=env,
    )  # fmt: skip
    _assert_one_line_error(done, *needles)


def test_features_check_passes_in_seconds_and_names_what_is_wrong(team, tmp_path):
    """`cpfd features check`: the service, its types and join key, what the student reads, the label-time coverage."""
    import re

    env = {PASSWORD_ENV: PASSWORD}
    base = ["features", "check", "--repo", str(team["repo"]), "--config", str(team["declared_cfg"])]
    base += ["--set", "feature_store.join_key=item_id", "--scenario", "moderation", "--videos", str(team["videos"])]
    base += ["--set", "feature_store.label_timestamp=label_time"]  # the entity rows' timestamp under another name
    done = cpfd(*base, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "feature service moderation_team_v2: 2 numeric features in 2 views (project team_features" in out
    # every video with a feature row has it 2 h before its label (inside the ttl); about a tenth have none
    share = len(pd.read_parquet(team["declared"] / "mod_reports.parquet")) / 240
    assert 0.8 < share < 0.95
    assert f"view item_reports: m_reports; ttl 7 d; covers {share:.0%} of the label times" in out
    assert f"view item_watch: m_watch_ratio; ttl 7 d; covers {share:.0%} of the label times" in out
    assert "student of moderation reads frames, title: no feature of the service" in out
    assert float(re.search(r"ok in ([\d.]+) s", out).group(1)) < 30  # type: ignore[union-attr]
    assert PASSWORD not in out + done.stderr

    stale = cpfd(*base, "--service", "moderation_stale", env=env)
    _assert_one_line_error(
        stale, "feature service 'moderation_stale': view 'item_reports_stale' has no row within its ttl (7 d)"
    )
    _assert_one_line_error(cpfd(*base, "--service", "nope", env=env), "feature service 'nope' is not in the Feast")
    typed = cpfd(*base, "--scenario", "topic", "--service", "topic_with_note", env=env)
    _assert_one_line_error(typed, "item_topic_noted:t_note is String, not numeric")


def test_a_missing_driver_names_the_feast_extra(team, tmp_path):
    """Where psycopg_pool is not installed (here: a package on the path that fails to import, as an absent one
    does), the build names the extra that installs it."""
    blocker = tmp_path / "site" / "psycopg_pool"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'psycopg_pool'\", name='psycopg_pool')\n"
    )
    done = cpfd(
        "dataset", "build", "--videos", str(team["videos"]), "--scenario", "topic", "--out", str(tmp_path / "out"),
        "--config", str(team["reference_cfg"]), env={PASSWORD_ENV: PASSWORD, "PYTHONPATH": str(tmp_path / "site")},
    )  # fmt: skip
    _assert_one_line_error(done, "psycopg_pool", "pip install 'feast[postgres]==0.67.0'")


@pytest.mark.slow
def test_local_kfp_pipeline_builds_the_same_dataset_from_the_teams_feast(team, tmp_path):
    """The whole pipeline on kfp.local (tiny models, the title-only scenario) with the team's Feast by reference: its
    build_dataset step gives the declaration mode's dataset row for row, and no credential reaches an artifact, the
    manifest or the run's log."""
    from cpfd.config import load_config
    from cpfd.featurestore import build_dataset_feast
    from cpfd.pipelines.cpfd_pipeline import PipelineOptions
    from cpfd.pipelines.runner import pipeline_arguments, run_local

    tiny = ["model.size=tiny", "train.epochs=2", "train.batch_size=32"]
    project = load_config(team["reference_cfg"], [*tiny, "distill.teacher_outputs=insample"])
    args = pipeline_arguments(team["videos"], team["repo"], project, ["topic"], bentoml_home=tmp_path / "bentoml")
    run = run_local(args, tmp_path / "pipeline", PipelineOptions(parallelism=1, gpu=False), echo=None)
    (built,) = run.run_dir.glob("for-loop-1-iteration-*/build-dataset/dataset")
    declared = build_dataset_feast(
        team["videos"], team["declared"], "topic", load_config(team["declared_cfg"], tiny), tmp_path / "declared"
    )
    pd.testing.assert_frame_equal(_splits(built), _splits(tmp_path / "declared"))
    manifest = json.loads((built / "manifest.json").read_text())
    assert manifest["feature_names"] == declared["feature_names"] and manifest["join_backend"] == "feast:postgres"
    assert manifest["feast"]["feature_refs"] == ["item_topic:t_channel_score", "item_topic:t_click_rate"]
    assert [s["scenario"] for s in run.summaries] == ["topic"]
    for path in [run.log, *(tmp_path / "pipeline").rglob("*")]:
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path


def test_bench_features_times_the_postgresql_store_and_checks_its_values(tmp_path):
    """`cpfd bench features --engine postgres` (small size): its own server, the rows loaded, the retrieval through
    the reference path, values compared with merge_asof before any timing is reported."""
    if pg_bin() is None:
        pytest.skip("no PostgreSQL server binaries (initdb) found: install Debian's postgresql package")
    done = cpfd("bench", "features", "--rows", "3000", "--engine", "postgres", "--repeats", "1", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "features.json").read_text())
    (run,) = result["runs"]
    assert run["entity_rows"] == 3000 and run["values_match"] is True
    pg = run["engines"]["postgres"]
    assert pg["median_s"] > 0 and pg["load_s"] > 0 and pg["apply_s"] > 0
    assert result["postgres"].startswith("postgres (PostgreSQL)")
    assert "| Feast get_historical_features, PostgreSQL (loopback, by reference) |" in done.stdout


def test_reference_mode_reads_whatever_offline_store_the_yaml_names_duckdb_too(tmp_path):
    """The same team definitions over Parquet files (DuckDB offline store, SQL registry on SQLite), another entity
    timestamp name: the build reads them by reference and matches the declaration mode; no server needed."""
    from feast import Entity, FeatureService, FeatureStore, FeatureView, Field, FileSource
    from feast.types import Float64, Int64

    from cpfd.config import load_config
    from cpfd.featurestore import build_dataset_feast

    byo = write_byo_tables(tmp_path / "data", resolution="us")
    tables = _team_tables(byo)
    repo = tmp_path / "duck_repo"
    repo.mkdir()
    for name in ("mod_reports", "mod_watch"):
        tables[name].to_parquet(repo / f"{name}.parquet", index=False)
        tables[name].rename(columns={"item_id": "video_id"}).to_parquet(tmp_path / f"{name}.parquet", index=False)
    (repo / "feature_store.yaml").write_text(
        yaml.safe_dump(
            {
                "project": "duck_team",
                "provider": "local",
                "registry": {"registry_type": "sql", "path": f"sqlite:///{repo / 'registry.db'}"},
                "offline_store": {"type": "duckdb"},
                "online_store": {"type": "sqlite", "path": str(repo / "online.db")},
                "entity_key_serialization_version": 3,
            }
        )
    )
    item = Entity(name="item", join_keys=["item_id"])

    def view(name: str, table: str, field: Field) -> FeatureView:
        source = FileSource(
            name=f"{table}_file", path=str(repo / f"{table}.parquet"), timestamp_field="event_timestamp",
            created_timestamp_column="created",
        )  # fmt: skip
        return FeatureView(name=name, entities=[item], ttl=timedelta(days=7), schema=[field], source=source)

    reports = view("item_reports", "mod_reports", Field(name="m_reports", dtype=Int64))
    watch = view("item_watch", "mod_watch", Field(name="m_watch_ratio", dtype=Float64))
    FeatureStore(repo_path=str(repo)).apply(
        [item, reports, watch, FeatureService(name="moderation_team_v2", features=[reports, watch])]
    )
    scenarios = [{**s, "feature_service": "moderation_team_v2"} for s in list(CONFIG["scenarios"])]  # type: ignore[call-overload]
    ref_cfg, decl_cfg = tmp_path / "ref.yaml", tmp_path / "decl.yaml"
    fs = {"repo": str(repo / "feature_store.yaml"), "join_key": "item_id", "label_timestamp": "label_time"}
    ref_cfg.write_text(yaml.safe_dump({"feature_store": fs, "scenarios": scenarios}))
    decl = {
        "sources": {n: {"path": f"{n}.parquet"} for n in ("mod_reports", "mod_watch")},
        "views": {
            "item_reports": {"source": "mod_reports", "features": ["m_reports"], "dtype": "int64"},
            "item_watch": {"source": "mod_watch", "features": ["m_watch_ratio"], "dtype": "float64"},
        },
        "services": {"moderation_team_v2": {"features": ["item_reports", "item_watch"]}},
    }
    decl_cfg.write_text(yaml.safe_dump({"feature_store": decl, "scenarios": scenarios}))
    ref = build_dataset_feast(byo["videos"], tmp_path, "moderation", load_config(ref_cfg), tmp_path / "ref")
    declared = build_dataset_feast(byo["videos"], tmp_path, "moderation", load_config(decl_cfg), tmp_path / "decl")
    pd.testing.assert_frame_equal(_splits(tmp_path / "ref"), _splits(tmp_path / "decl"))
    assert ref["join_backend"] == "feast:duckdb" and ref["feast"]["registry"] == f"sqlite:///{repo / 'registry.db'}"
    assert ref["feast"]["project"] == "duck_team" and ref["feature_names"] == declared["feature_names"]
