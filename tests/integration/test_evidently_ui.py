"""Monitoring in Evidently's UI: two monitoring windows written into one workspace by the real job,
`cpfd monitor-ui` (= `evidently ui --workspace DIR`) on a free loopback port, a scenario's dashboard rendered by
Debian's Chromium driven with Playwright (the system browser through ``executable_path``; nothing downloaded), which
waits on every panel's elements and reads the charts' points from the page.

``CPFD_DASHBOARD_SCREENSHOT=docs/evidently_dashboard.png`` also saves the rendered dashboard there.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd
import pytest

from cpfd.benchmarks.monitoring import START, make_traffic, write_traffic

pytestmark = pytest.mark.slow

SCENARIOS = {"bin": 2, "three": 3}
ARMS = ("control", "treatment")
WINDOWS = [(START + pd.Timedelta(days=i), START + pd.Timedelta(days=i + 1)) for i in range(2)]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [  # STACK.md: what Debian's Chromium needs here; the context below blocks every host but loopback
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _browser_missing() -> str | None:
    if CHROMIUM is None:
        return "no chromium on PATH (apt-get install chromium; .ci/run installs it)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    return None


needs_browser = pytest.mark.skipif(_browser_missing() is not None, reason=str(_browser_missing()))


@pytest.fixture(scope="module")
def two_windows(tmp_path_factory):
    """Day 1 clean, day 2 with the confidence of scenario "three" drifted: one job run per day, one workspace."""
    from cpfd.monitoring.analysis import run_monitor
    from cpfd.predlog import PredictionLog

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
    from cpfd.monitoring.evidently_ui import PROJECT_PREFIX, MonitoringWorkspace

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
                if p["type"].endswith(":MonitorValue") and p["scenario"] == s
            }
            res = summary["scenarios"][s]
            for arm in ARMS:
                for q in ("f1", "label_coverage", "ks_statistic", "psi", "confidence_mean"):
                    assert values[(q, arm)] == pytest.approx(res["arms"][arm][q], abs=1e-12), (s, arm, q)
            assert values[("ab_diff", None)] == pytest.approx(res["ab"]["diff"], abs=1e-12)
            assert values[("failed_checks", None)] == len(res["failed_checks"])
    assert len(list((workspace / projects[PROJECT_PREFIX + "three"] / "snapshots").glob("*.json"))) == 2
    from cpfd.monitoring.evidently_ui import dashboard

    ws = MonitoringWorkspace(workspace).workspace  # Evidently's own Workspace reads what the job added
    for s in SCENARIOS:
        project = projects[PROJECT_PREFIX + s]
        assert len(ws.list_runs(project)) == 2
        saved = ws.get_dashboard(project)
        assert [p.title for p in saved.panels] == [p.title for p in dashboard().panels]
        assert [len(t.panels) for t in saved.tabs] == [len(dashboard().panels)]  # each panel once in its tab


def test_ui_command_is_evidentlys_own_on_loopback_telemetry_off_and_refuses_an_empty_folder(two_windows, tmp_path):
    from cpfd.errors import CpfdError
    from cpfd.monitoring.evidently_ui import ui_command, ui_environment

    workspace, _ = two_windows
    command = ui_command(workspace, 8123)
    assert command == [sys.executable, "-m", "evidently.cli", "ui", "--workspace", str(workspace)] + [
        "--host",
        "127.0.0.1",
        "--port",
        "8123",
    ]
    assert ui_environment()["DO_NOT_TRACK"] == "1"
    with pytest.raises(CpfdError, match="holds no Evidently project"):
        ui_command(tmp_path, 8123)


@pytest.fixture(scope="module")
def ui_url(two_windows, tmp_path_factory):
    """`cpfd monitor-ui` over the workspace, in its own process group (tests/servers.py)."""
    from tests.servers import free_port, process_group, wait_http

    workspace, _ = two_windows
    port, log = free_port(), tmp_path_factory.mktemp("ui") / "ui.log"
    argv = [sys.executable, "-m", "cpfd.cli", "monitor-ui", "--workspace", str(workspace), "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    with process_group(argv, log=log) as proc:
        wait_http(f"{url}/api/version", proc, timeout=120, log=log)
        assert f"Uvicorn running on {url}" in log.read_text()
        yield url


def _loopback_only(route) -> None:
    if urlparse(route.request.url).hostname == "127.0.0.1":
        route.continue_()
    else:
        route.abort()


@pytest.fixture
def page(tmp_path):
    """A page of Debian's Chromium (Playwright, ``executable_path``): UTC clock, no motion, loopback only."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        # the x axis shows the snapshot times in the browser's zone; the charts draw at once instead of animating
        context = browser.new_context(
            viewport={"width": 1400, "height": 2300}, timezone_id="UTC", reduced_motion="reduce"
        )
        context.route(
            "**/*",
            lambda route: route.continue_() if urlparse(route.request.url).hostname == "127.0.0.1" else route.abort(),
        )
        try:
            yield context.new_page()
        finally:
            browser.close()


