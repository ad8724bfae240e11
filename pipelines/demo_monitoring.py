"""The end of `make run`: serve the packaged students, send a later (partly drifted) window, monitor it.

Everything comes from the pipeline's ``packages`` output (``LocalRun.packages``): per packaged
scenario, the model tag of each arm and the offline reference of both arms that the pipeline's
make_reference step wrote (test-split predictions of the distilled student as ``treatment`` and of
the baseline student as ``control``). From them: a serving config with both arms at 50/50, a real
`bentoml serve` on a free 127.0.0.1 port, the traffic simulator (drift in one packaged scenario),
delayed labels, and `cpfd monitor` over that window.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import yaml

# a demo window holds ~100 labelled predictions per scenario, split over two arms
DEMO_MONITOR_CONFIG = "quality: {min_labelled: 40}\n"


def collect_references(packages: list[dict], out_dir: Path) -> Path:
    """The pipeline's reference files of every packaged scenario (both arms), gathered in one folder."""
    import shutil

    from cpfd.errors import CpfdError

    shutil.rmtree(out_dir, ignore_errors=True)  # no stale scenario from an earlier run
    out_dir.mkdir(parents=True)
    for p in packages:
        files = sorted(Path(p["reference"]).glob("*.parquet"))
        if not files:
            raise CpfdError(
                f"scenario {p['scenario']}: the pipeline's reference {p['reference']} holds no .parquet file"
            )
        for f in files:
            shutil.copy2(f, out_dir / f.name)
    return out_dir


def pick_drift_scenario(requested: str | None, served: list[str]) -> tuple[str | None, str | None]:
    """The scenario to drift: the requested one when it is served, else the first served one (None when no drift
    was asked for or nothing is served); with a note saying so when it differs from the request."""
    if not requested or not served or requested in served:
        return (requested if requested in served else None), None
    return served[0], f"drift scenario {requested} was not packaged (served: {served}); drifting {served[0]} instead"


def write_serving_config(packages: list[dict], path: Path, experiment: str = "cpfd_demo") -> Path:
    """Both arms of every packaged scenario at 50/50, the exact packaged tags, the log next to the file."""
    from cpfd.conventions import ARMS

    cfg = {
        "experiment": experiment,
        "scenarios": {
            p["scenario"]: {"arms": {arm: {"model": p["tags"][arm], "traffic": 1 / len(ARMS)} for arm in ARMS}}
            for p in packages
        },
        "batching": {"enabled": True, "max_batch_size": 64, "max_wait_ms": 0},
        "prediction_log": "predictions.db",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def monitor_demo(
    packages: list[dict],
    videos: Path,
    out: Path,
    drift_scenario: str | None = "ad_content",
    drift: float = 0.8,
    per_scenario: int = 200,
    echo: Callable[[str], None] = print,
) -> dict | None:
    """Serve, simulate, label and monitor; returns the monitoring summary (an alert is not an error),
    None when no scenario was packaged. ``packages``: the pipeline run's ``packages`` output. When
    ``drift_scenario`` was not packaged, the drift goes into a packaged scenario instead (and the output says so)."""
    from cpfd.monitoring.analysis import format_summary, run_monitor
    from cpfd.monitoring.settings import load_monitor_config
    from cpfd.monitoring.simulate import simulate
    from cpfd.serving.launch import ServerProcess

    if not packages:
        echo("monitor:   skipped: no scenario passed its gate, nothing to serve")
        return None
    served = sorted(p["scenario"] for p in packages)
    drift_scenario, note = pick_drift_scenario(drift_scenario, served)
    if note:
        echo(f"monitor:   {note}")
    refs = collect_references(packages, out / "reference")
    echo(f"monitor:   offline references of {len(packages)} scenario(s) x 2 arms in {refs}")
    config = write_serving_config(packages, out / "serving" / "config.yaml")
    log_db = config.parent / "predictions.db"
    log_db.unlink(missing_ok=True)
    with ServerProcess(
        config, log_path=config.parent / "server.log", env={"BENTOML_HOME": packages[0]["bentoml_home"]}, timeout=180
    ) as server:
        echo(f"serving:   bentoml serve on {server.url} ({config})")
        window = simulate(
            server.url,
            log_db,
            videos,
            served,
            per_scenario,
            0.2,
            drift_scenario,
            drift if drift_scenario else 0.0,
            0.8,
            32,
            None,
            0,
            log=lambda line: echo(f"simulate:  {line}"),
        )
    with warnings.catch_warnings():  # Evidently's dependencies' deprecation notices
        warnings.simplefilter("ignore", DeprecationWarning)
        summary = run_monitor(
            log_db,
            refs,
            window["since"],
            window["until"],
            out / "monitoring",
            load_monitor_config(text=DEMO_MONITOR_CONFIG + f"experiments: {{serving_config: '{config}'}}\n"),
        )
    echo("")
    echo(format_summary(summary))
    echo(f"monitoring report: {(out / 'monitoring' / 'index.html').resolve()}")
    failed = sorted({c.split("/")[0] for c in summary["failed_checks"]})
    if drift_scenario and drift_scenario in failed:
        others = [s for s in failed if s != drift_scenario]
        echo(
            f"alert:     fired on {drift_scenario} as expected (injected drift {drift})"
            + (f"; also on {others} (not drifted: a small window)" if others else "")
        )
    elif failed:
        echo(
            f"alert:     fired on {failed} "
            f"({'no drift injected' if not drift_scenario else f'not on the drifted {drift_scenario}'})"
        )
    else:
        echo(
            "alert:     none"
            + (f" (the drift injected into {drift_scenario} was not detected)" if drift_scenario else "")
        )
    if summary.get("experiments"):  # the experiments block of the summary above says each one's decision
        echo(f"experiments: cpfd experiment status --state-dir {summary['experiments_state_dir']}")
    return summary
