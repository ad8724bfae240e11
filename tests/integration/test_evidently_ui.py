"""Monitoring in Evidently's UI: two monitoring windows written into one workspace by the real job,
`cpfd monitor-ui` on a free loopback port, a scenario's dashboard rendered by headless Chromium.

``CPFD_DASHBOARD_SCREENSHOT=docs/evidently_dashboard.png`` also saves the rendered dashboard there.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.monitoring import START, make_traffic, write_traffic

pytestmark = pytest.mark.slow

SCENARIOS = {"bin": 2, "three": 3}
ARMS = ("control", "treatment")
WINDOWS = [(START + pd.Timedelta(days=i), START + pd.Timedelta(days=i + 1)) for i in range(2)]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium; .ci/run installs it)"
)


@pytest.fixture(scope="module")
def two_windows(tmp_path_factory):
    """Day 1 clean, day 2 with the confidence of scenario "three" drifted: one job run per day, one workspace."""
    from cpfd.predlog import PredictionLog
    from monitoring.analysis import run_monitor

    tmp = tmp_path_factory.mktemp("evidently_ui")
    log = PredictionLog(tmp / "log.db")
    for i, (since, _) in enumerate(WINDOWS):
        preds, labels, ref = make_traffic(SCENARIOS, 400, seed=i, start=since, drift={"three": 0.5 * i})
        offset = i * 5 * 10**9  # a new day's videos
        write_traffic(
            log,
            preds.assign(request_id=f"day{i}-" + preds["request_id"], video_id=preds["video_id"] + offset),
            labels.assign(video_id=labels["video_id"] + offset),
        )
        if i == 0:
            ref.to_parquet(tmp / "reference.parquet", index=False)
    summaries = [
        run_monitor(
            tmp / "log.db",
            tmp / "reference.parquet",
            since.isoformat(),
            until.isoformat(),
            tmp / f"out_{i}",
            workspace=tmp / "ws",
        )
        for i, (since, until) in enumerate(WINDOWS)
    ]
    assert [s["status"] for s in summaries] == ["pass", "fail"]
    return tmp / "ws", summaries


def test_each_window_adds_a_snapshot_with_the_jobs_values(two_windows):
    from monitoring.evidently_ui import PROJECT_PREFIX, MonitoringWorkspace

    workspace, summaries = two_windows
    projects = MonitoringWorkspace(workspace).projects
    assert set(projects) == {PROJECT_PREFIX + s for s in SCENARIOS}  # one project per scenario
    for s in SCENARIOS:
        project = workspace / projects[PROJECT_PREFIX + s]
        assert (project / "dashboard.json").exists()
        for summary, (_, until) in zip(summaries, WINDOWS, strict=True):
            ids = summary["scenarios"][s]["workspace"]
            assert ids["project_id"] == projects[PROJECT_PREFIX + s]
            snap = json.loads((project / "snapshots" / f"{ids['snapshot_id']}.json").read_text())
            assert pd.Timestamp(snap["timestamp"]) == until.replace(tzinfo=None)  # the window's end
            values = {
                (p["quantity"], p.get("arm")): r["value"]
                for r in snap["metric_results"].values()
                for p in [r["metric_value_location"]["metric"]["params"]]
                if p["type"].endswith(":MonitorValue")
            }
            res = summary["scenarios"][s]
            for arm in ARMS:
                for q in ("f1", "label_coverage", "ks_statistic", "psi", "confidence_mean"):
                    assert values[(q, arm)] == pytest.approx(res["arms"][arm][q], abs=1e-12), (s, arm, q)
            assert values[("ab_diff", None)] == pytest.approx(res["ab"]["diff"], abs=1e-12)
            assert values[("failed_checks", None)] == len(res["failed_checks"])
    assert len(list((workspace / projects[PROJECT_PREFIX + "three"] / "snapshots").glob("*.json"))) == 2


def test_ui_config_is_loopback_telemetry_off_and_refuses_an_empty_folder(two_windows, tmp_path):
    from cpfd.errors import CpfdError
    from monitoring.evidently_ui import ui_config

    workspace, _ = two_windows
    config = ui_config(workspace, 8123)
    assert (config.service.host, config.service.port) == ("127.0.0.1", 8123)
    assert config.storage.path == str(workspace)
    assert not config.telemetry.get_event_logger().func.__self__.is_enabled()
    with pytest.raises(CpfdError, match="holds no Evidently project"):
        ui_config(tmp_path, 8123)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ui_url(two_windows, tmp_path_factory):
    """`cpfd monitor-ui` over the workspace, in its own process group."""
    workspace, _ = two_windows
    port, log = _free_port(), tmp_path_factory.mktemp("ui") / "ui.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "monitor-ui", "--workspace", str(workspace), "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/version", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        assert f"Uvicorn running on {url}" in log.read_text()
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def _chromium(url: str, tmp: Path, *args: str) -> str:
    """Headless Chromium on ``url`` after a virtual-time budget; every host but 127.0.0.1 unresolvable."""
    done = subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--force-prefers-reduced-motion",  # the charts draw at once instead of animating
            f"--user-data-dir={tmp / 'chromium'}",
            "--virtual-time-budget=20000",
            "--window-size=1400,2300",
            *args,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "TZ": "UTC"},  # the x axis shows the snapshot times in the browser's zone
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@needs_chromium
def test_dashboard_renders_every_panel_with_both_windows(two_windows, ui_url, tmp_path):
    from monitoring.evidently_ui import PROJECT_PREFIX, MonitoringWorkspace, dashboard

    workspace, _ = two_windows
    project = MonitoringWorkspace(workspace).projects[PROJECT_PREFIX + "three"]
    url = f"{ui_url}/projects/{project}"
    dom = _chromium(url, tmp_path, "--dump-dom")
    if shot := os.environ.get("CPFD_DASHBOARD_SCREENSHOT"):
        _chromium(url, tmp_path, f"--screenshot={Path(shot).resolve()}", "--hide-scrollbars")

    panels = dashboard().panels
    starts = [dom.index(p.title) for p in panels]  # every title is on the page, in the dashboard's order
    assert starts == sorted(starts)
    ticks = [until.strftime("%Y-%m-%d %H:%M:%S") for _, until in WINDOWS]
    points = {}
    for panel, lo, hi in zip(panels, starts, starts[1:] + [len(dom)], strict=True):
        part = dom[lo:hi]
        legends = [
            v.legend.replace("{{arm}}", a) for v in panel.values for a in (ARMS if "{{arm}}" in v.legend else [""])
        ]
        assert all(t in part for t in ticks), (panel.title, "x axis without both windows")
        assert all(f">{legend}<" in part for legend in legends), (panel.title, legends)
        lines = re.findall(r'd="M([^"]+)"[^>]*MuiLineElement-root', part)
        assert len(lines) == len(legends), (panel.title, len(lines))
        points[panel.title] = [[float(y) for y in re.findall(r",([\d.]+)", d)] for d in lines]
        assert all(len(ys) == 2 for ys in points[panel.title]), (panel.title, "a point per window")
    # the data, not just a frame: day 2's confidence drift raises both arms' KS line and the number of
    # failed checks (SVG y grows downwards)
    assert all(y2 < y1 for y1, y2 in points["Confidence drift: KS statistic"] + points["Failed checks"])