def _series_points(panel) -> dict[str, list[float]]:
    """Every line of a chart panel: its series id -> the vertical screen position of each of its points (marks)."""
    out = {}
    for line in panel.locator("path.MuiLineElement-root").all():
        series = next(c for c in line.get_attribute("class").split() if c.startswith("MuiLineElement-series-"))
        marks = panel.locator(".MuiMarkElement-" + series.removeprefix("MuiLineElement-"))
        out[series] = [box["y"] + box["height"] / 2 for box in (m.bounding_box() for m in marks.all()) if box]
    return out


@needs_browser
def test_dashboard_renders_every_panel_with_both_windows(two_windows, ui_url, page):
    from cpfd.monitoring.evidently_ui import PROJECT_PREFIX, MonitoringWorkspace, panels

    workspace, _ = two_windows
    project = MonitoringWorkspace(workspace).projects[PROJECT_PREFIX + "three"]
    page.goto(f"{ui_url}/projects/{project}")
    ticks = [until.strftime("%Y-%m-%d %H:%M:%S") for _, until in WINDOWS]
    points, tops = {}, []
    for panel_spec in panels():
        title = page.get_by_role("heading", name=panel_spec.title, exact=True)
        title.wait_for(timeout=60_000)
        panel = page.locator(".MuiCardContent-root").filter(has=title)
        legends = [
            v.legend.replace("{{arm}}", a) for v in panel_spec.values for a in (ARMS if "{{arm}}" in v.legend else [""])
        ]
        lines = panel.locator("path.MuiLineElement-root")
        lines.nth(len(legends) - 1).wait_for(state="attached", timeout=30_000)  # every series (a flat line is 0 high)
        assert lines.count() == len(legends), panel_spec.title
        for legend in legends:
            assert panel.get_by_text(legend, exact=True).count() >= 1, (panel_spec.title, legend)
        axis = panel.locator(".MuiChartsAxis-directionX .MuiChartsAxis-tickLabel").all_text_contents()
        assert all(t in axis for t in ticks), (panel_spec.title, axis, "x axis without both windows")
        points[panel_spec.title] = _series_points(panel)
        assert all(len(ys) == 2 for ys in points[panel_spec.title].values()), (panel_spec.title, "a point per window")
        box = title.bounding_box()
        tops.append((round(box["y"]), box["x"]))
    assert tops == sorted(tops)  # the dashboard's order: row by row, left to right
    if shot := os.environ.get("CPFD_DASHBOARD_SCREENSHOT"):
        page.screenshot(path=str(Path(shot).resolve()), full_page=True)
    # the data, not just a frame: day 2's confidence drift raises both arms' KS line and the number of failed checks
    # (screen y grows downwards)
    for title in ("Confidence drift: KS statistic", "Failed checks"):
        assert all(y2 < y1 for y1, y2 in points[title].values()), (title, points[title])
